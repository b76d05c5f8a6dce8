"""The painting's palette (``stylenet.inference.palette``, ``--palette``): the colour transfer
itself, a bank style's palette from its thumbnail, mixes and masks, style images, the command
line and the server."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.checkpoints.format import export_inference_checkpoint, make_thumbnail
from stylenet.errors import OptionError
from stylenet.inference.palette import (
    PaletteTarget,
    colours_of,
    lowpass,
    match,
    mixture,
    transfer,
)
from stylenet.inference.stylizer import StylizeOptions, Stylizer
from stylenet.nn.network import random_network
from tests.conftest import make_photo, random_bank

NAMES = ["dusk", "ember"]
DUSK, EMBER = (0.1, 0.15, 0.35), (0.85, 0.45, 0.1)  # the paintings' colours


def painting(path: Path, base: tuple[float, float, float], seed: int) -> Path:
    """A noisy painting around one colour (its mean is ``base``, give or take the noise)."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(base) + rng.normal(0, 0.08, (90, 120, 3)), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((arr * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    """Two styles whose paintings are a dark blue and an orange."""
    d = tmp_path_factory.mktemp("palette")
    thumbs = [make_thumbnail(painting(d / "dusk.png", DUSK, 1)),
              make_thumbnail(painting(d / "ember.png", EMBER, 2))]  # fmt: skip
    return export_inference_checkpoint(random_network(2), NAMES, d / "bank.pt", thumbnails=thumbs)


def mean_colour(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(3, -1).mean(1).double()


def correlated(seed: int, lo: float, hi: float, size: tuple[int, int] = (40, 50)) -> torch.Tensor:
    """[3, H, W] with correlated channels inside [lo, hi] (no clipping in the tests below)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, *size, generator=g)
    x = torch.cat([base * 0.6 + 0.4 * torch.rand(1, *size, generator=g) for _ in range(3)])
    return lo + (hi - lo) * x


def smooth(seed: int, lo: float, hi: float, size: tuple[int, int] = (64, 80)) -> torch.Tensor:
    """[3, H, W] broad colour areas (a 4x5 grid of correlated colours, resized up) in [lo, hi]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 4, 5, generator=g)
    cells = torch.cat([0.6 * base + 0.4 * torch.rand(1, 4, 5, generator=g) for _ in range(3)])
    up = torch.nn.functional.interpolate(cells[None], size=size, mode="bilinear")[0]
    return lo + (hi - lo) * up


def stroke_energy(x: torch.Tensor) -> float:
    return float(colours_of(x - lowpass(x)).cov.trace())


def test_match_moves_the_broad_colours_and_keeps_the_strokes():
    g = torch.Generator().manual_seed(9)
    strokes = 0.03 * (torch.rand(3, 64, 80, generator=g) - 0.5)
    y = (smooth(0, 0.25, 0.75) + strokes)[None]
    target = colours_of(smooth(1, 0.4, 0.6))
    out = match(y, PaletteTarget(target), 1.0)
    got = colours_of(out[0])
    before = colours_of(y[0])
    assert float((before.mean - target.mean).abs().max()) > 0.03  # it had to move
    assert torch.allclose(got.mean, target.mean, atol=0.005)
    assert torch.allclose(got.cov.diagonal(), target.cov.diagonal(), rtol=0.1)
    # The strokes keep their contrast; one linear map of every pixel would have shrunk them
    # with the areas (the painting's spread is a third of the photo's).
    assert 0.85 < stroke_energy(out[0]) / stroke_energy(y[0]) < 1.15
    everything = transfer(y[0], before, target)
    assert stroke_energy(everything) / stroke_energy(y[0]) < 0.6
    # Amounts blend between the output and the full match.
    assert torch.equal(match(y, PaletteTarget(target), 0.0), y)
    half = match(y, PaletteTarget(target), 0.5)
    assert torch.allclose(half, 0.5 * (y + out), atol=1e-6)


def test_a_mix_palette_is_the_distribution_of_both_paintings_pixels():
    a, b = correlated(2, 0.0, 0.5, (30, 40)), correlated(3, 0.4, 1.0, (20, 30))
    both = torch.cat([a.reshape(3, -1), b.reshape(3, -1)], dim=1)
    mixed = mixture([colours_of(a), colours_of(b)], torch.tensor([1200.0, 600.0]))
    ref = colours_of(both)
    assert torch.allclose(mixed.mean, ref.mean, atol=1e-9)
    assert torch.allclose(mixed.cov, ref.cov, atol=1e-9)


def test_a_masked_palette_matches_each_region_to_its_own_style():
    y = smooth(4, 0.3, 0.7, (40, 50))[None]
    dark, bright = colours_of(correlated(5, 0.05, 0.3)), colours_of(correlated(6, 0.6, 0.9))
    m = torch.zeros(1, 1, 40, 50)
    m[..., :25] = 1.0
    out = match(y, PaletteTarget(dark, bright, m), 1.0)[0]
    assert torch.allclose(mean_colour(out[:, :, :25]), dark.mean, atol=0.01)
    assert torch.allclose(mean_colour(out[:, :, 25:]), bright.mean, atol=0.01)


def test_a_bank_style_takes_its_paintings_palette(bank):
    st = Stylizer(bank, device="cpu", precision="fp32")
    x = torch.rand(1, 3, 64, 80)
    dusk = st.palette_target("dusk").first
    ember = st.palette_target("ember").first
    # Each style's palette is its own painting's (read from its thumbnail).
    assert torch.allclose(dusk.mean, torch.tensor(DUSK, dtype=torch.float64), atol=0.02)
    assert torch.allclose(ember.mean, torch.tensor(EMBER, dtype=torch.float64), atol=0.02)
    plain = st.stylize(x, style="dusk")
    moved = st.stylize(x, style="dusk", palette=1.0)
    # The random network's output is nowhere near dark blue; with the palette it is.
    assert float((mean_colour(plain[0]) - dusk.mean).abs().max()) > 0.1
    assert torch.allclose(mean_colour(moved[0]), dusk.mean, atol=0.02)
    # A mix aims at the mixture of the two paintings.
    mix = st.stylize(x, style="dusk=0.5,ember=0.5", palette=1.0)
    assert torch.allclose(mean_colour(mix[0]), 0.5 * (dusk.mean + ember.mean), atol=0.02)
    # With a mask, each side takes its own painting's colours.
    mask = torch.zeros(64, 80)
    mask[:, :40] = 1.0
    masked = st.stylize(x, style="dusk", mask=mask, mask_style="ember", palette=1.0)
    assert torch.allclose(mean_colour(masked[0, :, :, :40]), dusk.mean, atol=0.03)
    assert torch.allclose(mean_colour(masked[0, :, :, 40:]), ember.mean, atol=0.03)
    # 0 leaves the output as it was.
    assert torch.equal(st.stylize(x, style="dusk", palette=0.0), plain)


def test_palette_errors_are_one_line(bank, tmp_path):
    with pytest.raises(OptionError, match="choose one"):
        StylizeOptions(palette=0.5, preserve_color=True).check()
    with pytest.raises(OptionError, match=r"palette: must be within 0\.\.1"):
        StylizeOptions(palette=1.5).check()
    plain = random_bank(tmp_path / "plain.pt", NAMES)  # exported without thumbnails
    st = Stylizer(plain, device="cpu", precision="fp32")
    with pytest.raises(OptionError, match="no picture of style 'dusk'"):
        st.stylize(torch.rand(1, 3, 48, 48), style="dusk", palette=1.0)


def test_the_command_line_takes_palette(bank, tmp_path, capsys):
    from stylenet.cli.stylize import main

    photo = make_photo(tmp_path / "p.png", (80, 64))
    out = tmp_path / "o.png"
    assert main(["-c", str(bank), "-i", str(photo), "-o", str(out), "-s", "ember",
                 "--palette", "1", "--device", "cpu"]) == 0  # fmt: skip
    got = torch.from_numpy(np.asarray(Image.open(out), dtype=np.float64) / 255).permute(2, 0, 1)
    ember = Stylizer(bank, device="cpu").palette_target("ember").first
    assert torch.allclose(mean_colour(got), ember.mean, atol=0.02)
    capsys.readouterr()
    rc = main(["-c", str(bank), "-i", str(photo), "-o", str(tmp_path / "o2.png"),
               "--palette", "1", "--preserve-color"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: --palette:"), err


def test_the_server_takes_palette(bank, tmp_path):
    from fastapi.testclient import TestClient

    from stylenet.serve.app import create_app
    from stylenet.serve.config import ServeConfig

    cfg = ServeConfig(checkpoint=str(bank), device="cpu", precision="fp32", max_size=256,
                      default_size=64)  # fmt: skip
    files = {"image": ("p.png", make_photo(tmp_path / "p.png", (64, 48)).read_bytes(), "image/png")}
    dusk = Stylizer(bank, device="cpu").palette_target("dusk").first
    with TestClient(create_app(cfg)) as c:
        r = c.post(
            "/v1/stylize", files=files, data={"style": "dusk", "palette": "1", "format": "png"}
        )
        assert r.status_code == 200, r.text
        arr = np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.float64) / 255
        assert torch.allclose(mean_colour(torch.from_numpy(arr).permute(2, 0, 1)), dusk.mean,
                              atol=0.02)  # fmt: skip
        bad = c.post("/v1/stylize", files=files, data={"palette": "2"})
        assert bad.status_code == 422 and "palette" in bad.json()["error"]
        both = c.post("/v1/stylize", files=files, data={"palette": "1", "preserve_color": "true"})
        assert both.status_code == 422 and "choose one" in both.json()["error"]


def test_a_style_images_palette_comes_from_the_file(tmp_path, monkeypatch):
    from stylenet.checkpoints.format import predictor_payload
    from stylenet.inference import predicted
    from tests.test_predictor import random_vgg, spread_predictor

    vgg = random_vgg()
    monkeypatch.setattr(predicted.StyleImages, "_features", lambda self: vgg.to(self.device))
    net = random_network(2)
    payload = {"predictor": predictor_payload(spread_predictor(net), 5, {"styles": "test"})}
    ck = export_inference_checkpoint(net, NAMES, tmp_path / "pred.pt", extra=payload)
    st = Stylizer(ck, device="cpu", precision="fp32")
    green = painting(tmp_path / "green.png", (0.2, 0.6, 0.25), 3)
    target = st.palette_target(str(green)).first
    assert torch.allclose(target.mean, torch.tensor([0.2, 0.6, 0.25], dtype=torch.float64),
                          atol=0.02)  # fmt: skip
    y = st.stylize(torch.rand(1, 3, 64, 80), style=str(green), palette=1.0)
    assert torch.allclose(mean_colour(y[0]), target.mean, atol=0.02)
    # The file was predicted once: its palette came with its rows.
    assert st.images.predictions == 1


def test_a_large_images_colours_are_read_from_a_sample_that_misses_no_pattern():
    # A 2-px checkerboard over smooth areas, 400x300 (more pixels than the statistics read):
    # a regular grid of every other pixel would see one phase of the checkerboard only.
    yy, xx = torch.meshgrid(torch.arange(300), torch.arange(400), indexing="ij")
    checker = ((yy + xx) % 2).double() * 0.4 - 0.2
    x = (smooth(7, 0.3, 0.7, (300, 400)).double() + checker).float()
    full = x.reshape(3, -1).double()
    got = colours_of(x)
    assert torch.allclose(got.mean, full.mean(1), atol=2e-3)
    assert torch.allclose(got.cov, torch.cov(full, correction=0), rtol=0.03, atol=2e-4)
