"""Training plans: what a run trains and what its export records, as variations of one run.

A run (``stylenet.training.run``) does the same steps whatever it trains: check the inputs, build
the LightningModule, fit, export. What varies is the plan, chosen by the ``plan`` config group
(``configs/plan/``), never by a branch inside the run:

- ``fresh``: a new network with one gamma/beta row per selected style;
- ``grow``: an exported bank with rows added for the selected styles (``finetune.*``;
  ``stylenet.training.grow``). The commands pick it when ``finetune.from`` is on their command
  line, so ``stylenet-train style=x finetune.from=bank.pt`` needs no ``plan=grow``.

A new kind of training (distilling a bank, training a style predictor) is one more class here
with the same four members and one more YAML in ``configs/plan/``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from stylenet.checkpoints.format import make_thumbnail, now_iso
from stylenet.data.styles import StyleSpec
from stylenet.errors import OptionError
from stylenet.training.build import _model_overrides, build_module
from stylenet.training.module import StyleTransferModule


class FreshPlan:
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


class GrowPlan:
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
        # The grown bank's style entries: the base's, then the new ones.
        base_styles = dict((g.base.get("train_config") or {}).get("style") or {})
        train_config["style"] = {**base_styles, **train_config.get("style", {})}
        return thumbs, history


PLANS = {"fresh": FreshPlan, "grow": GrowPlan}


def make_plan(cfg: DictConfig, specs: list[StyleSpec]) -> FreshPlan | GrowPlan:
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
