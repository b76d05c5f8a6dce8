from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.checkpoints.format import export_inference_checkpoint
from stylenet.errors import ImageTooSmallError, OptionError, StyleSpecError
from stylenet.inference.stylizer import Stylizer, parse_style_spec
from stylenet.io.images import preserve_color
from stylenet.nn.network import random_network

NAMES = ["starry_night", "the_scream", "night_cafe"]


@pytest.fixture(scope="module")
def net():
    return random_network(3, spread=0.5)


@pytest.fixture(scope="module")
def ckpt(net, tmp_path_factory):
    p = tmp_path_factory.mktemp("ck") / "bank.pt"
    export_inference_checkpoint(net, NAMES, p)
    return p


@pytest.fixture(scope="module")
def st(ckpt):
    return Stylizer(ckpt, device="cpu", precision="fp32")


def _img(w=70, h=50, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, (h, w, 3))
    a = (a + np.roll(a, 1, 0) + np.roll(a, 1, 1)) / 3
    return Image.fromarray((a * 255).astype(np.uint8))


def test_style_spec_forms():
    torch.testing.assert_close(parse_style_spec("the_scream", NAMES), torch.tensor([0.0, 1, 0]))
    torch.testing.assert_close(parse_style_spec("2", NAMES), torch.tensor([0.0, 0, 1]))
    torch.testing.assert_close(parse_style_spec(2, NAMES), torch.tensor([0.0, 0, 1]))
    torch.testing.assert_close(
        parse_style_spec("starry_night=0.7,the_scream=0.3", NAMES), torch.tensor([0.7, 0.3, 0])
    )
    torch.testing.assert_close(  # normalised
        parse_style_spec("starry_night=7,night_cafe=3", NAMES), torch.tensor([0.7, 0, 0.3])
    )
    torch.testing.assert_close(
        parse_style_spec({"night_cafe": 1}, NAMES), torch.tensor([0.0, 0, 1])
    )
    torch.testing.assert_close(parse_style_spec([1, 1, 2], NAMES), torch.tensor([0.25, 0.25, 0.5]))


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("nope", "available: 0:starry_night, 1:the_scream"),
        ("5", "out of range"),
        ("starry_night=-1,the_scream=2", "negative"),
        ("starry_night=0", "all zero"),
        ("starry_night=abc", "bad share"),
        ([1, 2], "for 3 styles"),
    ],
)
def test_bad_style_specs(spec, msg):
    with pytest.raises(StyleSpecError, match=msg):
        parse_style_spec(spec, NAMES)


def test_one_pass_matches_network(st, net):
    img = _img()
    out = st.stylize(img, style="the_scream", max_size=0)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()[None] / 255
    with torch.no_grad():
        ref = net(x, net.one_hot(1))
    got = torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1).float()[None] / 255
    assert (got - ref).abs().max() < 1.5 / 255


def test_strength_zero_returns_input(st):
    img = _img()
    out = st.stylize(img, style=0, strength=0.0, max_size=0)
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int)).max()
    assert diff <= 1
    half = np.asarray(st.stylize(img, style=0, strength=0.5, max_size=0), dtype=float)
    full = np.asarray(st.stylize(img, style=0, max_size=0), dtype=float)
    expect = 0.5 * full + 0.5 * np.asarray(img, dtype=float)
    assert np.abs(half - expect).max() <= 1.5


def _chroma(a):
    a = a.astype(float) / 255
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return -0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b


def test_preserve_color_keeps_input_chrominance(st):
    img = _img()
    out = st.stylize(img, style=1, preserve_color=True, max_size=0)
    cb0, cr0 = _chroma(np.asarray(img))
    cb1, cr1 = _chroma(np.asarray(out))
    plain = st.stylize(img, style=1, max_size=0)
    cb2, _ = _chroma(np.asarray(plain))
    err_pc = np.abs(cb1 - cb0).mean() + np.abs(cr1 - cr0).mean()
    err_plain = np.abs(cb2 - cb0).mean()
    assert err_pc < 0.02 and err_pc < err_plain / 3


def test_preserve_color_exact_on_tensors():
    s = torch.rand(1, 3, 8, 8) * 0.2 + 0.4  # in gamut: no clamping after the swap
    o = torch.rand(1, 3, 8, 8) * 0.2 + 0.4
    out = preserve_color(s, o)
    y = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    torch.testing.assert_close(y(out), y(s), atol=1e-4, rtol=0)


def test_mask_white_equals_style_a_and_blends_spatially(st):
    img = _img(64, 48)
    white = Image.new("L", img.size, 255)
    a = np.asarray(st.stylize(img, style="starry_night", max_size=0), dtype=int)
    masked = np.asarray(
        st.stylize(img, style="starry_night", mask=white, mask_style="the_scream", max_size=0),
        dtype=int,
    )
    assert np.abs(a - masked).max() <= 1
    half = Image.new("L", img.size, 0)
    half.paste(255, (0, 0, 32, 48))
    b = np.asarray(st.stylize(img, style="the_scream", max_size=0), dtype=int)
    m = np.asarray(
        st.stylize(img, style="starry_night", mask=half, mask_style="the_scream", max_size=0),
        dtype=int,
    )
    # far from the edge each side looks like its own style
    assert np.abs(m[:, :8] - a[:, :8]).mean() < np.abs(m[:, :8] - b[:, :8]).mean()
    assert np.abs(m[:, -8:] - b[:, -8:]).mean() < np.abs(m[:, -8:] - a[:, -8:]).mean()
    with pytest.raises(OptionError, match="second style"):
        st.stylize(img, style=0, mask=white)


def test_tiled_matches_untiled(st):
    img = _img(200, 150, seed=3)
    full = np.asarray(st.stylize(img, style=2, max_size=0), dtype=float)
    tiled = np.asarray(st.stylize(img, style=2, max_size=0, tile=96, tile_overlap=32), dtype=float)
    assert full.shape == tiled.shape
    err = np.abs(full - tiled)
    assert err.mean() < 2.0, err.mean()  # in 0..255 units
    assert np.percentile(err, 99) < 12


def test_max_size_and_stroke_scale(st):
    img = _img(200, 100)
    assert st.stylize(img, style=0, max_size=100).size == (100, 50)
    big_strokes = st.stylize(img, style=0, max_size=0, stroke_scale=2.0)
    assert big_strokes.size == (200, 100)
    assert (
        np.abs(
            np.asarray(big_strokes, dtype=int)
            - np.asarray(st.stylize(img, style=0, max_size=0), dtype=int)
        ).mean()
        > 1
    )


def test_too_small_says_minimum(st):
    with pytest.raises(ImageTooSmallError, match="minimum is 16x16"):
        st.stylize(_img(10, 40), style=0)


def test_tensor_api_roundtrip(st):
    x = torch.rand(3, 40, 52)
    y = st.stylize(x, style="night_cafe", max_size=0)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1


def test_bf16_close_to_fp32(ckpt):
    img = _img(64, 64)
    a = np.asarray(
        Stylizer(ckpt, device="cpu", precision="fp32").stylize(img, style=0), dtype=float
    )
    b = np.asarray(
        Stylizer(ckpt, device="cpu", precision="bf16").stylize(img, style=0), dtype=float
    )
    assert np.abs(a - b).mean() < 3.0  # 0..255 units
