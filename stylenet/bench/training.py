"""Training throughput: the naive loop against the Lightning module's step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from stylenet.bench.baseline import NaiveTransformerNet
from stylenet.bench.timing import time_fn
from stylenet.runtime.device import cpu_bf16_fast


def bench_training(
    size: int, batch: int = 4, steps: int = 5, device: str = "cpu", vgg_weights: str = "imagenet",
    num_styles: int = 2, log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:  # fmt: skip
    """Samples/s of one training step: a naive loop (fp32 eager, pytorch/examples-style: VGG run
    separately on output and content, single-process loading) vs the Lightning module's step."""
    from stylenet.data.photos import ContentDataset, collate
    from stylenet.io.images import list_images
    from stylenet.io.paths import SAMPLE_CONTENT_DIR
    from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures
    from stylenet.training.module import StyleTransferModule

    dev = torch.device(device)
    cuda = device == "cuda"
    rows = []
    files = list_images(SAMPLE_CONTENT_DIR)
    ds = ContentDataset(files, size)

    # data loading alone, single process
    def load_batch() -> None:
        collate([ds[i % len(ds)] for i in range(batch)])

    t = time_fn(load_batch, steps, warmup=1)
    rows.append({"impl": "data loading (1 process)", "device": "cpu", "size": size, "batch": batch,
                 **t, "samples_per_s": batch / (t["median_ms"] / 1000)})  # fmt: skip

    # naive: plain modules, fp32, VGG features recomputed for the content each step
    naive = NaiveTransformerNet().to(dev).train()
    vgg = VGGFeatures(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights=vgg_weights).to(dev)
    loss = PerceptualLoss(vgg).to(dev)
    loss.set_style_targets([torch.rand(1, 3, 2 * size, 2 * size, device=dev)])
    opt = torch.optim.Adam(naive.parameters(), 1e-3)

    def naive_step() -> None:
        x = collate([ds[i] for i in range(batch)])["image"].to(dev)
        opt.zero_grad()
        y = naive(x)
        loss(y, x, torch.zeros(batch, dtype=torch.long, device=dev))["loss"].backward()
        opt.step()

    t = time_fn(naive_step, steps, warmup=1, cuda=cuda)
    rows.append({"impl": "naive loop (fp32 eager)", "device": device, "size": size, "batch": batch,
                 **t, "samples_per_s": batch / (t["median_ms"] / 1000)})  # fmt: skip

    styles = [{"name": f"s{i}", "image": "starry_night"} for i in range(num_styles)]
    module = StyleTransferModule(
        styles, vgg_weights=vgg_weights, style_size=2 * size, channels_last=True
    ).to(dev)
    opt2 = torch.optim.Adam(module.net.parameters(), 1e-3)
    module.log = lambda *a, **k: None  # the step outside a Trainer: logging is a no-op
    batch_data = collate([ds[i] for i in range(batch)])
    # Mixed precision where it pays: CUDA, and CPUs with AMX (trainer.precision=bf16-mixed).
    settings = [True] if cuda else ([False, True] if cpu_bf16_fast() else [False])
    for bf16 in settings:

        def our_step(bf16: bool = bf16) -> None:
            b = {
                "image": batch_data["image"].to(dev, non_blocking=True),
                "failures": batch_data["failures"],
            }
            opt2.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = module.training_step(b, 0)
            out.backward()
            opt2.step()

        t = time_fn(our_step, steps, warmup=1, cuda=cuda)
        label = (
            "stylenet step (bf16 autocast, channels_last)"
            if bf16
            else "stylenet step (fp32, channels_last)"
        )
        rows.append({"impl": label, "device": device, "size": size, "batch": batch, **t,
                     "samples_per_s": batch / (t["median_ms"] / 1000)})  # fmt: skip
    for r in rows:
        log(f"  {r['impl']:<44} {r['size']}px b{r['batch']}: {r['samples_per_s']:8.2f} samples/s")
    return rows
