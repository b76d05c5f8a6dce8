from __future__ import annotations

import pytest
import torch

from stylenet.errors import LayerNameError
from stylenet.losses.perceptual import (
    PerceptualLoss,
    VGGFeatures,
    colour_stats,
    content_loss,
    expand_layer_spec,
    gram_matrix,
    total_variation,
    validate_layers,
)


@pytest.fixture(scope="module")
def vgg():
    return VGGFeatures(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights="random")


def test_gram_symmetric_and_matches_hand_computation():
    f = torch.randn(2, 3, 4, 5)
    g = gram_matrix(f)
    assert g.shape == (2, 3, 3)
    torch.testing.assert_close(g, g.transpose(1, 2))
    hand = torch.zeros(3, 3)
    for i in range(3):
        for j in range(3):
            hand[i, j] = (f[0, i] * f[0, j]).sum() / (3 * 4 * 5)
    torch.testing.assert_close(g[0], hand)


def test_content_loss_of_image_with_itself_is_zero(vgg):
    x = torch.rand(1, 3, 40, 40)
    f = vgg(x)
    assert content_loss(f, vgg(x.clone()), ["relu2_2"]).item() == 0.0
    assert content_loss(f, vgg(torch.rand(1, 3, 40, 40)), ["relu2_2"]).item() > 0


def test_imagenet_normalisation_is_inside(vgg):
    # Callers pass [0, 1] images. The ImageNet mean image normalises to exactly zero, so the
    # first conv sees zeros (padding included) and relu1_1 is ReLU(bias) at every pixel; without
    # the normalisation inside forward() it would depend on the pixel values.
    x = vgg.mean.expand(1, 3, 8, 8).clone()
    out = vgg(x)["relu1_2"]
    conv1 = vgg.net[0]
    first = torch.relu(conv1(torch.zeros(1, 3, 8, 8)))
    torch.testing.assert_close(vgg.net[1](conv1((x - vgg.mean) / vgg.std)), first)
    h = vgg.net[3](vgg.net[2](first))  # relu1_2 from relu1_1 of the zero input
    torch.testing.assert_close(out, h)
    bias = torch.relu(conv1.bias)[None, :, None, None].expand_as(first)
    torch.testing.assert_close(first, bias)


def test_tv_zero_for_constant_positive_for_noise():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0
    assert total_variation(torch.rand(1, 3, 8, 8)).item() > 0


def test_layer_names_validated():
    with pytest.raises(LayerNameError, match="valid layers: relu1_1"):
        validate_layers(["relu9_9"])
    with pytest.raises(LayerNameError, match="VGG19"):
        validate_layers(["relu4_4"])
    assert expand_layer_spec("relu1-3") == ["relu1_1", "relu2_1", "relu3_1"]
    assert expand_layer_spec("relu1") == ["relu1_1"]
    assert expand_layer_spec("relu1_2,relu3_3") == ["relu1_2", "relu3_3"]


def test_perceptual_loss_per_sample_targets_and_multipliers(vgg):
    loss = PerceptualLoss(vgg, tv_weight=1.0)
    s0, s1 = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 40, 56)
    loss.set_style_targets([s0, s1], [1.0, 3.0])
    x = torch.rand(2, 3, 32, 32)
    t = loss(x, x, torch.tensor([0, 1]))
    assert t["content_loss"].item() == 0.0
    for k in ("loss", "style_loss", "tv_loss", "style_loss/relu3_3"):
        assert torch.isfinite(t[k]) and t[k] > 0
    # multiplier 3 on style 1: sample 1's style term counts three times
    only0 = loss(x[:1], x[:1], torch.tensor([0]))["style_loss"]
    only1 = loss(x[1:], x[1:], torch.tensor([1]))["style_loss"]
    loss.set_style_targets([s0, s1], [1.0, 1.0])
    only1_unit = loss(x[1:], x[1:], torch.tensor([1]))["style_loss"]
    torch.testing.assert_close(only1, 3 * only1_unit)
    torch.testing.assert_close(t["style_loss"], (only0 + only1) / 2)


def test_style_target_equal_image_gives_zero_style_loss(vgg):
    loss = PerceptualLoss(vgg)
    s = torch.rand(1, 3, 32, 32)
    loss.set_style_targets([s])
    assert loss(s, s, torch.tensor([0]))["style_loss"].item() < 1e-12


def test_colour_stats_match_hand_computation():
    x = torch.rand(2, 3, 5, 7)
    mean, cov = colour_stats(x)
    p = x[1].reshape(3, -1)
    torch.testing.assert_close(mean[1], p.mean(1))
    torch.testing.assert_close(cov[1], torch.cov(p, correction=0))


def test_colour_term_pulls_the_output_to_the_paintings_colours(vgg):
    # A painting of a single dark blue and a grey output: the term is positive with a weight, is
    # zero for the painting's own pixels (shuffled: the Gram terms differ, the colours do not),
    # is absent without a weight, and its gradient moves the output's mean towards the blue.
    blue = torch.tensor([0.1, 0.2, 0.7]).view(1, 3, 1, 1)
    painting = (blue + 0.05 * torch.randn(1, 3, 32, 32)).clamp(0, 1)
    loss = PerceptualLoss(vgg, colour_weight=1e3)
    loss.set_style_targets([painting])
    grey = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    t = loss(grey, grey.detach(), torch.tensor([0]))
    plain = PerceptualLoss(vgg)
    plain.set_style_targets([painting])
    t0 = plain(grey, grey.detach(), torch.tensor([0]))
    assert "colour_loss" not in t0
    assert t["colour_loss"] > 0
    torch.testing.assert_close(t["loss"], t0["loss"] + 1e3 * t["colour_loss"])
    shuffled = painting.flatten(2)[..., torch.randperm(32 * 32)].view_as(painting)
    assert loss(shuffled, shuffled, torch.tensor([0]))["colour_loss"] < 1e-10
    (g,) = torch.autograd.grad(t["colour_loss"], grey)
    step = g.mean((0, 2, 3))
    assert step[2] < 0 < step[0]  # descending raises blue, lowers red
    # Targets are gathered per sample, like the Gram targets.
    assert loss.target_colours(torch.tensor([0, 0]))[1].shape == (2, 3, 3)


def test_random_weights_warn():
    with pytest.warns(UserWarning, match="RANDOM"):
        VGGFeatures(["relu1_2"], weights="random")


def test_features_up_to_some_layers_equal_the_full_pass(vgg):
    x = torch.rand(2, 3, 40, 36)
    full = vgg(x)
    part = vgg(x, ["relu2_2"])
    # Only what lies on the way to relu2_2; those features are the full pass's, bit for bit.
    assert sorted(part) == ["relu1_2", "relu2_2"]
    for n, f in part.items():
        assert torch.equal(f, full[n])


def test_a_bf16_vgg_takes_fp32_images_without_autocast():
    import copy

    v = VGGFeatures(["relu1_2", "relu2_2"], weights="random")
    low = copy.deepcopy(v).to(torch.bfloat16)
    x = torch.rand(1, 3, 32, 32)
    f, g = v(x), low(x)
    assert g["relu2_2"].dtype == torch.bfloat16
    rel = (g["relu2_2"].float() - f["relu2_2"]).norm() / f["relu2_2"].norm()
    assert rel < 0.05


@pytest.mark.parametrize(
    ("choice", "cuda", "precision", "cpu_bf16", "expected"),
    [
        ("auto", True, "bf16-mixed", False, "bf16"),
        ("auto", True, "32-true", True, "fp32"),
        ("auto", False, "32-true", True, "bf16"),
        ("auto", False, "32-true", False, "fp32"),
        ("fp32", False, "32-true", True, "fp32"),
        ("bf16", False, "32-true", False, "bf16"),
    ],
)
def test_vgg_dtype_auto(monkeypatch, choice, cuda, precision, cpu_bf16, expected):
    from stylenet.training import run

    monkeypatch.setattr(run, "cpu_bf16_convs", lambda: cpu_bf16)
    assert run.resolve_vgg_dtype(choice, cuda, precision) == expected
