from __future__ import annotations

import pytest
import torch

from stylenet.nn.network import TransformerNet, random_network
from stylenet.nn.norm import ConditionalInstanceNorm2d


def _net(styles=3, c=8, res=1, seed=0):
    return random_network(styles, c, res, seed=seed, spread=0.5)


@pytest.mark.parametrize("hw", [(65, 97), (32, 32), (17, 23), (16, 16), (16, 130)])
def test_shape_kept_on_odd_sizes(hw):
    net = _net()
    x = torch.rand(2, 3, *hw)
    y = net(x, net.one_hot([0, 1]))
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_one_hot_equals_index_selection():
    net = _net()
    x = torch.rand(1, 3, 40, 36)
    for s in range(3):
        y = net(x, net.one_hot(s))
        single = TransformerNet(1, 8, 1).eval()
        sd = net.state_dict()
        for k in list(sd):
            if k.endswith("gamma") or k.endswith("beta"):
                sd[k] = sd[k][s : s + 1]
        single.load_state_dict(sd)
        torch.testing.assert_close(y, single(x, torch.ones(1, 1)), rtol=1e-5, atol=1e-6)
    ys = [net(x, net.one_hot(s)) for s in range(3)]
    assert (ys[0] - ys[1]).abs().max() > 1e-3  # styles differ


def test_blend_is_linear_in_gamma_beta():
    norm = ConditionalInstanceNorm2d(4, 3)
    with torch.no_grad():
        norm.gamma.copy_(torch.randn(3, 4))
        norm.beta.copy_(torch.randn(3, 4))
    w = torch.tensor([[0.2, 0.3, 0.5]])
    g, b = norm.affine(w, (5, 5))
    torch.testing.assert_close(
        g.flatten(), (0.2 * norm.gamma[0] + 0.3 * norm.gamma[1] + 0.5 * norm.gamma[2])
    )
    torch.testing.assert_close(
        b.flatten(), (0.2 * norm.beta[0] + 0.3 * norm.beta[1] + 0.5 * norm.beta[2])
    )
    x = torch.randn(1, 4, 5, 5)
    y, _ = norm(x, w)
    xn = torch.nn.functional.instance_norm(x)
    torch.testing.assert_close(y, xn * g + b, rtol=1e-4, atol=1e-5)


def test_spatial_weights_equal_global_when_constant():
    net = _net()
    x = torch.rand(1, 3, 36, 44)
    w = torch.tensor([[0.25, 0.75, 0.0]])
    wmap = w[:, :, None, None].expand(1, 3, 36, 44)
    torch.testing.assert_close(net(x, w), net(x, wmap), rtol=1e-5, atol=1e-5)


def test_forward_with_given_stats_reproduces_own_stats():
    net = _net()
    x = torch.rand(1, 3, 32, 32)
    w = net.one_hot(1)
    y, stats = net.forward_with_stats(x, w)
    y2, _ = net.forward_with_stats(x, w, stats)
    torch.testing.assert_close(y, y2)


def test_bad_mix_shape():
    net = _net()
    with pytest.raises(ValueError, match="mix must be"):
        net(torch.rand(1, 3, 16, 16), torch.ones(1, 2))
    with pytest.raises(ValueError):
        TransformerNet(0)
    with pytest.raises(ValueError, match="minimum is 16x16"):
        net(torch.rand(1, 3, 15, 40), net.one_hot(0))


def test_gradients_reach_every_style_row_used():
    net = TransformerNet(2, 8, 1).train()
    x = torch.rand(2, 3, 24, 24)
    net(x, net.one_hot([1, 1])).mean().backward()
    g = net.out_norm.gamma.grad
    assert g[1].abs().sum() > 0 and g[0].abs().sum() == 0


# ----------------------------------------------------------------------------- style parameters
def test_a_rows_parameters_give_exactly_that_style():
    from stylenet.nn.params import LayerParams

    net, x = _net(3), torch.rand(2, 3, 36, 44)
    with torch.no_grad():
        by_mix = net(x, net.one_hot([2, 0]))
        by_rows = net(x, net.row_params([2, 0]))
        assert isinstance(net.row_params(1), LayerParams)
        assert torch.equal(by_mix, by_rows)  # one-hot mixes select the row exactly
        assert not torch.equal(by_rows[0], net(x[:1], net.row_params(1))[0])


def test_extra_rows_mix_with_the_banks_rows_as_if_they_were_stored():
    from stylenet.nn.params import RowMix

    bank, wide = _net(2), _net(3)
    with torch.no_grad():  # `bank` is `wide` without its last row
        for nb, nw in zip(bank.norms(), wide.norms(), strict=True):
            for name in nb.ROW_PARAMS:
                getattr(nb, name).copy_(getattr(nw, name)[:2])
        for cb, cw in zip(bank.parameters(), wide.parameters(), strict=True):
            if cb.shape == cw.shape:
                cb.copy_(cw)
        last = wide.row_params(2)
        extra = [(g, b) for g, b in zip(last.gammas, last.betas, strict=True)]
        x = torch.rand(1, 3, 32, 32)
        mix = torch.tensor([[0.2, 0.3, 0.5]])
        assert torch.allclose(bank(x, RowMix(mix, extra)), wide(x, mix), atol=1e-6)
        mask = torch.rand(1, 3, 32, 32).softmax(1)  # share maps work the same way
        assert torch.allclose(bank(x, RowMix(mask, extra)), wide(x, mask), atol=1e-6)
        with pytest.raises(ValueError, match="S=3"):
            bank(x, RowMix(torch.tensor([[0.5, 0.5]]), extra))


def test_per_layer_parameters_are_checked_against_the_network():
    from stylenet.nn.params import LayerParams

    net, x = _net(2), torch.rand(1, 3, 32, 32)
    p = net.row_params(0)
    with pytest.raises(ValueError, match="batch of 1, not 2"):
        net(torch.cat([x, x]), p)
    wrong = LayerParams([g[:, :1] for g in p.gammas], p.betas)
    with pytest.raises(ValueError, match="channels"):
        net(x, wrong)


def test_the_network_owns_its_row_keys():
    net = _net(2)
    rows = {k for k in net.state_dict() if TransformerNet.is_row_key(k)}
    assert rows == {f"{n}.{p}" for n, m in net.named_modules() if hasattr(m, "ROW_PARAMS")
                    for p in m.ROW_PARAMS}  # fmt: skip
    assert all(net.state_dict()[k].shape[0] == 2 for k in rows)
    assert not any(TransformerNet.is_row_key(k) for k in ("out.conv.weight", "down.0.conv.bias"))
