"""The media people actually have, through every command that takes them.

Generated at run time (``tests/media.py``): HD and full-HD H.264 clips (one with the rotation
matrix phones write), a 4000x3000 JPEG, EXIF orientations 3/6/8, CMYK, 16-bit, greyscale,
palette with transparency, RGBA, WebP, progressive JPEG, a 1x4000 strip, an animated GIF and a
header that claims 400 megapixels. Each test checks sizes, orientation and frame counts, and that
the inputs come out unchanged. The network is a tiny random one: shapes, not looks, are tested.
"""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from stylenet.cli.stylize import main as stylize_main
from stylenet.io.video import probe_video
from tests import media
from tests.conftest import random_bank

NAMES = ["starry_night", "the_scream"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return random_bank(tmp_path_factory.mktemp("ck") / "bank.pt", NAMES)


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """A folder of every odd kind of photo, and their sizes as seen."""
    d = tmp_path_factory.mktemp("odd")
    return d, media.odd_photos(d)


def stylize(*args) -> int:
    return stylize_main([str(a) for a in args])


def cap(size: tuple[int, int], max_size: int = 1024) -> tuple[int, int]:
    w, h = size
    f = min(1.0, max_size / max(w, h))
    return round(w * f), round(h * f)


# ----------------------------------------------------------------------------- video


def _check_clip(ckpt, src, out, expect_size, capsys):
    before = media.digest(src.parent)
    info = probe_video(src)
    assert stylize("-c", ckpt, "-i", src, "-o", out, "-s", "starry_night") == 0, (
        capsys.readouterr().err
    )
    got = probe_video(out)
    assert got.size == expect_size
    assert got.frames == info.frames and abs(got.fps - info.fps) < 0.01
    after = media.digest(src.parent)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs untouched


def test_hd_clip_larger_than_max_size(ckpt, tmp_path, capsys):
    # A 1280x720 clip at the default max size (1024): the smoother used to blend the full-size
    # frame with the capped output and crash on the first frame.
    src = media.clip(tmp_path / "in" / "hd.mp4", 1280, 720, seconds=2, fps=15)
    _check_clip(ckpt, src, tmp_path / "hd_out.mp4", (1024, 576), capsys)


@pytest.mark.slow
def test_full_hd_and_phone_rotated_clips(ckpt, tmp_path, capsys):
    src = media.clip(tmp_path / "in" / "fhd.mp4", 1920, 1080, seconds=2, fps=15)
    _check_clip(ckpt, src, tmp_path / "fhd_out.mp4", (1024, 576), capsys)
    # A phone's portrait clip: stored 1280x720 with a 90-degree display rotation; it is seen,
    # and stylized, upright (720x1280, capped to 576x1024).
    rot = media.clip(tmp_path / "in" / "portrait.mp4", 1280, 720, seconds=2, fps=15, rotation=90)
    assert probe_video(rot).size == (720, 1280)
    _check_clip(ckpt, rot, tmp_path / "portrait_out.mp4", (576, 1024), capsys)
    # Without smoothing too, and at a smaller cap.
    out = tmp_path / "small.mp4"
    assert stylize("-c", ckpt, "-i", src, "-o", out, "-s", "the_scream", "--temporal", "0",
                   "--max-size", "320") == 0  # fmt: skip
    assert probe_video(out).size == (320, 180)


# ----------------------------------------------------------------------------- photos


def test_every_odd_photo_stylizes_at_its_seen_size(ckpt, odd, tmp_path, capsys):
    folder, sizes = odd
    before = media.digest(folder)
    for name, size in sizes.items():
        out = tmp_path / f"{name}.png"
        assert stylize("-c", ckpt, "-i", folder / name, "-o", out, "-s", "starry_night") == 0, name
        assert Image.open(out).size == size, name
    assert "only the first is stylized" in capsys.readouterr().err  # the animated GIF
    assert media.digest(folder) == before


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(ckpt, tmp_path, orientation):
    src = media.exif_rotated(tmp_path / f"o{orientation}.jpg", orientation, 120, 80)
    out = tmp_path / "out.png"
    # strength 0 gives the photo back through the whole path: the marker shows the orientation
    assert stylize("-c", ckpt, "-i", src, "-o", out, "--strength", "0") == 0
    img = Image.open(out)
    assert img.size == (120, 80) and media.marker_corner(img) == "tl"
    out2 = tmp_path / "styled.jpg"
    assert stylize("-c", ckpt, "-i", src, "-o", out2, "-s", "the_scream") == 0
    assert Image.open(out2).size == (120, 80)


def test_a_4000x3000_photo_is_capped_with_a_note(ckpt, tmp_path, capsys):
    src = media.jpeg(tmp_path / "big.jpg", 4000, 3000)
    out = tmp_path / "big_out.jpg"
    assert stylize("-c", ckpt, "-i", src, "-o", out) == 0
    assert Image.open(out).size == (1024, 768)
    assert "scaled down from 4000x3000" in capsys.readouterr().err


@pytest.mark.slow
def test_a_4000x3000_photo_at_native_size(ckpt, tmp_path):
    src = media.jpeg(tmp_path / "big.jpg", 4000, 3000)
    out = tmp_path / "big_out.png"
    assert stylize("-c", ckpt, "-i", src, "-o", out, "--max-size", "0") == 0
    assert Image.open(out).size == (4000, 3000)


def test_strip_and_bomb_are_refused_in_one_line(ckpt, tmp_path, capsys):
    strip = media.strip(tmp_path / "strip.png")
    assert stylize("-c", ckpt, "-i", strip, "-o", tmp_path / "s.png") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "minimum is 16x16" in err
    bomb = media.huge_header_jpeg(tmp_path / "bomb.jpg")
    assert stylize("-c", ckpt, "-i", bomb, "-o", tmp_path / "b.png") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "400 megapixels" in err


def test_folder_of_odd_media(ckpt, odd, tmp_path, capsys):
    folder, sizes = odd
    src = tmp_path / "in"
    shutil.copytree(folder, src)
    media.strip(src / "strip.png")
    media.jpeg(src / "sub" / "big.jpg", 4000, 3000)
    before = media.digest(src)
    out = tmp_path / "out"
    assert stylize("-c", ckpt, "-i", src, "-o", out, "--ext", "png") == 1  # the strip fails
    text = capsys.readouterr()
    assert f"{len(sizes) + 1} stylized, 0 skipped (exist), 1 failed" in text.out
    assert "strip.png" in text.err
    for name, size in sizes.items():
        assert Image.open((out / name).with_suffix(".png")).size == size, name
    assert Image.open(out / "sub" / "big.png").size == (1024, 768)
    assert media.digest(src) == before


# ----------------------------------------------------------------------------- the HTTP API


def test_http_api_takes_odd_media(ckpt, odd, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from stylenet.serve.app import create_app
    from stylenet.serve.config import ServeConfig

    folder, sizes = odd
    big = media.jpeg(tmp_path / "big.jpg", 4000, 3000)
    cfg = ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32", default_size=512)
    with TestClient(create_app(cfg)) as c:

        def post(path):
            return c.post("/v1/stylize", files={"image": (path.name, path.read_bytes())},
                          data={"format": "png"})  # fmt: skip

        for name, size in sizes.items():
            r = post(folder / name)
            assert r.status_code == 200, (name, r.text)
            assert r.headers["x-stylenet-size"] == "x".join(map(str, size)), name
        r = post(big)
        assert r.status_code == 200 and r.headers["x-stylenet-size"] == "512x384"
        r = post(media.strip(tmp_path / "strip.png"))
        assert r.status_code == 400 and "minimum" in r.json()["error"]
        r = post(media.huge_header_jpeg(tmp_path / "bomb.jpg"))
        assert r.status_code == 413 and "megapixels" in r.json()["error"]
        up = media.exif_rotated(tmp_path / "o6.jpg", 6, 120, 80)
        r = c.post("/v1/stylize", files={"image": ("o6.jpg", up.read_bytes())},
                   data={"format": "png", "strength": "0"})  # fmt: skip
        import io

        img = Image.open(io.BytesIO(r.content))
        assert img.size == (120, 80) and media.marker_corner(img) == "tl"


# ----------------------------------------------------------------------------- optimize, evaluate


def test_optimize_takes_odd_media(odd, tmp_path):
    from stylenet.optimization.run import run
    from stylenet.runtime.hydra import CONFIG_DIR, compose_config

    folder, _ = odd
    big = media.jpeg(tmp_path / "big.jpg", 4000, 3000)
    for content, style, want in (
        (folder / "exif6.jpg", folder / "cmyk.jpg", (48, 32)),
        (big, folder / "palette.png", (48, 36)),
        (folder / "grey16.png", folder / "animated.gif", (48, 32)),
    ):
        cfg = compose_config("optimize", [f"content={content}", f"style={style}", "size=48",
                                          "steps=2", "loss.vgg.weights=random"],
                             CONFIG_DIR / "optimize")  # fmt: skip
        res = run(cfg, run_dir=tmp_path / content.stem)
        assert Image.open(res["result"]).size == want, content.name


def test_evaluate_takes_odd_media(ckpt, odd, tmp_path):
    from stylenet.evaluation.harness import EvalConfig, evaluate_checkpoint

    folder, sizes = odd
    photos = tmp_path / "photos"
    shutil.copytree(folder, photos)
    media.strip(photos / "strip.png")
    cfg = EvalConfig(size=64, gap_photos=0, max_photos=0, vgg_weights="random", device="cpu",
                     progress=False)  # fmt: skip
    rep = evaluate_checkpoint(ckpt, photos, ["the_scream"], cfg)
    assert sorted(rep["photos"]) == sorted(n.rsplit(".", 1)[0] for n in sizes)
    for y in rep["_outputs"]["the_scream"]:
        assert max(y.shape[-2:]) == 64


# ----------------------------------------------------------------------------- training data


def test_training_scan_and_run_on_odd_media(odd, tmp_path, compose, tiny_overrides):
    from stylenet.data.photos import scan_images
    from stylenet.io.images import list_images
    from stylenet.training.run import train

    folder, sizes = odd
    photos = tmp_path / "train"
    shutil.copytree(folder, photos)
    media.strip(photos / "strip.png")
    media.huge_header_jpeg(photos / "bomb.jpg")
    media.jpeg(photos / "big.jpg", 4000, 3000)
    scan = scan_images(list_images(photos), min_size=32, cache=False)
    assert sorted(p.name for p in scan.files) == sorted([*sizes, "big.jpg"])
    assert [p.rsplit("/", 1)[-1] for p in scan.skipped["too small"]] == ["strip.png"]
    assert [p.rsplit("/", 1)[-1] for p in scan.skipped["too large"]] == ["bomb.jpg"]
    before = media.digest(photos)
    ov = [o for o in tiny_overrides if not o.startswith("data.root=")]
    res = train(compose([*ov, f"data.root={photos}", "trainer.max_steps=2"]))
    assert res.global_step == 2 and res.export_path.is_file()
    assert media.digest(photos) == before
