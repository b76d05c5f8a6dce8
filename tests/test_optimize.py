from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylenet.errors import LayerNameError, OptimizeError
from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures
from stylenet.optimization.gatys import optimize_image
from tests.conftest import make_photo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vgg():
    return VGGFeatures(
        ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"], weights="random"
    )


def _t(seed, h=32, w=40):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_decreases(vgg, optimizer):
    res = optimize_image(
        _t(0), [_t(1)], vgg=vgg, optimizer=optimizer, steps=25, device="cpu", style_weight=1e5
    )
    first, last = res.history[0]["loss"], res.history[-1]["loss"]
    assert last < first
    assert res.image.shape == (1, 3, 32, 40) and 0 <= res.image.min() and res.image.max() <= 1


def test_content_only_from_noise_approaches_content(vgg):
    content = _t(3)
    res = optimize_image(
        content, [_t(4)], vgg=vgg, style_weight=0.0, init="noise", steps=40, device="cpu"
    )
    h = res.history
    assert h[-1]["content_loss"] < 0.1 * h[0]["content_loss"]
    noise_err = (torch.rand_like(content) - content).abs().mean()
    assert (res.image - content).abs().mean() < noise_err


def test_style_blend_and_coarse_to_fine(vgg):
    res = optimize_image(
        _t(5, 48, 48), [_t(6), _t(7)], [0.7, 0.3], vgg=vgg, steps=3, scales=[24, 48], device="cpu"
    )
    assert res.steps == 6 and res.image.shape[-2:] == (48, 48)
    with pytest.raises(OptimizeError, match="blend"):
        optimize_image(_t(5), [_t(6)], [0.5, 0.5], vgg=vgg, steps=1, device="cpu")


def test_style_layer_names_validated(vgg):
    with pytest.raises(LayerNameError, match="VGG19"):
        optimize_image(_t(0), [_t(1)], vgg=vgg, style_layers=["relu4_4"], steps=1, device="cpu")
    with pytest.raises(LayerNameError, match="valid layers"):
        optimize_image(_t(0), [_t(1)], vgg=vgg, content_layers=["conv4_2"], steps=1, device="cpu")


def test_too_large_suggests_smaller(vgg, monkeypatch):
    import stylenet.optimization.gatys as O

    monkeypatch.setattr(O, "_available_bytes", lambda d: 1 << 20)
    with pytest.raises(OptimizeError, match="smaller size or coarse-to-fine"):
        optimize_image(_t(0), [_t(1)], vgg=vgg, steps=1, device="cpu")


def test_training_and_optimization_share_one_loss():
    # The same image scored by the optimizer (its first Adam step evaluates the initial image,
    # the photo itself) and by the training loss gives the same terms: one loss, two callers.
    layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    weights = dict(content_weight=1e5, style_weight=1e10, tv_weight=1e5)
    vgg = VGGFeatures(layers, weights="random")
    style_layers = {name: 1.0 for name in layers}
    photo, style = _t(0), _t(1)
    res = optimize_image(photo, [style], vgg=vgg, optimizer="adam", steps=1, device="cpu",
                         content_layers=["relu2_2"], style_layers=style_layers, **weights)  # fmt: skip
    loss = PerceptualLoss(vgg, ["relu2_2"], style_layers, **weights)
    loss.set_style_targets([style])
    terms = loss(photo, photo, torch.tensor([0]))
    first = res.history[0]
    assert first["style_loss"] > 0 and first["tv_loss"] > 0
    for key in ("loss", "content_loss", "style_loss", "tv_loss"):
        assert first[key] == pytest.approx(float(terms[key]), rel=1e-4, abs=1e-9), key


def _cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "optimize.py"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**__import__("os").environ, "STYLENET_FORCE_CPU": "1", "STYLENET_OFFLINE": "1"},
    )


def test_sweep_writes_contact_sheet_one_tile_per_variant(tmp_path):
    c = make_photo(tmp_path / "c.png", (40, 32), seed=1)
    s = make_photo(tmp_path / "s.png", (40, 40), seed=2)
    sweep = tmp_path / "sweep"
    r = _cli(
        tmp_path,
        "--multirun",
        f"content={c}",
        f"style={s}",
        "size=32",
        "steps=2",
        "loss.vgg.weights=random",
        "snapshot_every=1",
        "loss.style_weight=1e3,1e4,1e5",
        f"hydra.sweep.dir={sweep}",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    sheet = sweep / "contact_sheet.png"
    assert sheet.is_file()
    for j in range(3):
        assert (sweep / str(j) / "result.png").is_file()
        assert (sweep / str(j) / "snapshots" / "step00002.png").is_file()
        assert list((sweep / str(j) / "tb").glob("events.*"))
    w, h = Image.open(sheet).size
    assert w == 3 * (32 + 6) + 6  # three 32 px results side by side


def test_cli_bad_inputs(tmp_path):
    s = make_photo(tmp_path / "s.png", (40, 40), seed=2)
    r = _cli(
        tmp_path, f"content={tmp_path / 'missing.jpg'}", f"style={s}", "loss.vgg.weights=random"
    )
    assert r.returncode != 0 and "missing.jpg" in r.stderr and "no such file" in r.stderr
    c = make_photo(tmp_path / "c.png", (40, 32), seed=1)
    r = _cli(tmp_path, f"content={c}", "style=not_a_style", "loss.vgg.weights=random")
    assert r.returncode != 0 and "not_a_style" in r.stderr and "starry_night" in r.stderr
    r = _cli(
        tmp_path, f"content={c}", f"style={s}", "style_layers=relu4_4", "loss.vgg.weights=random"
    )
    assert r.returncode != 0 and "valid layers" in r.stderr
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    r = _cli(tmp_path, f"content={bad}", f"style={s}", "loss.vgg.weights=random")
    assert r.returncode != 0 and "cannot read image" in r.stderr
