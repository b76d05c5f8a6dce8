"""Growing a trained bank: new styles as new gamma/beta rows of an exported checkpoint.

Conditional instance norm keeps everything a style needs in one row of gamma/beta per norm layer;
the convolutions are shared. A new painting therefore needs only new rows: trained alone
(``mode="affine"``, every other weight frozen) it converges far faster than a new network
(Dumoulin et al. 2017, Sec. 4, "a new style ... by training only its normalization
parameters"), and the old styles stay bit-identical. ``mode="all"`` also tunes the shared weights
and replays the old styles' Gram targets so they do not degrade.

Everything that can be wrong is checked before training (``plan_finetune``): a missing, foreign
or Lightning base file, a new name already in the bank (unless ``replace``), a model setting that
contradicts the base's architecture, old style images that replay needs but cannot find.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from stylenet.checkpoints.format import (
    PREDICTOR_KEY,
    network_from_checkpoint,
    now_iso,
    predictor_from_checkpoint,
    read_checkpoint,
)
from stylenet.data.styles import StyleSpec, load_style_image, spec_from_entry
from stylenet.errors import BankError, CheckpointError, OptionError, StyleError
from stylenet.io.files import sha256_file
from stylenet.nn.network import TransformerNet, build_model, complete_model_args

log = logging.getLogger(__name__)

MODES = ("affine", "all")
# auto: predict when the base has a style predictor, else mean.
INITS = ("auto", "mean", "closest", "predict")


@dataclass
class FinetunePlan:
    base_path: Path
    base: dict[str, Any]  # the base checkpoint, as read
    base_sha256: str
    mode: str
    init: str
    new_specs: list[StyleSpec]
    names: list[str]  # every row of the grown bank, in order
    new_rows: list[int]  # the row of each new spec
    replaced: list[str] = field(default_factory=list)
    replay_specs: list[StyleSpec] = field(default_factory=list)  # mode=all: the old styles
    replay_rows: list[int] = field(default_factory=list)
    replay: float = 0.5
    # init=predict: where each new row started on the line from the mean row to its prediction
    # (choose_predicted_starts), recorded in the history.
    starts: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def model_args(self) -> dict[str, Any]:
        args = complete_model_args(self.base["model_args"])
        args["num_styles"] = len(self.names)
        return args

    def training_styles(self) -> tuple[list[StyleSpec], list[int], list[float] | None]:
        """(specs, rows, shares) the module trains: the new rows, plus the replayed old rows."""
        if self.mode == "affine" or not self.replay_specs:
            return list(self.new_specs), list(self.new_rows), None
        n_old, n_new = len(self.replay_specs), len(self.new_specs)
        shares = [self.replay / n_old] * n_old + [(1 - self.replay) / n_new] * n_new
        return [*self.replay_specs, *self.new_specs], [*self.replay_rows, *self.new_rows], shares


def plan_finetune(
    base_path: str | Path,
    new_specs: Sequence[StyleSpec],
    *,
    mode: str = "affine",
    init: str = "mean",
    replace_existing: bool = False,
    replay: float = 0.5,
    model_overrides: Mapping[str, Any] | None = None,
    style_size: int | None = None,
) -> FinetunePlan:
    if mode not in MODES:
        raise OptionError(f"must be affine or all, got {mode!r}", option="finetune.mode")
    if init not in INITS:
        raise OptionError(f"must be one of {', '.join(INITS)}; got {init!r}",
                          option="finetune.init")  # fmt: skip
    if not 0.0 <= float(replay) < 1.0:
        raise OptionError(
            f"must be within 0..1 (exclusive of 1), got {replay}", option="finetune.replay"
        )
    p = Path(base_path)
    try:
        base = read_checkpoint(p)
    except CheckpointError as e:
        raise CheckpointError(f"finetune.from: {e}") from e
    has_predictor = bool(base.get(PREDICTOR_KEY))
    if init == "auto":
        init = "predict" if has_predictor else "mean"
    elif init == "predict" and not has_predictor:
        raise OptionError(
            f"{p} has no style predictor, so new rows cannot start from a prediction; use "
            "finetune.init=mean or closest",
            option="finetune.init",
        )
    args = complete_model_args(base["model_args"])
    for key, value in (model_overrides or {}).items():
        if key in args and key != "num_styles" and value != args[key]:
            raise BankError(
                f"finetune.from={p} has {key}={args[key]}, but model.{key}={value} was asked; "
                "a bank grows with its own architecture (drop the model override)"
            )
    names = list(base["style_names"])
    new_specs = list(new_specs)
    seen: set[str] = set()
    for s in new_specs:
        if s.name in seen:
            raise BankError(f"style {s.name!r} is listed twice")
        seen.add(s.name)
    rows: list[int] = []
    replaced: list[str] = []
    for s in new_specs:
        if s.name in names:
            if not replace_existing:
                raise BankError(
                    f"{p} already has a style named {s.name!r}; pick another name or set "
                    "finetune.replace=true to retrain that row"
                )
            rows.append(names.index(s.name))
            replaced.append(s.name)
        else:
            rows.append(len(names))
            names.append(s.name)
    plan = FinetunePlan(
        base_path=p, base=base, base_sha256=sha256_file(p), mode=mode, init=init,
        new_specs=new_specs, names=names, new_rows=rows, replaced=replaced, replay=float(replay),
    )  # fmt: skip
    if mode == "all":
        plan.replay_specs, plan.replay_rows = _replay_specs(base, p, set(replaced), style_size)
    return plan


def _replay_specs(
    base: dict[str, Any], path: Path, skip: set[str], style_size: int | None
) -> tuple[list[StyleSpec], list[int]]:
    """The base's own styles, with the paintings and sizes they were trained with (from its
    training config), so their Gram targets can be replayed."""
    tc = base.get("train_config") or {}
    entries = tc.get("style") or {}
    base_size = tc.get("style_size") or style_size
    specs, rows = [], []
    for i, name in enumerate(base["style_names"]):
        if name in skip:
            continue
        entry = entries.get(name) if isinstance(entries, Mapping) else None
        if not entry:
            entry = {"image": name}  # a shipped painting of that name
        try:
            spec = spec_from_entry(name, entry, warn=False)
            spec.path()
        except StyleError as e:
            raise StyleError(
                f"finetune.mode=all replays the base's styles, but style {name!r} of {path}: {e}"
            ) from e
        if spec.size is None and base_size:
            spec = replace(spec, size=int(base_size))
        specs.append(spec)
        rows.append(i)
    return specs, rows


@torch.no_grad()
def grow_network(plan: FinetunePlan, vgg_loss=None, style_size: int = 256) -> TransformerNet:  # noqa: ANN001
    """The base network with rows for the new styles (base weights copied exactly)."""
    base_net = network_from_checkpoint(plan.base, plan.base_path)
    n_base = base_net.num_styles
    net = build_model(plan.model_args)
    src = base_net.state_dict()
    dst = net.state_dict()
    for k, v in src.items():
        if TransformerNet.is_row_key(k):
            dst[k][:n_base] = v
        else:
            dst[k].copy_(v)
    init_rows = _init_sources(plan, base_net, vgg_loss, style_size)
    for spec, row in zip(plan.new_specs, plan.new_rows, strict=True):
        src_row = init_rows.get(spec.name)
        for k, v in src.items():
            if TransformerNet.is_row_key(k):
                dst[k][row] = v.mean(0) if src_row is None else v[src_row]
    net.load_state_dict(dst)
    if plan.init == "predict":
        _predict_rows(plan, net, vgg_loss)
    return net


def _predict_rows(plan: FinetunePlan, net: TransformerNet, vgg_loss) -> None:  # noqa: ANN001
    """New rows set to what the base's style predictor gives for each new painting (seen as
    the predictor sees a style image when stylizing)."""
    from stylenet.nn.predictor import style_statistics

    if vgg_loss is None:
        raise ValueError("init=predict needs the loss's VGG")
    predictor = predictor_from_checkpoint(plan.base, net, plan.base_path)
    assert predictor is not None  # plan_finetune checked
    missing = set(predictor.config.layers) - set(vgg_loss.vgg.layers)
    if missing:
        raise OptionError(
            f"the predictor reads VGG layers {sorted(missing)} that loss.style_layers lacks",
            option="finetune.init",
        )
    predictor.to(_dev(vgg_loss))
    size = int(predictor.config.style_size)
    for spec, row in zip(plan.new_specs, plan.new_rows, strict=True):
        img = load_style_image(replace(spec, size=size), size).to(_dev(vgg_loss))
        feats = vgg_loss.vgg(img.to(next(vgg_loss.vgg.parameters()).dtype))
        params = predictor(style_statistics(feats, predictor.config.layers))
        for i, n in enumerate(net.norms()):
            n.gamma[row] = params.gammas[i][0].to(n.gamma)
            n.beta[row] = params.betas[i][0].to(n.beta)
        log.info("new style %s starts from its predicted row", spec.name)


@torch.no_grad()
def choose_predicted_starts(
    plan: FinetunePlan,
    module: Any,  # noqa: ANN401
    photos: torch.Tensor,
    blends: Sequence[float],
) -> dict[str, dict[str, float]]:
    """init=predict: move each new row to the point, among ``blends``, of the straight line from
    the bank's mean row (0) to its predicted row (1) with the lowest training loss on ``photos``
    (training photos at the crop size); ``module`` is the run's StyleTransferModule with the
    predicted rows in place. Returns ``{style: {"blend": chosen, "loss": its loss, "mean": ...,
    "predicted": ...}}`` (the last two when the line holds those ends).

    A prediction can overshoot: for a painting unlike its training images the predictor's row
    lies further from the mean row than the row that fits best, and the loss along the line is
    lowest in between (README, "Any painting as a style"). Picking on a handful of photos costs
    a few forward passes and never starts worse, on them, than the prediction or the mean."""
    if plan.init != "predict" or not blends or photos.numel() == 0:
        return {}
    net = module.net
    norms = net.norms()
    # The mean row as init=mean takes it: over the base's rows as they are in its file.
    names = {id(m): name for name, m in net.named_modules()}
    base_sd = plan.base["state_dict"]
    _, t_rows, _ = plan.training_styles()
    device = next(net.parameters()).device
    x = photos.to(device)
    means = [
        tuple(base_sd[f"{names[id(n)]}.{p}"].float().mean(0).to(n.gamma) for p in ("gamma", "beta"))
        for n in norms
    ]
    out: dict[str, dict[str, float]] = {}
    for spec, row in zip(plan.new_specs, plan.new_rows, strict=True):
        preds = [(n.gamma[row].clone(), n.beta[row].clone()) for n in norms]
        k = torch.full((x.shape[0],), t_rows.index(row), dtype=torch.long, device=device)
        mix = net.one_hot(row, x.shape[0]).to(device, x.dtype)

        def place(t: float, row: int = row, preds: list = preds) -> None:
            for n, (gm, bm), (gp, bp) in zip(norms, means, preds, strict=True):
                n.gamma[row] = gm + t * (gp - gm)
                n.beta[row] = bm + t * (bp - bm)

        losses: dict[float, float] = {}
        for t in map(float, blends):
            place(t)
            losses[t] = float(module.loss(net(x, mix), x, k)["loss"])
        best = min(losses, key=losses.__getitem__)
        place(best)
        info = {"blend": best, "loss": losses[best]}
        if 0.0 in losses:
            info["mean"] = losses[0.0]
        if 1.0 in losses:
            info["predicted"] = losses[1.0]
        out[spec.name] = info
        log.info(
            "new style %s starts %s of the way from the bank's mean row to its predicted row "
            "(loss on %d training photos: %s)", spec.name, f"{best:g}", x.shape[0],
            ", ".join(f"{t:g}: {v:.4g}" for t, v in losses.items()),
        )  # fmt: skip
    plan.starts = out
    return out


def _init_sources(
    plan: FinetunePlan, base_net: TransformerNet, vgg_loss, style_size: int
) -> dict[str, int]:  # noqa: ANN001
    """``{new style: base row to copy}`` for init=closest (by Gram distance at every style
    layer); empty for init=mean."""
    if plan.init != "closest":
        return {}
    if vgg_loss is None:
        raise ValueError("init=closest needs the loss's VGG")
    base_specs, base_rows = _replay_specs(plan.base, plan.base_path, set(), style_size)
    grams = [
        vgg_loss.style_grams(load_style_image(s, style_size).to(_dev(vgg_loss))) for s in base_specs
    ]
    out = {}
    for spec in plan.new_specs:
        g = vgg_loss.style_grams(load_style_image(spec, style_size).to(_dev(vgg_loss)))
        dist = [
            sum(float((g[n] - gb[n]).pow(2).mean() / gb[n].pow(2).mean()) for n in g)
            for gb in grams
        ]
        best = min(range(len(dist)), key=dist.__getitem__)
        out[spec.name] = base_rows[best]
        log.info(
            "new style %s starts from the row of %s (closest Gram matrices)",
            spec.name,
            base_specs[best].name,
        )
    return out


def _dev(loss) -> torch.device:  # noqa: ANN001
    return next(loss.vgg.parameters()).device


def check_untouched(plan: FinetunePlan, net: TransformerNet) -> None:
    """After an affine-only run: the shared weights and every row not being trained must equal
    the base's bit for bit. A difference is a bug, never a user error."""
    if plan.mode != "affine":
        return
    base_sd = plan.base["state_dict"]
    new_rows = set(plan.new_rows)
    for k, v in net.state_dict().items():
        ref = base_sd[k]
        cur = v.detach().float().cpu()
        if TransformerNet.is_row_key(k):
            old = [i for i in range(ref.shape[0]) if i not in new_rows]
            same = torch.equal(cur[old], ref[old])
        else:
            same = torch.equal(cur, ref)
        if not same:
            raise AssertionError(f"affine-only fine-tune changed {k} of the base network")


def history_entry(plan: FinetunePlan, steps: int) -> dict[str, Any]:
    return {
        "event": "finetuned",
        "date": now_iso(),
        "mode": plan.mode,
        "init": plan.init,
        "base": plan.base_path.name,
        "base_sha256": plan.base_sha256,
        "added": [s.name for s in plan.new_specs if s.name not in plan.replaced],
        "replaced": list(plan.replaced),
        "rows": list(plan.new_rows),
        "steps": int(steps),
        **({"starts": plan.starts} if plan.starts else {}),
    }
