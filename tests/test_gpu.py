"""CUDA paths (``pytest -m gpu``; deselected by default, run by ``stylenet-bench --suite gpu``)."""

from __future__ import annotations

import pytest
import torch

from stylenet.inference.memory import forward_bytes
from stylenet.inference.stylizer import StylizeOptions, Stylizer
from stylenet.nn.network import random_network

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _net(c=32, styles=2):
    return random_network(styles, c, 5)


@needs_cuda
def test_compiled_bf16_equals_eager_fp32_on_cuda():
    net = _net()
    ref = Stylizer(net=net, device="cuda", precision="fp32", compile="off")
    fast = Stylizer(net=net, device="cuda", precision="bf16", compile="on")
    x = torch.rand(2, 3, 256, 320)
    mix = torch.stack([ref.mix(0), ref.mix("style0=0.5,style1=0.5")])
    a, b = ref.forward(x, mix), fast.forward(x, mix)
    assert fast._core.compiled_shapes == 1
    # bf16 keeps 8 bits of mantissa: within a few 1/255 steps on average
    assert (a - b).abs().mean() < 2.0 / 255 and (a - b).abs().max() < 0.1


@needs_cuda
def test_tiles_agree_on_cuda():
    st = Stylizer(net=_net(), device="cuda", precision="fp32", compile="off")
    x = torch.rand(1, 3, 600, 800)
    full = st.stylize_tensor(x, StylizeOptions(style=1, max_size=0))
    tiled = st.stylize_tensor(x, StylizeOptions(style=1, max_size=0, tile=320, tile_overlap=64))
    err = (full - tiled).abs() * 255
    assert err.mean() < 2.0 and torch.quantile(err.flatten()[::97], 0.99) < 12


@needs_cuda
def test_memory_estimate_bounds_the_measured_peak():
    for precision in ("fp32", "bf16"):
        st = Stylizer(net=_net(), device="cuda", precision=precision, compile="off")
        x = torch.rand(1, 3, 1024, 1024)
        st.forward(x, st.mix(0)[None])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        st.forward(x, st.mix(0)[None])
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        est = forward_bytes(32, 1024, 1024, 1, st.device, st.dtype)
        assert peak <= est, (precision, peak / 2**20, est / 2**20)


@needs_cuda
def test_a_few_bf16_mixed_steps_lower_the_loss(compose, tiny_overrides):
    from stylenet.data.styles import specs_from_config
    from stylenet.training.build import build_module

    cfg = compose(tiny_overrides + ["style=[starry_night,the_scream]"])
    torch.manual_seed(0)
    module = build_module(cfg, specs_from_config(cfg.style), vgg_dtype="bf16").cuda()
    x = torch.rand(4, 3, 64, 64, device="cuda")
    idx = torch.tensor([0, 1, 0, 1], device="cuda")
    mix = torch.nn.functional.one_hot(idx, 2).float()
    opt = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = module.loss(module.net(x, mix), x, idx)["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses
