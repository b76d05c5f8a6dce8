"""One command for a GPU machine: every GPU figure in one run, inside about 8 minutes.

``stylenet-bench --suite gpu`` measures, in one process and one session:

- inference at 1024x1024 batch 1 and 8 and at 2048x2048: the naive fp32 eager baseline, our
  eager path (NCHW, the CUDA default, and channels_last), our compiled path (and, at 1024 batch
  1, compiled with CUDA graphs), with the compile time of each shape; the fast network
  (``model=fast``) eager and compiled at 1024 batch 1 and 8;
- the memory estimate of ``stylenet.inference.memory`` against the measured peak;
- a tiled 4096x4096 image;
- training throughput of short real runs (the module and Lightning trainer of ``stylenet-train``)
  with the default recipe and ``experiment=fast_gpu``, measured after compilation;
- ``pytest -m gpu``.

Every row that fails records its error and the run goes on. Results go to
``<results-dir>/<date>_cuda.json``; ``stylenet-bench --report`` renders them into
BENCHMARKS.md. ``--suite quick`` runs the same code at tiny sizes on any device (CI runs it).
"""

from __future__ import annotations

import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stylenet.bench.baseline import NaiveTransformerNet, count_params
from stylenet.bench.inference import fast_layout
from stylenet.bench.timing import time_fn
from stylenet.errors import StylenetError
from stylenet.nn.network import TransformerNet, random_network
from stylenet.runtime.machine import environment

# What makes one row fail on a given machine without the suite being wrong: out of memory and
# CUDA/compiler errors (RuntimeError), a missing toolchain or file (OSError, ImportError), a
# subprocess that fails or hangs, a user-facing error of the package. Anything else (TypeError,
# AttributeError, KeyError, ...) is a bug of the suite and stops it with its traceback.
ROW_ERRORS = (RuntimeError, OSError, ImportError, ValueError, subprocess.SubprocessError,
              StylenetError)  # fmt: skip


def _net(base_channels: int = 32) -> TransformerNet:
    return random_network(4, base_channels, 5, spread=0.2)


class Suite:
    def __init__(self, device: str, quick: bool, log: Callable[[str], None] = print,
                 budget_s: float | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.device = device
        self.quick = quick
        self.log = log
        self.budget_s = budget_s
        self.on_progress = on_progress
        self.results: dict[str, Any] = {
            "env": environment(), "suite": "quick" if quick else "gpu",
            "inference": [], "memory": [], "training": [], "tests": {}, "errors": [],
            "skipped": [], "budget_s": budget_s,
        }  # fmt: skip
        self.t0 = time.time()

    def guarded(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn``'s row; a row that fails records its error, and once the budget is spent the
        rows left are recorded as skipped instead of run (the rows come in order of need)."""
        if self.budget_s is not None and time.time() - self.t0 > self.budget_s:
            self.log(f"  skipped {what}: the suite's budget of {self.budget_s:.0f} s is spent")
            self.results["skipped"].append(what)
            return None
        try:
            return fn()
        except ROW_ERRORS as e:  # a row that cannot run here is recorded; the run goes on
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            self.log(f"  FAILED {what}: {msg}")
            self.results["errors"].append(
                {"row": what, "error": msg, "trace": traceback.format_exc()[-2000:]}
            )
            if self.device == "cuda":
                torch.cuda.empty_cache()
            return None
        finally:
            self.progress()

    def progress(self) -> None:
        """The results so far to ``on_progress`` (after every row), ``wall_s`` brought up to date."""
        self.results["wall_s"] = round(time.time() - self.t0, 1)
        if self.on_progress is not None:
            self.on_progress(self.results)

    # ----------------------------------------------------------------------------- inference
    def inference(self) -> None:
        shapes = [(64, 1), (64, 2)] if self.quick else [(1024, 1), (1024, 8), (2048, 1)]
        repeats = 2 if self.quick else 10
        cuda = self.device == "cuda"
        dev = torch.device(self.device)
        net = _net(8 if self.quick else 32)
        naive = NaiveTransformerNet(net.config.base_channels, 5).eval().to(dev)
        fast = random_network(4, spread=0.2, **fast_layout())
        for side, batch in shapes:
            x = torch.rand(batch, 3, side, side, device=dev)
            base = {"device": self.device, "height": side, "width": side, "batch": batch}

            def naive_row(x=x, base=base) -> None:
                with torch.inference_mode():
                    t = time_fn(lambda: naive(x), repeats, cuda=cuda)
                self._add(base, t, "naive (fp32 eager)", count_params(naive))

            self.guarded(f"naive {side} b{batch}", naive_row)
            variants = [("eager", "off", None, None), ("eager channels_last", "off", True, None),
                        ("compiled", "on", None, None)]  # fmt: skip
            if cuda and (side, batch) == (1024, 1):
                variants.append(("compiled + CUDA graphs", "on", None, "reduce-overhead"))
            for label, comp, cl, mode in variants:

                def row(label=label, comp=comp, cl=cl, mode=mode, x=x, base=base) -> None:
                    st, t = self._timed_row(net, "full", label, x, base, repeats, comp, cl, mode)
                    if label == "eager":
                        self._memory_row(st, base, t)

                self.guarded(f"{label} {side} b{batch}", row)
            if side <= 1024:  # the CPU-class network (model=fast), eager and compiled
                for label, comp in (("eager", "off"), ("compiled", "on")):
                    self.guarded(f"fast {label} {side} b{batch}",
                                 lambda label=label, comp=comp, x=x, base=base:
                                 self._timed_row(fast, "fast", label, x, base, repeats, comp))  # fmt: skip
        self.guarded("tiled", self._tiled)

    def _timed_row(
        self, net: TransformerNet, model: str, label: str, x: torch.Tensor, base: dict,
        repeats: int, comp: str = "off", channels_last: bool | None = None,
        mode: str | None = None,
    ) -> tuple[Any, dict]:  # fmt: skip
        """One Stylizer row of ``net`` (``model``: "full" or "fast"), its first call (the
        compilation, when on) recorded as ``first_call_s``; returns the Stylizer and timing."""
        from stylenet.inference.stylizer import Stylizer

        cuda = self.device == "cuda"
        st = Stylizer(net=net, device=self.device, channels_last=channels_last, compile=comp)
        if mode:
            st._core.compile_mode = mode
        mix = st.mix(0)[None].expand(x.shape[0], -1)
        t_c = time.perf_counter()
        st.forward(x, mix)  # compiles (when on)
        if cuda:
            torch.cuda.synchronize()
        first = time.perf_counter() - t_c
        t = time_fn(lambda: st.forward(x, mix), repeats, cuda=cuda)
        name = "stylenet" if model == "full" else f"stylenet {model}"
        r = self._add(base, t, f"{name} {label} ({st.dtype_name})", count_params(net), model)
        r["first_call_s"] = round(first, 2)
        return st, t

    def _add(self, base: dict, t: dict, impl: str, params: int, model: str = "full") -> dict:
        row = {**base, **t, "impl": impl, "model": model, "params": params}
        mp = row["height"] * row["width"] * row["batch"] / 1e6
        row["megapixels_per_s"] = mp / (row["median_ms"] / 1000.0)
        row["ms_per_image"] = row["median_ms"] / row["batch"]
        self.results["inference"].append(row)
        self.log(f"  {impl:<40} {row['width']}x{row['height']} b{row['batch']}: "
                 f"{row['ms_per_image']:8.2f} ms/img {row['megapixels_per_s']:8.1f} MP/s")  # fmt: skip
        return row

    def _memory_row(self, st, base: dict, t: dict) -> None:  # noqa: ANN001
        from stylenet.inference.memory import forward_bytes

        est = forward_bytes(st.net.config.base_channels, base["height"], base["width"], base["batch"],
                            st.device, st.dtype)  # fmt: skip
        measured = t.get("peak_cuda_mb")
        self.results["memory"].append({**base, "precision": st.dtype_name, "estimate_mb": round(est / 2**20, 1),
                                       "measured_peak_mb": measured})  # fmt: skip

    def _tiled(self) -> None:
        from stylenet.inference.stylizer import StylizeOptions, Stylizer

        side, tile = (160, 64) if self.quick else (4096, 1024)
        st = Stylizer(net=_net(8 if self.quick else 32), device=self.device, compile="on")
        img = torch.rand(1, 3, side, side)
        opts = StylizeOptions(
            style=0, max_size=0, tile=tile, tile_overlap=16 if self.quick else 128
        )
        st.stylize_tensor(img, opts)  # compiles the tile shapes
        t = time_fn(lambda: st.stylize_tensor(img, opts), 1 if self.quick else 3, warmup=0,
                    cuda=self.device == "cuda")  # fmt: skip
        base = {"device": self.device, "height": side, "width": side, "batch": 1}
        self._add(
            base, t, f"stylenet tiled {tile}, compiled ({st.dtype_name})", count_params(st.net)
        )

    # ----------------------------------------------------------------------------- training
    def training(self, vgg_weights_path: str | None, data_root: str | None) -> None:
        recipes = [
            ("default recipe (batch 4)", []),
            ("experiment=fast_gpu (batch 16)", ["experiment=fast_gpu"]),
        ]
        for label, extra in recipes:
            self.guarded(
                f"training {label}",
                lambda label=label, extra=extra: self._train(
                    label, extra, vgg_weights_path, data_root
                ),
            )

    def _train(
        self, label: str, extra: list[str], vgg_path: str | None, data_root: str | None
    ) -> None:
        import tempfile

        from pytorch_lightning.callbacks import Callback

        from stylenet.runtime.hydra import compose_config
        from stylenet.training.run import train

        steps, warm = (6, 2) if self.quick else (260, 60)

        class Throughput(Callback):
            def __init__(self) -> None:
                self.t: dict[int, float] = {}
                self.batch = 0

            def on_train_batch_end(self, trainer, module, outputs, batch, idx) -> None:  # noqa: ANN001
                if trainer.global_step in (warm, steps):
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    self.t[trainer.global_step] = time.perf_counter()
                    self.batch = batch["image"].shape[0]

        with tempfile.TemporaryDirectory() as d:
            overrides = [
                *extra, "style=bank_all", "name=suite", f"+run_dir={d}/run", f"export.dir={d}/exp",
                f"trainer.max_steps={steps}", "samples.every_n_steps=0", "checkpoint_every_n_steps=100000",
                "trainer.enable_progress_bar=false",
            ]  # fmt: skip
            if data_root:
                overrides.append(f"data.root={data_root}")
            if vgg_path:
                overrides.append(f"loss.vgg.weights_path={vgg_path}")
            else:
                overrides.append("loss.vgg.weights=random")
            if self.quick:
                overrides += ["data.image_size=32", "data.batch_size=2", "data.num_workers=0", "style_size=48",
                              "model.base_channels=8", "model.num_res_blocks=1", "samples.size=32",
                              "speed.compile=off", "trainer.precision=32-true"]  # fmt: skip
            cfg = compose_config("train", overrides)
            cb = Throughput()
            t0 = time.perf_counter()
            res = train(cfg, extra_callbacks=[cb])
            wall = time.perf_counter() - t0
        dt = cb.t[steps] - cb.t[warm]
        sps = (steps - warm) * cb.batch / dt
        row = {"impl": f"stylenet-train, {label}", "device": self.device, "size": int(cfg.data.image_size),
               "batch": cb.batch, "steps_timed": steps - warm, "samples_per_s": sps, "wall_s": wall,
               "precision": cfg.trainer.precision, "compile": str(cfg.speed.compile),
               "final_loss": res.metrics.get("train/loss")}  # fmt: skip
        self.results["training"].append(row)
        self.log(f"  {row['impl']:<44} {row['size']}px b{row['batch']}: {sps:8.1f} samples/s")

    # ----------------------------------------------------------------------------- tests
    def gpu_tests(self) -> None:
        root = Path(__file__).resolve().parents[2]
        if not (root / "tests" / "test_gpu.py").is_file():
            self.results["tests"] = {"skipped": "tests/ not found beside the package"}
            return
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"],
                           cwd=root, capture_output=True, text=True, timeout=600)  # fmt: skip
        tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
        self.results["tests"] = {"command": "pytest -m gpu tests/test_gpu.py", "returncode": r.returncode,
                                 "summary": tail[-1] if tail else "", "tail": tail}  # fmt: skip
        self.log(f"  pytest -m gpu: {self.results['tests']['summary']}")


def run_suite(
    device: str = "cuda",
    quick: bool = False,
    vgg_weights_path: str | None = None,
    data_root: str | None = None,
    tests: bool = True,
    log: Callable[[str], None] = print,
    budget_s: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The suite's results. ``on_progress`` gets them after every row (marked ``"partial":
    true`` until the end), so a run stopped from outside keeps what it measured."""
    if device == "cuda" and not torch.cuda.is_available():
        from stylenet.errors import OptionError

        raise OptionError(
            "the GPU suite needs a CUDA device; --suite quick runs anywhere", option="suite"
        )
    s = Suite(device, quick, log, budget_s, on_progress)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    s.results["partial"] = True
    log("== inference")
    s.inference()
    log("== training")
    s.training(vgg_weights_path, data_root)
    if tests:
        log("== pytest -m gpu")
        s.guarded("pytest -m gpu", s.gpu_tests)
    s.results["partial"] = False
    s.progress()
    return s.results
