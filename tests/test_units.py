"""Direct tests of small modules that other tests only reach through the commands: device,
memory, tiling, signals."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import torch

from stylenet.errors import OptionError
from stylenet.inference import memory, tiling
from stylenet.runtime import device, signals

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- device


def test_precision_names_are_checked():
    assert device.resolve_precision("fp32", CPU) == "fp32"
    assert device.resolve_precision("auto", CPU) == ("bf16" if device.cpu_bf16_fast() else "fp32")
    with pytest.raises(OptionError, match="must be one of auto"):
        device.resolve_precision("fp8", CPU)


@pytest.mark.parametrize(
    ("torch_v", "vision_v", "bad"),
    [("2.14.1+cu130", "0.29.1+cu130", False), ("2.14.1", "0.28.0", True),
     ("2.9.0", "0.24.0", False), ("2.9.0", "0.29.1", True), ("3.0.0", "0.5.0", False)],
)  # fmt: skip
def test_torch_pair_rule(torch_v, vision_v, bad):
    problem = device.torch_pair_problem(torch_v, vision_v)
    assert (problem is not None) == bad, problem
    if bad:
        assert "\n" not in problem and f"torchvision {vision_v}" in problem


def test_resolve_device_cpu():
    assert device.resolve_device("cpu").type == "cpu"


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    ("text", "n"), [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GB", int(1.5 * 2**30)),
                    ("800000000", 800000000), ("64KiB", 64 * 2**10)],
)  # fmt: skip
def test_parse_size(text, n):
    assert memory.parse_size(text) == n


@pytest.mark.parametrize("text", ["-5", "0", "abc", "nanG", "G"])
def test_parse_size_refuses_non_sizes(text):
    with pytest.raises(ValueError, match="size"):
        memory.parse_size(text)


def test_forward_bytes_pads_to_the_network_grid_and_scales_with_batch_and_channels():
    one = memory.forward_bytes(32, 101, 99, 1, CPU, torch.float32)
    assert one == 104 * 100 * memory.bytes_per_pixel(32, CPU, torch.float32)
    assert memory.forward_bytes(32, 101, 99, 3, CPU, torch.float32) == 3 * one
    assert memory.forward_bytes(16, 101, 99, 1, CPU, torch.float32) * 2 == one


def test_fmt_bytes():
    assert memory.fmt_bytes(512) == "512 B"
    assert memory.fmt_bytes(3 * 2**20) == "3.0 MiB"
    assert memory.fmt_bytes(5 * 2**40) == "5120.0 GiB"


# ----------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    ("n", "tile", "overlap"), [(1000, 256, 32), (257, 256, 32), (4096, 1024, 64)]
)
def test_spans_cover_the_image_on_the_stride_grid(n, tile, overlap):
    spans = tiling.spans(n, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == n
    assert all(s % 4 == 0 for s, _ in spans)
    for (s0, l0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert s1 <= s0 + l0, "a gap between tiles"
    assert tiling.spans(200, 256, 32) == [(0, 200)]


def test_overlapping_windows_add_up_to_one():
    # 832 = 256 + 3 * 192: every neighbour overlaps by exactly 64 px, so the cross-fades add up
    # to 1 (elsewhere the Stylizer divides by the summed weights, which must never vanish).
    n, tile, overlap = 832, 256, 64
    acc = torch.zeros(n)
    for s, length in tiling.spans(n, tile, overlap):
        acc[s : s + length] += tiling.window(length, overlap)
    inner = acc[overlap : n - overlap]  # the image borders see one tile's ramp only
    assert torch.allclose(inner, torch.ones_like(inner), atol=1e-3), (inner.min(), inner.max())
    assert acc.min() > 0


def test_tile_grid_is_the_product_of_row_and_column_spans():
    grid = tiling.tile_grid(600, 900, 256, 32)
    rows, cols = tiling.spans(600, 256, 32), tiling.spans(900, 256, 32)
    assert len(grid) == len(rows) * len(cols)
    assert grid[0] == (0, rows[0][1], 0, cols[0][1])


# ----------------------------------------------------------------------------- signals


def test_first_signal_requests_a_stop_the_second_interrupts_at_once():
    previous = signals.install()
    try:
        signals.check()  # nothing requested yet
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            signals.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signals.restore(previous)
    assert not signals.requested.is_set()
    assert signal.getsignal(signal.SIGTERM) is previous[signal.SIGTERM]


def test_the_package_finds_its_own_files():
    from stylenet.io.paths import PACKAGE_DIR, SAMPLE_CONTENT_DIR, STYLE_DIR, config_dir

    assert (PACKAGE_DIR / "__init__.py").is_file() and PACKAGE_DIR.name == "stylenet"
    assert (STYLE_DIR / "starry_night.jpg").is_file()
    assert any(SAMPLE_CONTENT_DIR.glob("*.jpg"))
    assert (config_dir() / "train.yaml").is_file()


def test_the_shipped_checkpoints_still_load():
    # The file format is data, not a module path: files written by every earlier layout load.
    from stylenet.checkpoints.format import FORMAT, load_network, read_raw

    assert FORMAT == "stylenet.inference"
    root = Path(__file__).resolve().parent.parent / "checkpoints"
    shipped = sorted(root.glob("*.pt"))
    assert shipped, "no shipped checkpoints"
    for path in shipped:
        assert read_raw(path)["format"] == FORMAT
        net, names, _ = load_network(path)
        assert net.num_styles == len(names) >= 1


# ----------------------------------------------------------------------------- mix
def test_style_specs_become_normalised_mixes():
    from stylenet.errors import StyleSpecError
    from stylenet.nn.mix import parse_mix, style_index

    names = ["a", "b", "c"]
    assert parse_mix("b", names).tolist() == [0, 1, 0]
    assert parse_mix(2, names).tolist() == parse_mix("2", names).tolist() == [0, 0, 1]
    assert torch.allclose(parse_mix("a=3,c=1", names), torch.tensor([0.75, 0.0, 0.25]))
    assert torch.allclose(parse_mix("a,b", names), torch.tensor([0.5, 0.5, 0.0]))
    assert torch.allclose(parse_mix({"c": 2, "a": 2}, names), torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(parse_mix([1, 1, 2], names), torch.tensor([0.25, 0.25, 0.5]))
    assert parse_mix("a=1,a=1", names).tolist() == [1, 0, 0]  # repeated names add up
    assert style_index(" c ", names) == 2
    for bad, text in (("d", "unknown style 'd'; available: 0:a, 1:b, 2:c"), ("3", "out of range 0..2"),
                      ("a=x", "bad share"), ("a=-1,b=2", "must not be negative"),
                      ("a=0", "all zero"), ("", "empty style spec"), ([1, 2], "2 shares for 3"),
                      ("a=nan", "finite")):  # fmt: skip
        with pytest.raises(StyleSpecError, match=re.escape(text)):
            parse_mix(bad, names)
    long = "x" * 5000  # an echoed spec is cut, not returned whole
    with pytest.raises(StyleSpecError) as e:
        parse_mix(long, names)
    assert len(str(e.value)) < 200 and "5000 characters" in str(e.value)


# ----------------------------------------------------------------------------- sheets
def test_contact_sheet_lays_out_tiles_with_labels():
    from PIL import Image

    from stylenet.io.sheets import contact_sheet

    red, blue = Image.new("RGB", (200, 100), "red"), Image.new("RGB", (50, 100), "blue")
    sheet = contact_sheet([red, blue, red], ["one", "two", "x" * 80], ncols=2, tile=100, pad=6)
    # tiles fitted into 100x100 (red: 100x50), two columns of the widest tile, two rows
    assert sheet.size == (2 * (100 + 6) + 6, 2 * (100 + 22 + 6) + 6)
    assert sheet.getpixel((6 + 50, 6 + 50)) == (255, 0, 0)  # the first tile, centred
    assert sheet.getpixel((6 + 106 + 50, 6 + 50))[2] > 200  # the second, blue
    label_row = sheet.crop((6, 6 + 100, 106, 6 + 122)).convert("L")
    assert label_row.getextrema()[0] < 128  # a label is drawn under the tile
    titled = contact_sheet([red], ["one"], title="T")
    assert titled.height == contact_sheet([red], ["one"]).height + 28
    with pytest.raises(ValueError, match="one label per image"):
        contact_sheet([red], ["a", "b"])


# ----------------------------------------------------------------------------- vgg
def test_the_vgg16_layout_matches_torchvision():
    from torchvision.models import vgg16

    from stylenet.nn.vgg import LAYERS, VGG16_CONV_INDICES, VGG19_ONLY

    features = vgg16(weights=None).features
    assert len(LAYERS) == 13 and not set(VGG19_ONLY) & set(LAYERS)
    for layer in LAYERS.values():
        conv, relu = features[layer.conv_index], features[layer.index]
        assert isinstance(conv, torch.nn.Conv2d) and isinstance(relu, torch.nn.ReLU), layer
        assert conv.out_channels == layer.channels
        pools = sum(isinstance(m, torch.nn.MaxPool2d) for m in features[: layer.index])
        assert layer.stride == 2**pools, layer
    convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    assert list(VGG16_CONV_INDICES) == convs
