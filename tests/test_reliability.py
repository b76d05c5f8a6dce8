"""Nothing a user owns is lost, no input crashes the machine, every error says what to do.

Each case of the reliability walkthrough, with tiny inputs; the ones that already passed before
are here too, so they stay passing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.cli.export import main as export_main
from stylenet.cli.stylize import main as stylize_main
from stylenet.errors import DataError, OptionError
from stylenet.training.run import train
from tests.conftest import make_photo, random_bank

BIN = Path(sys.executable).parent
ENV = {**os.environ, "STYLENET_FORCE_CPU": "1", "STYLENET_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("ck") / "bank.pt"
    random_bank(p, ["starry_night", "the_scream"])
    return p


def run(*args):
    return stylize_main([str(a) for a in args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def _clip(path: Path, n: int, w: int = 64, h: int = 48) -> Path:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=10, macro_block_size=2,
                                      ffmpeg_log_level="error")  # fmt: skip
    gen.send(None)
    for i in range(n):
        gen.send(np.full((h, w, 3), (7 * i) % 255, np.uint8))
    gen.close()
    return path


# ----------------------------------------------------------------------------- 1. data loss


def test_training_never_replaces_a_network_it_did_not_create(compose, tiny_overrides, tmp_path):
    shipped = tmp_path / "exported" / "test.pt"
    random_bank(shipped, ["starry_night"])
    before = shipped.read_bytes()
    for _ in range(2):  # twice: nothing rotates a backup away
        res = train(compose(tiny_overrides + ["ckpt_path=null", "trainer.max_steps=2"]))
        assert res.export_path != shipped
    assert shipped.read_bytes() == before
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["test-2.pt", "test-3.pt", "test.pt"]


def test_smoke_experiment_never_lands_in_checkpoints(compose):
    cfg = compose(["experiment=smoke", "style=starry_night"], hydra=True)
    assert cfg.export.dir.startswith("outputs/") and cfg.name.startswith("smoke-")


# ----------------------------------------------------------------------------- 2. memory


def test_stroke_scale_out_of_range_is_refused(ckpt, tmp_path, capsys):
    src = make_photo(tmp_path / "in.png", (64, 48))
    assert run("-c", ckpt, "-i", src, "-o", tmp_path / "o.png", "--stroke-scale", "0.1") == 1
    assert "--stroke-scale: must be within 0.25..8" in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_memory_budget_tiles_automatically_or_refuses(ckpt, tmp_path, capsys):
    src = make_photo(tmp_path / "big.png", (800, 600))
    out = tmp_path / "o.png"
    assert run("-c", ckpt, "-i", src, "-o", out, "--max-size", "0", "--memory-budget", "60M",
               "--precision", "fp32") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "tiled automatically" in err and Image.open(out).size == (800, 600)
    assert run("-c", ckpt, "-i", src, "-o", tmp_path / "o2.png", "--max-size", "0",
               "--memory-budget", "1M") == 1  # fmt: skip
    msg = one_error_line(capsys)
    assert "memory budget" in msg and "smaller size" in msg
    assert not (tmp_path / "o2.png").exists()


def test_memory_budget_plan_stays_within_budget(ckpt):
    from stylenet.inference.stylizer import StylizeOptions, Stylizer

    st = Stylizer(ckpt, device="cpu", precision="fp32", memory_budget=300 * 2**20)
    plan = st.plan(2000, 1500, StylizeOptions(max_size=0))
    assert plan.tile and plan.forward_bytes + plan.host_bytes <= plan.budget


def test_peak_memory_stays_within_the_budget(ckpt, tmp_path):
    """A real process: a 1200x1200 image (one pass would need ~370 MB for this network) under a
    200 MB budget, with the peak resident memory measured around the call."""
    src = make_photo(tmp_path / "big.png", (1200, 1200))
    code = f"""
import torch, gc
from PIL import Image
from stylenet.inference.stylizer import Stylizer
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'): return int(l.split()[1]) * 1024
def hwm():
    for l in open('/proc/self/status'):
        if l.startswith('VmHWM'): return int(l.split()[1]) * 1024
st = Stylizer(r'{ckpt}', device='cpu', precision='fp32', memory_budget=200 * 2**20)
img = Image.open(r'{src}').convert('RGB')
st.stylize(img.resize((64, 64)), style=0, max_size=0)
gc.collect()
open('/proc/self/clear_refs', 'w').write('5')
base = rss()
st.stylize(img, style=0, max_size=0)
print((hwm() - base) / 2**20, st.last.tile)
"""
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    grew, tile = r.stdout.split()
    assert int(tile) > 0
    assert float(grew) < 200, f"grew {grew} MiB with a 200 MiB budget"


# ----------------------------------------------------------------------------- 4. output in input


def test_output_inside_input_is_not_rescanned(ckpt, tmp_path, capsys):
    d = tmp_path / "photos"
    for i in range(2):
        make_photo(d / f"a{i}.png", (40, 32), seed=i)
    for _ in range(2):
        assert run("-c", ckpt, "-i", d, "-o", d / "styled") == 0
    assert not (d / "styled" / "styled").exists()
    assert sorted(p.name for p in (d / "styled").iterdir()) == ["a0.png", "a1.png"]
    assert "2 skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 5. bad numbers


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--max-size", "-3"], "--max-size: must be 0 (native size) or at least 16"),
        (["--quality", "500"], "--quality: must be within 1..100"),
        (["--tile", "-5"], "--tile: must be 0 (off) or at least 272"),
        (["--tile", "8"], "--tile: must be 0 (off) or at least 272"),
        (["--tile-overlap", "-1"], "--tile-overlap: must be within 0..1024"),
        (["--strength", "1.5"], "--strength: must be within 0..1"),
        (["--batch-size", "-2"], "--batch-size: must be within 0..256"),
        (["--memory-budget", "lots"], "--memory-budget: not a size"),
        (["--temporal", "2"], "--temporal: must be within 0..1 (1 excluded)"),
    ],
)
def test_numbers_are_validated_with_their_range(ckpt, tmp_path, capsys, flags, expected):
    src = make_photo(tmp_path / "in.png", (64, 48))
    assert run("-c", ckpt, "-i", src, "-o", tmp_path / "o.png", *flags) == 1
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_crop_size_below_minimum_names_the_key(compose, tiny_overrides):
    with pytest.raises(
        OptionError, match=r"data.image_size: must be an integer within 16\.\.\d+, got 7"
    ):
        train(compose(tiny_overrides + ["data.image_size=7"]))


# ----------------------------------------------------------------------------- 6. interruption


def _wait_for(pred, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_sigterm_during_video_removes_the_temporary_file(ckpt, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", 400, 320, 240)
    outdir = tmp_path / "out"
    outdir.mkdir()
    p = subprocess.Popen(
        [BIN / "stylenet-stylize", "-c", ckpt, "-i", clip, "-o", outdir / "styled.mp4", "--precision", "fp32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert _wait_for(lambda: any(f.name.startswith(".") for f in outdir.iterdir()))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted (partial outputs removed)"
    assert "Traceback" not in err
    assert list(outdir.iterdir()) == []


def test_ctrl_c_in_a_folder_run_is_one_line(ckpt, tmp_path):
    d = tmp_path / "photos"
    for i in range(40):
        make_photo(d / f"a{i:02d}.png", (320, 240), seed=i)
    out = tmp_path / "styled"
    p = subprocess.Popen(
        [BIN / "stylenet-stylize", "-c", ckpt, "-i", d, "-o", out, "--precision", "fp32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert _wait_for(lambda: out.is_dir() and len(list(out.iterdir())) >= 1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted")
    assert not [f for f in out.iterdir() if f.name.startswith(".")]


def test_ctrl_c_in_training_says_how_to_resume(photo_dir, tmp_path):
    args = [
        BIN / "stylenet-train", "name=sigint", f"data.root={photo_dir}", "data.image_size=32",
        "data.batch_size=2", "data.num_workers=0", "model.base_channels=8", "model.num_res_blocks=1",
        "loss.vgg.weights=random", "style_size=48", "samples.size=32", "samples.num_photos=2",
        "checkpoint_every_n_steps=1", "trainer.max_steps=100000", "trainer.enable_progress_bar=false",
        f"export.dir={tmp_path / 'exp'}", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    p = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert _wait_for(lambda: last.is_file(), timeout=120)
    first = last.stat().st_mtime_ns
    assert _wait_for(lambda: last.stat().st_mtime_ns != first, timeout=120)  # steps are running
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert (
        line.startswith("interrupted: training stopped at step ")
        and "rerun the same command" in line
    )
    step = int(line.split("at step ")[1].split(";")[0])
    assert torch.load(last, weights_only=True)["global_step"] == step and step > 0


# ----------------------------------------------------------------------------- 7. exports


def test_two_exports_keep_two_sidecars_with_normal_permissions(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    old = os.umask(0o022)
    try:
        assert export_main(["-c", str(ckpt), "-f", "onnx", "-o", str(tmp_path / "bank.onnx")]) == 0
        assert (
            export_main(
                ["-c", str(ckpt), "-f", "safetensors", "-o", str(tmp_path / "bank.safetensors")]
            )
            == 0
        )
    finally:
        os.umask(old)
    assert (tmp_path / "bank.onnx.json").is_file() and (
        tmp_path / "bank.safetensors.json"
    ).is_file()
    for name in ("bank.onnx", "bank.safetensors", "bank.onnx.json", "bank.safetensors.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert "mix" in (tmp_path / "bank.onnx.json").read_text()


# ----------------------------------------------------------------------------- 8. messages


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize(
    "case,expected",
    [
        ("pickle", "could run code, so stylenet refuses it"),
        ("truncated", "is truncated or damaged"),
        ("folder", "is a folder, not a file"),
        ("text", "is not a PyTorch checkpoint file"),
        ("empty", "is an empty file"),
    ],
)
def test_checkpoint_errors_say_what_is_wrong(ckpt, tmp_path, capsys, case, expected):
    src = make_photo(tmp_path / "in.png", (64, 48))
    bad = tmp_path / "bad.pt"
    if case == "pickle":
        torch.save({"format": "stylenet.inference", "x": torch.nn.Linear(2, 2)}, bad)
    elif case == "truncated":
        bad.write_bytes(ckpt.read_bytes()[:3000])
    elif case == "folder":
        bad = tmp_path
    elif case == "text":
        bad.write_text("hello, this is not a network\n")
    else:
        bad.write_bytes(b"")
    assert run("-c", bad, "-i", src, "-o", tmp_path / "o.png") == 1
    err = one_error_line(capsys)
    assert expected in err
    assert "weights_only=False" not in err and "miniz" not in err


def test_truncated_photos_are_counted_before_training(compose, tiny_overrides, tmp_path):
    d = tmp_path / "broken"
    for i in range(3):
        raw = make_photo(tmp_path / f"src{i}.jpg", (64, 64), seed=i).read_bytes()
        d.mkdir(exist_ok=True)
        (d / f"t{i}.jpg").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match=r"none of 3 files is a usable image \(truncated: 3\)"):
        train(compose(tiny_overrides + [f"data.root={d}"]))


def test_not_a_video_is_one_line(ckpt, tmp_path, capsys):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video at all")
    assert run("-c", ckpt, "-i", fake, "-o", tmp_path / "o.mp4") == 1
    err = one_error_line(capsys)
    assert "is not a readable video" in err and "ffmpeg version" not in err


# ----------------------------------------------------------------------------- 9. smaller ones


def test_trailing_slash_means_a_folder(ckpt, tmp_path, capsys):
    src = make_photo(tmp_path / "in.png", (48, 40))
    assert run("-c", ckpt, "-i", src, "-o", str(tmp_path / "newdir") + "/") == 0
    assert (tmp_path / "newdir" / "in.png").is_file()


def test_folder_problems_found_up_front(ckpt, tmp_path, capsys):
    d = tmp_path / "photos"
    for i in range(3):
        make_photo(d / f"a{i}.png", (40, 32), seed=i)
    assert run("-c", ckpt, "-i", d, "-o", tmp_path / "o1", "--ext", "xyz") == 1
    assert "--ext: unknown image extension" in one_error_line(capsys)
    assert not (tmp_path / "o1").exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert run("-c", ckpt, "-i", d, "-o", blocker) == 1
    assert "is a file" in one_error_line(capsys)
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert run("-c", ckpt, "-i", d, "-o", ro / "out") == 1
        one_error_line(capsys)


def test_failure_lines_name_the_file_once(ckpt, tmp_path, capsys):
    d = tmp_path / "photos"
    make_photo(d / "good.png", (40, 32))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert run("-c", ckpt, "-i", d, "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "broken.jpg" in ln]
    assert len(lines) == 1 and lines[0].count("broken.jpg") == 1, lines


def test_mask_options_checked(ckpt, tmp_path, capsys):
    src = make_photo(tmp_path / "in.png", (64, 48))
    assert run("-c", ckpt, "-i", src, "-o", tmp_path / "o.png", "--mask-style", "1") == 1
    assert "--mask-style: a mask style needs a mask" in one_error_line(capsys)
    square = tmp_path / "m.png"
    Image.new("L", (50, 50), 255).save(square)
    assert (
        run("-c", ckpt, "-i", src, "-o", tmp_path / "o.png", "--mask", square, "--mask-style", "1")
        == 1
    )
    assert "aspect ratios differ" in one_error_line(capsys)
    same = tmp_path / "m2.png"
    Image.new("L", (128, 96), 255).save(same)  # the image's shape at twice the size: fine
    assert (
        run("-c", ckpt, "-i", src, "-o", tmp_path / "o.png", "--mask", same, "--mask-style", "1")
        == 0
    )


def test_large_photos_downscaled_with_a_note(ckpt, tmp_path, capsys):
    d = tmp_path / "photos"
    make_photo(d / "big.png", (300, 200))
    make_photo(d / "small.png", (60, 40))
    assert run("-c", ckpt, "-i", d, "-o", tmp_path / "out", "--max-size", "100") == 0
    assert "1 image(s) larger than 100 px were scaled down" in capsys.readouterr().err
    assert Image.open(tmp_path / "out" / "big.png").size == (100, 67)


def test_tiled_runs_report_progress(ckpt):
    from stylenet.inference.stylizer import Stylizer

    st = Stylizer(ckpt, device="cpu", precision="fp32")
    seen = []
    st.progress = lambda done, total: seen.append((done, total))
    st.stylize(torch.rand(3, 200, 200), style=0, max_size=0, tile=80, tile_overlap=16)
    assert seen and seen[-1][0] == seen[-1][1] >= 4
