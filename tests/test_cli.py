"""The stylize/export commands end to end, including every bad-input case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.cli.export import main as export_main
from stylenet.cli.stylize import main as stylize_main
from tests.conftest import make_photo, random_bank

NAMES = ["starry_night", "the_scream"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("ck") / "bank.pt", NAMES)


def run(*args):
    return stylize_main([str(a) for a in args])


def test_list_styles(ckpt, capsys):
    assert run("-c", ckpt, "--list-styles") == 0
    assert capsys.readouterr().out.split() == ["0", "starry_night", "1", "the_scream"]


def test_image_and_never_overwrite(ckpt, tmp_path, capsys):
    src = make_photo(tmp_path / "in.png", (64, 48))
    before = src.read_bytes()
    out = tmp_path / "out" / "x.jpg"
    assert run("-c", ckpt, "-i", src, "-o", out, "--style", "the_scream") == 0
    assert Image.open(out).size == (64, 48) and Image.open(out).format == "JPEG"
    assert run("-c", ckpt, "-i", src, "-o", out) == 1
    assert "exists" in capsys.readouterr().err
    assert (
        run(
            "-c",
            ckpt,
            "-i",
            src,
            "-o",
            out,
            "--overwrite",
            "--style",
            "starry_night=0.5,the_scream=0.5",
        )
        == 0
    )
    # the input itself, even with --overwrite
    assert run("-c", ckpt, "-i", src, "-o", src, "--overwrite") == 1
    assert "input" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert not list(out.parent.glob(".*"))  # no temporary leftovers


@pytest.mark.parametrize(
    "case",
    [
        "missing_ckpt",
        "corrupt_ckpt",
        "foreign_ckpt",
        "pickle_ckpt",
        "missing_input",
        "unreadable",
        "unknown_style",
        "too_small",
        "unwritable",
    ],
)
def test_bad_input_one_line_nonzero(case, ckpt, tmp_path, capsys):
    src = make_photo(tmp_path / "in.png", (64, 48))
    out = tmp_path / "o.png"
    c = ckpt
    if case == "missing_ckpt":
        c = tmp_path / "nope.pt"
    elif case == "corrupt_ckpt":
        c = tmp_path / "bad.pt"
        c.write_bytes(b"garbage" * 10)
    elif case == "foreign_ckpt":
        c = tmp_path / "foreign.pt"
        torch.save({"weights": torch.zeros(3)}, c)
    elif case == "pickle_ckpt":
        c = tmp_path / "evil.pt"
        torch.save({"format": "stylenet.inference", "obj": torch.nn.Linear(2, 2)}, c)
    elif case == "missing_input":
        src = tmp_path / "nope.png"
    elif case == "unreadable":
        src = tmp_path / "bad.png"
        src.write_text("not an image")
    elif case == "too_small":
        src = make_photo(tmp_path / "tiny.png", (8, 8))
    elif case == "unwritable":
        blocker = tmp_path / "a_file"  # a directory cannot be created under a regular file
        blocker.write_text("x")
        out = blocker / "sub" / "o.png"
    style = "nope" if case == "unknown_style" else "0"
    code = run("-c", c, "-i", src, "-o", out, "--style", style)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    expected = {
        "missing_ckpt": "does not exist",
        "corrupt_ckpt": "not a PyTorch checkpoint file",
        "foreign_ckpt": "not a stylenet",
        "pickle_ckpt": "could run code, so stylenet refuses it",
        "missing_input": "does not exist",
        "unreadable": "cannot read",
        "unknown_style": "available: 0:starry_night",
        "too_small": "minimum",
        "unwritable": "cannot create output folder",
    }[case]
    assert expected in err, err


def test_folder_with_corrupt_file(ckpt, tmp_path, capsys):
    d = tmp_path / "photos"
    for i in range(3):
        make_photo(d / f"a{i}.png", (40, 32), seed=i)
    make_photo(d / "sub" / "b.jpg", (36, 36))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "styled"
    code = run("-c", ckpt, "-i", d, "-o", out, "--style", "1")
    captured = capsys.readouterr()
    assert code == 1
    assert "4 stylized" in captured.out and "1 failed" in captured.out
    assert "broken.jpg" in captured.err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        "a0.png",
        "a1.png",
        "a2.png",
        "sub/b.jpg",
    ]
    # second run: existing outputs are skipped, not overwritten
    code = run("-c", ckpt, "-i", d, "-o", out, "--style", "1")
    assert "4 skipped" in capsys.readouterr().out


def test_video_round_trip(ckpt, tmp_path, capsys):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    src = tmp_path / "clip.mp4"
    w, h, n, fps = 48, 32, 12, 8
    gen = imageio_ffmpeg.write_frames(
        str(src), (w, h), fps=fps, macro_block_size=2, ffmpeg_log_level="error"
    )
    gen.send(None)
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, : 4 * (i + 1)] = (200, 80, 40)
        gen.send(frame)
    gen.close()
    out = tmp_path / "styled.mp4"
    assert run("-c", ckpt, "-i", src, "-o", out, "--style", "0") == 0
    from stylenet.io.video import probe_video

    info = probe_video(out)
    assert info.frames == n
    assert abs(info.fps - fps) < 0.01
    assert info.size == (w, h)


def test_export_onnx_matches_pytorch(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    assert export_main(["-c", str(ckpt), "-f", "onnx", "-o", str(out)]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["max_abs_diff_vs_pytorch"] < 1e-4
    assert export_main(["-c", str(ckpt), "-f", "onnx", "-o", str(out)]) == 1  # exists


def test_export_torchscript_and_safetensors(ckpt, tmp_path, capsys):
    ts = tmp_path / "m.ts"
    assert export_main(["-c", str(ckpt), "-f", "torchscript", "-o", str(ts)]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["max_abs_diff_vs_pytorch"] < 1e-4
    st = tmp_path / "m.safetensors"
    assert export_main(["-c", str(ckpt), "-f", "safetensors", "-o", str(st)]) == 0
    from stylenet.checkpoints.export import load_safetensors
    from stylenet.checkpoints.format import load_network

    net, names = load_safetensors(st)
    ref, _, _ = load_network(ckpt)
    assert names == NAMES
    x = torch.rand(1, 3, 20, 24)
    w = ref.one_hot(1)
    torch.testing.assert_close(net(x, w), ref(x, w))
    assert json.loads((tmp_path / "m.safetensors.json").read_text())["style_names"] == NAMES


def test_folder_batches_same_size_images(ckpt, tmp_path, capsys):
    d = tmp_path / "same"
    for i in range(4):
        make_photo(d / f"s{i}.png", (40, 32), seed=i)
    make_photo(d / "other.png", (36, 44), seed=9)
    assert (
        run("-c", ckpt, "-i", d, "-o", tmp_path / "b1", "--style", "1", "--precision", "fp32") == 0
    )
    assert (
        run(
            "-c",
            ckpt,
            "-i",
            d,
            "-o",
            tmp_path / "b3",
            "--style",
            "1",
            "--precision",
            "fp32",
            "--batch-size",
            "3",
        )
        == 0
    )
    assert "5 stylized" in capsys.readouterr().out
    for p in sorted((tmp_path / "b1").iterdir()):
        a = np.asarray(Image.open(p), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b3" / p.name), dtype=int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, p.name
