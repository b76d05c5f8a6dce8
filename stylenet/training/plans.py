"""Training plans: what a run trains and what its export records, as variations of one run.

A run (``stylenet.training.run``) does the same steps whatever it trains: check the inputs, build
the LightningModule, fit, export. What varies is the plan, chosen by the ``plan`` config group
(``configs/plan/``), never by a branch inside the run:

- ``fresh``: a new network with one gamma/beta row per selected style;
- ``grow``: an exported bank with rows added for the selected styles (``finetune.*``;
  ``stylenet.training.grow``). The commands pick it when ``finetune.from`` is on their command
  line, so ``stylenet-train style=x finetune.from=bank.pt`` needs no ``plan=grow``.

- ``arbitrary``: a style predictor for an exported bank (``arbitrary.*``;
  ``stylenet.training.predictor``), exported as that bank with the predictor inside.

- ``distill``: a new network (``model=fast``) trained on the outputs of every style of an exported
  bank (``distill.*``; ``stylenet.training.distill``), exported with the bank's names and
  thumbnails.

A new kind of training is one more class here with the same members and one more YAML in
``configs/plan/``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from stylenet.checkpoints.format import PREDICTOR_KEY, make_thumbnail, now_iso, read_checkpoint
from stylenet.data.styles import StyleSpec
from stylenet.errors import OptionError, TrainingError
from stylenet.io.files import sha256_file
from stylenet.training.build import _config_error, _model_overrides, build_module
from stylenet.training.module import StyleTransferModule

log = logging.getLogger(__name__)


class BasePlan:
    """What every plan does unless it says otherwise."""

    def before_fit(self, cfg: DictConfig, module: Any, dm: Any, resuming: bool) -> None:  # noqa: ANN401
        """Work on the built module with the photos at hand, before the first step (a resumed
        run restores its state from its checkpoint instead)."""
        del cfg, module, dm, resuming

    def export_extra(self, module: Any, steps: int, train_config: dict[str, Any]) -> dict:  # noqa: ANN401
        """Entries the exported file has beside the network (a predictor)."""
        del module, steps, train_config
        return {}


class FreshPlan(BasePlan):
    """A new network for ``specs``, one row each, in their order."""

    def __init__(self, cfg: DictConfig, specs: list[StyleSpec]) -> None:
        self.specs = specs
        self.model_args: dict[str, Any] = {
            **OmegaConf.to_container(cfg.model, resolve=True),
            "num_styles": len(specs),
        }
        self.names = [s.name for s in specs]

    def build_module(self, cfg: DictConfig, **kw: Any) -> StyleTransferModule:
        return build_module(cfg, self.specs, **kw)

    def export_parts(
        self, module: StyleTransferModule, steps: int, train_config: dict[str, Any]
    ) -> tuple[list, list]:
        """The exported file's thumbnails and history (``train_config`` may be amended)."""
        del train_config
        thumbs = [make_thumbnail(s.path()) for s in module.style_specs]
        history = [{"event": "trained", "date": now_iso(), "styles": list(module.style_names),
                    "steps": steps}]  # fmt: skip
        return thumbs, history


class GrowPlan(BasePlan):
    """New rows for ``specs`` in the exported bank ``finetune.from`` (everything checked first)."""

    def __init__(self, cfg: DictConfig, specs: list[StyleSpec]) -> None:
        from stylenet.training.grow import plan_finetune

        ft = cfg.finetune
        if not ft.get("from"):
            raise OptionError(
                "plan=grow adds styles to an exported bank: set finetune.from", option="plan"
            )
        self.ft = ft
        self.growth = plan_finetune(
            ft["from"], specs, mode=str(ft.get("mode", "affine")), init=str(ft.get("init", "mean")),
            replace_existing=bool(ft.get("replace", False)), replay=float(ft.get("replay", 0.5)),
            model_overrides=_model_overrides(cfg), style_size=int(cfg.style_size),
        )  # fmt: skip
        self.model_args = self.growth.model_args
        self.names = self.growth.names
        if bool(ft.get("match_base", False)):
            changed = adopt_bank_recipe(cfg, self.growth.base, crop_size=True)
            if changed:
                log.info(
                    "new rows train as %s's own rows did (finetune.match_base): %s",
                    ft["from"], _changes(changed),
                )  # fmt: skip
        self.start_blends = _start_blends(ft.get("start_blends"))
        self.start_photos = int(ft.get("start_photos", 0) or 0)

    def build_module(self, cfg: DictConfig, **kw: Any) -> StyleTransferModule:
        from stylenet.training.grow import grow_network

        g = self.growth
        t_specs, t_rows, t_shares = g.training_styles()
        affine = g.mode == "affine"
        module = build_module(
            cfg, t_specs, model_args=self.model_args, row_names=self.names, rows=t_rows,
            row_shares=t_shares, train_scope="new_rows" if affine else "all",
            lr=float(self.ft.get("affine_lr", cfg.optim.lr)) if affine else None, **kw,
        )  # fmt: skip
        grown = grow_network(g, module.loss, int(cfg.style_size))
        module.net.load_state_dict(grown.state_dict())
        return module

    def before_fit(
        self,
        cfg: DictConfig,
        module: StyleTransferModule,
        dm: Any,  # noqa: ANN401
        resuming: bool,
    ) -> None:
        """init=predict: each new row starts at the best point between the mean row and its
        prediction on a few training photos (``finetune.start_blends``)."""
        from stylenet.training.grow import choose_predicted_starts

        del cfg
        if resuming or self.growth.init != "predict" or self.start_photos <= 0:
            return
        photos = dm.training_images(self.start_photos)
        choose_predicted_starts(self.growth, module, photos, self.start_blends)

    def export_parts(
        self, module: StyleTransferModule, steps: int, train_config: dict[str, Any]
    ) -> tuple[list, list]:
        from stylenet.training.grow import check_untouched, history_entry

        g = self.growth
        check_untouched(g, getattr(module.net, "_orig_mod", module.net))
        base_thumbs = list(g.base.get("style_thumbnails") or [])
        thumbs = [base_thumbs[i] if i < len(base_thumbs) else None for i in range(len(g.names))]
        for spec, row in zip(g.new_specs, g.new_rows, strict=True):
            thumbs[row] = make_thumbnail(spec.path())
        history = [*g.base.get("history", []), history_entry(g, steps)]
        # The grown bank's style entries: the base's, then the new ones, each with the painting
        # size its row was trained at (the base's may differ from this run's: match_base=false).
        base_tc = g.base.get("train_config") or {}
        train_config["style"] = {
            **_sized(base_tc.get("style"), base_tc.get("style_size")),
            **_sized(train_config.get("style"), train_config.get("style_size")),
        }
        return thumbs, history

    def export_extra(self, module: Any, steps: int, train_config: dict[str, Any]) -> dict:
        """A base with a style predictor keeps it (it reads the same norms; the grown rows
        are its own)."""
        del module, steps, train_config
        entry = self.growth.base.get(PREDICTOR_KEY)
        return {PREDICTOR_KEY: entry} if entry else {}


def _start_blends(value: Any) -> list[float]:  # noqa: ANN401
    """``finetune.start_blends`` as floats within 0..1 (0: the mean row, 1: the prediction)."""
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [value]
    try:
        out = [float(v) for v in items]
        ok = all(0.0 <= v <= 1.0 for v in out)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionError(
            f"must be a list of numbers within 0..1 (0: the mean row, 1: the predicted row), "
            f"got {items}", option="finetune.start_blends",
        )  # fmt: skip
    return out


def _exported_bank(cfg: DictConfig, key: str, why: str) -> tuple[str, dict[str, Any]]:
    """The path and contents of the exported bank that option ``key`` names (one line if unset)."""
    from stylenet.checkpoints.format import read_checkpoint

    path = OmegaConf.select(cfg, key)
    if not path:
        raise OptionError(f"{why}: set {key}", option=key)
    return str(path), read_checkpoint(str(path))


class ArbitraryPlan(BasePlan):
    """A style predictor for the exported bank ``arbitrary.from`` (the bank's names, rows and
    model arguments unchanged; its convolutions too unless ``arbitrary.train_network``)."""

    def __init__(self, cfg: DictConfig, specs: list[StyleSpec]) -> None:
        del specs  # the styles are the data set's style images
        self.base_path, self.base = _exported_bank(
            cfg, "arbitrary.from", "a style predictor is trained for an exported bank"
        )
        self.model_args = dict(self.base["model_args"])
        self.names = list(self.base["style_names"])

    def build_module(self, cfg: DictConfig, **kw: Any) -> Any:  # noqa: ANN401
        from stylenet.training.predictor import PredictorModule

        a = cfg.arbitrary
        try:
            return PredictorModule(
                base=self.base_path, train_network=bool(a.train_network), hidden=int(a.hidden),
                embedding=int(a.embedding), style_size=int(cfg.data.style_size),
                lr=float(a.lr), network_lr=float(a.network_lr),
                encoder_from=a.get("encoder_from") or None, init=a.get("init") or None,
                anchor_weight=float(a.get("anchor_weight") or 0.0),
                **loss_optim_kwargs(cfg), **kw,
            )  # fmt: skip
        except OptionError as e:
            raise _config_error(e) from e

    def export_parts(
        self, module: Any, steps: int, train_config: dict[str, Any]
    ) -> tuple[list, list]:
        """The bank's own thumbnails, history and training config; this run's config is
        recorded with the predictor (``export_extra``)."""
        if not module.hparams.train_network:
            _check_same_network(self.base, getattr(module.net, "_orig_mod", module.net))
        own = dict(train_config)
        train_config.clear()
        train_config.update(self.base.get("train_config") or {})
        self._own_config = own
        thumbs = list(self.base.get("style_thumbnails") or [None] * len(self.names))
        history = [*self.base.get("history", []), {
            "event": "predictor trained", "date": now_iso(), "steps": steps,
            "network": "trained too" if module.hparams.train_network else "unchanged",
            **({"init": str(module.hparams.init)} if module.hparams.init else {}),
            **({"anchor_weight": float(module.hparams.anchor_weight)}
               if module.hparams.anchor_weight else {}),
        }]  # fmt: skip
        return thumbs, history

    def export_extra(self, module: Any, steps: int, train_config: dict[str, Any]) -> dict:
        from stylenet.checkpoints.format import predictor_payload

        del train_config
        own = getattr(self, "_own_config", {})
        data = own.get("data") or {}
        dm = getattr(module.trainer, "datamodule", None) if module._trainer else None
        trained_on = {
            "styles": data.get("styles"), "style_extra": list(data.get("style_extra") or []),
            "style_exclude": data.get("style_exclude"), "photos": data.get("root"),
            "photo_exclude": data.get("exclude"),
            "style_images": len(getattr(dm, "style_files", []) or []) if dm else None,
            "train_config": own,
        }  # fmt: skip
        out: dict[str, Any] = {
            PREDICTOR_KEY: predictor_payload(module.predictor, steps, trained_on)
        }
        if "trained_steps" in self.base:  # the bank's own training, not the predictor's
            out["trained_steps"] = self.base["trained_steps"]
        return out


def _style_shares(value: Any) -> dict[str, float] | None:  # noqa: ANN401
    """``distill.style_shares`` as a plain mapping (None: every style alike); a value that is
    not a mapping of style names to numbers is one line."""
    if value is None:
        return None
    if not isinstance(value, DictConfig | dict):
        raise TrainingError(
            f"distill.style_shares={value}: give shares by style name, e.g. "
            "'distill.style_shares={the_harvest:2,the_scream:0.5}'"
        )
    out = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
    try:
        return {str(k): float(v) for k, v in out.items()}
    except (TypeError, ValueError) as e:
        raise TrainingError(f"distill.style_shares={out}: a share is a number ({e})") from e


class DistillPlan(BasePlan):
    """A new network (the ``model`` group) for every style of the exported bank
    ``distill.teacher``, in the teacher's order and under its names."""

    def __init__(self, cfg: DictConfig, specs: list[StyleSpec]) -> None:
        del specs  # the styles are the teacher's
        self.teacher_path, self.teacher = _exported_bank(
            cfg, "distill.teacher", "a network is distilled from an exported bank"
        )
        self.names = list(self.teacher["style_names"])
        self.model_args: dict[str, Any] = {
            **OmegaConf.to_container(cfg.model, resolve=True),
            "num_styles": len(self.names),
        }
        # The usual loss is the teacher's own (its layers, weights and painting size), and the
        # run records it as its own: a student grown later trains its new rows the same way.
        changed = adopt_bank_recipe(cfg, self.teacher)
        if changed:
            log.info("the loss is the teacher's own: %s", _changes(changed))

    def build_module(self, cfg: DictConfig, **kw: Any) -> Any:  # noqa: ANN401
        from stylenet.training.distill import DistillModule

        d = cfg.distill
        usual = d.get("usual_weight")
        try:
            return DistillModule(
                teacher=self.teacher_path,
                model=OmegaConf.to_container(cfg.model, resolve=True),
                init=d.get("init") or None, pixel_weight=float(d.pixel_weight), teacher_weight=float(d.teacher_weight),
                usual_weight=None if usual is None else float(usual),
                style_shares=_style_shares(d.get("style_shares")),
                style_size=int(cfg.style_size), lr=float(cfg.optim.lr),
                **loss_optim_kwargs(cfg), **kw,
            )  # fmt: skip
        except OptionError as e:
            raise _config_error(e) from e

    def export_parts(
        self, module: Any, steps: int, train_config: dict[str, Any]
    ) -> tuple[list, list]:
        """The teacher's thumbnails and history, then this run; the exported config records the
        teacher's styles (what the student renders) beside this run's own settings."""
        t = self.teacher
        train_config["style"] = dict((t.get("train_config") or {}).get("style") or {})
        thumbs = list(t.get("style_thumbnails") or [None] * len(self.names))
        entry = {
            "event": "distilled", "date": now_iso(), "steps": steps,
            "teacher": self.teacher_path, "teacher_run_id": t.get("run_id"),
            "model_args": dict(module.net.config.to_dict()),
            "init": module.hparams.get("init"),
            # What the student learned from: with the teacher's term at 0 the run trained on the
            # teacher's own loss alone (the teacher was not run), which the event must say.
            "loss_weights": {"teacher": float(module.hparams.teacher_weight),
                             "usual": float(module.usual_weight),
                             "pixel": float(module.hparams.pixel_weight)},
        }  # fmt: skip
        if module.style_probs is not None:
            # Styles drawn unevenly: how often each was, so the record explains uneven gains.
            entry["style_shares"] = dict(
                zip(self.names, (round(float(p), 6) for p in module.style_probs), strict=True)
            )
        earlier: list[dict[str, Any]] = []
        theirs = list(t.get("history", []))
        if entry["init"]:
            # A continued distillation: what the starting student's own file records beyond the
            # teacher's history comes first (its distillations, rows fine-tuned, a predictor
            # kept), so the history adds up to every step the weights saw, and its file is
            # identified.
            entry["init_sha256"] = sha256_file(entry["init"])
            earlier = [
                h for h in read_checkpoint(entry["init"]).get("history", []) if h not in theirs
            ]  # fmt: skip
        return thumbs, [*theirs, *earlier, entry]

    def export_extra(self, module: Any, steps: int, train_config: dict[str, Any]) -> dict:
        """No predictor: the teacher's reads the teacher's norms, not the student's."""
        del module, steps, train_config
        return {}


# What a bank records of the loss its rows were trained with (``adopt_bank_recipe``).
RECORDED_LOSS_KEYS = ("content_layers", "style_layers", "content_weight", "style_weight",
                      "tv_weight", "colour_weight")  # fmt: skip
# What a recorded loss without the key means: the term did not exist yet (its weight was 0).
RECORDED_LOSS_BEFORE = {"colour_weight": 0.0}


def adopt_bank_recipe(
    cfg: DictConfig, bank: Mapping[str, Any], crop_size: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Set ``cfg``'s painting size (``style_size``), loss layers and weights and, with
    ``crop_size``, its crop size (``data.image_size``) to those the exported ``bank`` records of
    its own training, where it records them; returns each key changed as (this run's value, the
    bank's). Called by a plan before the run records its config, so the record says what the run
    trained with.

    The painting size sets the scale of the strokes a row learns, its ratio to the crop the share
    of the painting a crop is matched against, and the style weight the strength: a row trained
    at another scale than its bank's is scored against the painting at that other scale. The
    measurements are in BENCHMARKS.md ("Growing a bank at its own scale"); why growing does not
    do this by default, in configs/train.yaml (``finetune.match_base``)."""
    tc = bank.get("train_config") or {}
    loss = tc.get("loss") or {}
    before = RECORDED_LOSS_BEFORE if loss else {}
    recorded = {"style_size": tc.get("style_size"),
                **{f"loss.{k}": loss.get(k, before.get(k)) for k in RECORDED_LOSS_KEYS}}  # fmt: skip
    if crop_size:
        recorded["data.image_size"] = (tc.get("data") or {}).get("image_size")
    changed: dict[str, tuple[Any, Any]] = {}
    for key, value in recorded.items():
        if value is None:
            continue
        old = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(old):
            old = OmegaConf.to_container(old, resolve=True)
        if old != value:
            OmegaConf.update(cfg, key, value, merge=False)
            changed[key] = (old, value)
    return changed


def _changes(changed: Mapping[str, tuple[Any, Any]]) -> str:
    def show(v: Any) -> str:  # noqa: ANN401
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k} {show(a)} -> {show(b)}" for k, (a, b) in changed.items())


def _sized(styles: Any, size: Any) -> dict[str, Any]:  # noqa: ANN401
    """Recorded style entries, each with ``size`` filled in (``size``: the run's painting size)
    where it was left to the run's default."""
    out: dict[str, Any] = {}
    for name, entry in dict(styles or {}).items():
        if size and isinstance(entry, Mapping) and entry.get("size") is None:
            entry = {**entry, "size": int(size)}
        out[name] = entry
    return out


def loss_optim_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The loss and optimiser settings of ``cfg`` as module keyword arguments (the modules of
    the plans that do not go through ``build_module``)."""
    lc, oc = cfg.loss, cfg.optim
    return {
        "content_layers": list(lc.content_layers),
        "style_layers": dict(OmegaConf.to_container(lc.style_layers, resolve=True)),
        "content_weight": float(lc.content_weight),
        "style_weight": float(lc.style_weight),
        "tv_weight": float(lc.tv_weight),
        "colour_weight": float(lc.colour_weight),
        "vgg_weights": lc.vgg.weights,
        "vgg_weights_path": lc.vgg.get("weights_path"),
        "vgg_pooling": str(lc.vgg.get("pooling", "max")),
        "betas": tuple(oc.betas),
        "scheduler": oc.scheduler,
        "warmup_steps": oc.warmup_steps,
        "min_lr_ratio": oc.min_lr_ratio,
        "channels_last": bool(cfg.speed.channels_last),
        "seed": int(cfg.seed),
    }


def _check_same_network(base: dict[str, Any], net: Any) -> None:  # noqa: ANN401
    """The frozen network must come out exactly as it went in (its bank is shipped as is)."""
    import torch

    now = net.state_dict()
    for k, v in base["state_dict"].items():
        if not torch.equal(now[k].detach().float().cpu(), v.float()):
            raise TrainingError(f"the frozen network changed while training its predictor ({k})")


PLANS = {
    "fresh": FreshPlan, "grow": GrowPlan, "arbitrary": ArbitraryPlan, "distill": DistillPlan,
}  # fmt: skip
Plan = FreshPlan | GrowPlan | ArbitraryPlan | DistillPlan


def make_plan(cfg: DictConfig, specs: list[StyleSpec]) -> Plan:
    """The plan the config names (``plan.name``), checked against ``finetune.from``."""
    name = str(OmegaConf.select(cfg, "plan.name", default="fresh"))
    if name not in PLANS:
        raise OptionError(f"must be one of {', '.join(PLANS)}; got {name!r}", option="plan")
    if name == "fresh" and (cfg.get("finetune") or {}).get("from"):
        raise OptionError(
            "finetune.from is set but the plan is fresh: growing a bank is plan=grow (the "
            "commands pick it when finetune.from is on their command line)",
            option="plan",
        )
    return PLANS[name](cfg, specs)
