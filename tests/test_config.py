from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stylenet.config import CONFIG_DIR, run_name
from stylenet.styles import StyleError, available_styles, specs_from_config

STYLES = sorted(
    p.stem for p in (CONFIG_DIR / "style").glob("*.yaml") if not p.stem.startswith("bank_")
)
BANKS = sorted(p.stem for p in (CONFIG_DIR / "style").glob("bank_*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_every_shipped_painting_has_a_config():
    assert STYLES == available_styles()
    assert len(BANKS) >= 2


@pytest.mark.parametrize("style", STYLES)
def test_each_style_composes(compose, style):
    cfg = compose([f"style={style}", "name=x"])
    specs = specs_from_config(cfg.style)
    assert [s.name for s in specs] == [style]
    assert specs[0].path().is_file()
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("bank", BANKS)
def test_each_bank_composes_to_several_styles(compose, bank):
    cfg = compose([f"style={bank}", "name=x"])
    specs = specs_from_config(cfg.style)
    assert len(specs) >= 2
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        assert s.path().is_file()


def test_ad_hoc_bank_keeps_order(compose):
    cfg = compose(["style=[the_scream,starry_night]", "name=x"])
    assert [s.name for s in specs_from_config(cfg.style)] == ["the_scream", "starry_night"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_composes(compose, experiment):
    overrides = [f"experiment={experiment}", "name=x"]
    if experiment == "coco_gpu":
        overrides += ["data.root=/data/coco", "data.annotations=/data/coco/a.json"]
    cfg = compose(overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["trainer"]["max_steps"] > 0


def test_experiment_overrides_groups(compose):
    cfg = compose(["experiment=smoke", "name=x"])
    assert cfg.model.base_channels == 16  # override /model: narrow
    assert cfg.trainer.max_steps == 20


def test_public_keys_exist(compose):
    cfg = compose(["name=x"])
    for key in (
        "trainer.max_steps", "data.root", "data.image_size", "data.batch_size",
        "loss.content_weight", "loss.style_weight", "loss.tv_weight", "loss.vgg.weights",
        "loss.vgg.weights_path", "seed",
    ):  # fmt: skip
        OmegaConf.select(cfg, key, throw_on_missing=False)
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key


def test_cpu_defaults_are_cpu_sized(compose):
    cfg = compose(["name=x"])  # tests force the CPU branch of ${if_cuda:...}
    assert cfg.data.image_size == 128
    assert cfg.trainer.precision == "32-true"


def test_run_name():
    assert run_name("bank_vangogh") == "bank_vangogh"
    assert run_name(None, {"a": 1, "b": 2}) == "a+b"
    assert run_name("[a, b]") == "a+b"
    assert run_name("we/ird name") == "we_ird_name"


def test_unknown_style_lists_available(compose):
    with pytest.raises(Exception) as e:
        compose(["style=no_such_style", "name=x"])
    assert "starry_night" in str(e.value)


def test_style_without_image_is_refused():
    with pytest.raises(StyleError, match="image"):
        specs_from_config({"broken": {"weight": 1.0}})
    with pytest.raises(StyleError, match="no style"):
        specs_from_config({})
