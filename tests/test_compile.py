"""The shape-compiled inference path: equal to eager, bounded, and never a crash.

torch.compile runs on a CPU too (inductor's C++ backend), so the equality test runs in CI; the
GPU suite repeats it on CUDA in bf16 (tests/test_gpu.py).
"""

from __future__ import annotations

import logging

import pytest
import torch

from stylenet.inference.compile import ShapeCompiled
from stylenet.inference.stylizer import StylizeOptions, Stylizer
from stylenet.nn.network import random_network


@pytest.fixture(scope="module")
def net():
    return random_network(2)


def test_compiled_equals_eager(net):
    eager = Stylizer(net=net, device="cpu", precision="fp32", compile="off")
    compiled = Stylizer(net=net, device="cpu", precision="fp32", compile="on")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 52)
    mix = torch.stack([eager.mix(0), eager.mix("style0=0.3,style1=0.7")])  # one mix per sample
    assert (eager.forward(x, mix) - compiled.forward(x, mix)).abs().max() < 1e-4
    # the whole recipe on an odd size: padded to 40x52, the shape already compiled
    odd = torch.rand(2, 3, 37, 50)
    opts = StylizeOptions(style=1, max_size=0)
    assert (eager.stylize_tensor(odd, opts) - compiled.stylize_tensor(odd, opts)).abs().max() < 1e-4
    assert compiled._core.compiled_shapes == 1


def test_auto_compiles_only_when_it_pays(net):
    calls = []

    def fn(x, mix):
        calls.append(tuple(x.shape))
        return x

    sc = ShapeCompiled(fn, "auto", enabled_here=False)
    x = torch.rand(1, 3, 8, 8)
    for _ in range(5):  # a CPU stream of unknown length: never
        sc(x, torch.ones(1, 1))
    assert sc.compiled_shapes == 0
    sc.expect(3)  # three tiny calls never pay back a compilation
    for _ in range(3):
        sc(x, torch.ones(1, 1))
    assert sc.compiled_shapes == 0


def test_compile_failure_falls_back_to_eager_with_one_notice(net, monkeypatch, caplog):
    def broken(*a, **k):
        def run(*args):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    st = Stylizer(net=net, device="cpu", precision="fp32", compile="on")
    x = torch.rand(1, 3, 32, 32)
    with caplog.at_level(logging.WARNING, logger="stylenet"):
        y = st.forward(x, st.mix(0)[None])
        y2 = st.forward(x, st.mix(0)[None])
    notes = [r for r in caplog.records if "torch.compile is unavailable" in r.getMessage()]
    assert len(notes) == 1 and "no C++ compiler" in notes[0].getMessage()
    ref = Stylizer(net=net, device="cpu", precision="fp32", compile="off").forward(
        x, st.mix(0)[None]
    )
    assert torch.equal(y, ref) and torch.equal(y2, ref)


def test_shape_bound(monkeypatch):
    compiled_for = []

    def fake_compile(fn, **kw):
        def run(x, *a):
            compiled_for.append(tuple(x.shape))
            return fn(x, *a)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    sc = ShapeCompiled(lambda x, m: x, "on", max_shapes=2)
    for side in (8, 12, 16, 20):
        sc(torch.rand(1, 3, side, side), torch.ones(1, 1))
    assert sc.compiled_shapes == 2  # the third and fourth shapes run eager
    sc(torch.rand(1, 3, 8, 8), torch.ones(1, 1))
    assert compiled_for.count((1, 3, 8, 8)) == 2  # a compiled shape stays compiled
