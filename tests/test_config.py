from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stylenet.data.styles import StyleError, available_styles, specs_from_config
from stylenet.runtime.hydra import CONFIG_DIR, run_name

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


# What each preset must set: (key, value) pairs of the composed, resolved config.
EXPERIMENT_SETS = {
    "arbitrary": {"plan.name": "arbitrary", "name": "arbitrary",
                  "data._target_": "stylenet.data.style_images.PairedDataModule",
                  "arbitrary.from": "checkpoints/bank_all.pt", "arbitrary.train_network": False},
    "distill": {"plan.name": "distill", "distill.teacher": "checkpoints/bank_all.pt",
                "name": "bank_all-fast", "model.res_block": "separable",
                "model.decoder": "conv_resize", "model.base_channels": 16},
    "smoke": {"model.base_channels": 16, "data.image_size": 64, "trainer.max_steps": 20,
              "name": "smoke-starry_night", "export.dir": "outputs/smoke-starry_night"},
    "cpu_narrow": {"model.base_channels": 16, "trainer.max_steps": 600,
                   "name": "starry_night-narrow", "export.dir": "checkpoints"},
    "fast_gpu": {"data.batch_size": 16, "trainer.max_steps": 10000, "optim.lr": 2e-3,
                 "optim.scheduler": "cosine", "speed.compile": "on"},
    "coco_gpu": {"data.annotations": "/data/coco/a.json", "data.image_size": 256,
                 "data.batch_size": 4, "trainer.max_steps": 40000,
                 "trainer.precision": "bf16-mixed", "style_size": 512},
}  # fmt: skip


def test_every_experiment_is_described():
    assert sorted(EXPERIMENT_SETS) == EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_sets_what_it_says(compose, experiment):
    overrides = [f"experiment={experiment}"]
    if experiment == "coco_gpu":
        overrides += ["data.root=/data/coco", "data.annotations=/data/coco/a.json"]
    cfg = compose(overrides, hydra=True)
    for key, value in EXPERIMENT_SETS[experiment].items():
        assert OmegaConf.select(cfg, key) == value, (experiment, key)


def test_experiment_overrides_groups(compose):
    cfg = compose(["experiment=smoke", "name=x"])
    assert cfg.model.base_channels == 16  # override /model: narrow
    assert cfg.trainer.max_steps == 20


def test_per_style_size_and_loss_scale_from_config(compose):
    cfg = compose(["style=[starry_night,the_scream]", "style.the_scream.size=96",
                   "style.the_scream.loss_scale=2.5", "name=x"])  # fmt: skip
    specs = {s.name: s for s in specs_from_config(cfg.style)}
    assert specs["the_scream"].size == 96 and specs["the_scream"].loss_scale == 2.5
    assert specs["starry_night"].size is None and specs["starry_night"].loss_scale == 1.0


def test_old_weight_key_still_read(caplog):
    with caplog.at_level("WARNING", logger="stylenet.data.styles"):
        specs = specs_from_config({"a": {"image": "starry_night.jpg", "weight": 3.0}})
    assert specs[0].loss_scale == 3.0
    assert "'weight' is now called 'loss_scale'" in caplog.text
    with pytest.raises(StyleError, match="loss_scale"):
        specs_from_config({"a": {"image": "starry_night.jpg", "loss_scale": -1}})


def test_public_keys_exist(compose):
    cfg = compose(["name=x"])
    for key in (
        "trainer.max_steps", "data.root", "data.image_size", "data.batch_size",
        "loss.content_weight", "loss.style_weight", "loss.tv_weight", "loss.vgg.weights",
        "loss.vgg.weights_path", "seed",
    ):  # fmt: skip
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key


def test_hardware_is_a_group_and_auto_picks_at_launch(compose, monkeypatch):
    import stylenet.runtime.hydra as H

    cpu, gpu = compose(["hardware=cpu"]), compose(["hardware=gpu"])
    assert (cpu.data.image_size, cpu.trainer.precision, cpu.trainer.max_steps) == (
        128,
        "32-true",
        600,
    )
    assert (gpu.data.image_size, gpu.trainer.precision, gpu.trainer.max_steps) == (
        256,
        "bf16-mixed",
        40000,
    )
    assert (cpu.loss.style_weight, gpu.loss.style_weight) == (2e9, 1e10)
    assert (cpu.speed.progress_refresh_rate, gpu.speed.progress_refresh_rate) == (1, 20)
    assert (cpu.hardware.name, gpu.hardware.name) == ("cpu", "gpu")  # recorded in config.yaml
    # auto (or nothing) is replaced before composing, by what the machine has; a named choice and
    # a key set directly are kept
    for has_cuda, picked in ((False, "cpu"), (True, "gpu")):
        monkeypatch.setattr(H, "cuda_available", lambda v=has_cuda: v)
        assert H.launch_overrides(["style=x"])[0] == ["style=x", f"hardware={picked}"]
        assert H.launch_overrides(["hardware=auto"])[0] == [f"hardware={picked}"]
        assert compose(["name=x"]).hardware.name == picked
    assert H.launch_overrides(["hardware=cpu,gpu"])[0] == ["hardware=cpu,gpu"]
    assert compose(["hardware=gpu", "data.image_size=64"]).data.image_size == 64
    # the opt-out of the launch step fails loudly instead of guessing
    from hydra import compose as raw_compose
    from hydra import initialize_config_dir
    from omegaconf.errors import OmegaConfBaseException

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        raw = raw_compose("train", ["hardware=auto"])
    with pytest.raises(OmegaConfBaseException, match="hardware.image_size"):
        _ = raw.data.image_size


def test_the_trainer_group_holds_trainer_arguments_only(compose):
    import inspect

    import pytorch_lightning as pl

    cfg = compose([])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    assert set(cfg.trainer) - {"_target_"} <= accepted


def test_moved_keys_keep_their_old_spelling_with_a_note(compose):
    from stylenet.runtime.hydra import launch_overrides

    ov, notes = launch_overrides(["trainer.compile=on", "+trainer.channels_last=false"])
    assert ov[:2] == ["speed.compile=on", "+speed.channels_last=false"]
    assert notes == ["trainer.compile is now speed.compile",
                     "trainer.channels_last is now speed.channels_last"]  # fmt: skip
    assert compose(["trainer.compile=on"]).speed.compile == "on"


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


def test_growing_is_a_plan_the_commands_pick_from_finetune_from(compose, tmp_path):
    from stylenet.errors import OptionError
    from stylenet.runtime.hydra import launch_overrides
    from stylenet.training.plans import make_plan

    assert launch_overrides(["finetune.from=b.pt"])[0][-1] == "plan=grow"
    assert "plan=grow" not in launch_overrides(["finetune.from=null"])[0]
    assert launch_overrides(["finetune.from=b.pt", "plan=fresh"])[0].count("plan=grow") == 0
    grow = compose([f"finetune.from={tmp_path / 'b.pt'}"])
    assert grow.plan.name == "grow" and grow.trainer.max_steps == grow.finetune.max_steps == 150
    assert compose([]).plan.name == "fresh" and compose([]).trainer.max_steps == 600
    # a plan that contradicts finetune.from is one line, before anything is read
    with pytest.raises(OptionError, match="plan=grow"):
        make_plan(compose([f"finetune.from={tmp_path / 'b.pt'}", "plan=fresh"]), [])
    with pytest.raises(OptionError, match="set finetune.from"):
        make_plan(compose(["plan=grow"]), [])


def test_groups_are_built_by_instantiate_and_a_stray_key_is_one_line(compose, photo_dir):
    from stylenet.data.photos import ContentDataModule
    from stylenet.errors import OptionError
    from stylenet.training.build import build_datamodule

    dm = build_datamodule(compose([f"data.root={photo_dir}", "data.scale=[0.6,0.9]"]))
    assert isinstance(dm, ContentDataModule) and dm.scale == (0.6, 0.9) and dm.root == photo_dir
    assert dm.num_samples == 4 and dm.sample_size == 160  # from samples.*, hardware=cpu
    with pytest.raises(OptionError) as e:
        build_datamodule(compose(["+data.colour=1"]))
    assert e.value.option == "data.colour" and "ContentDataModule" in str(e.value)
    with pytest.raises(OptionError) as e:  # the target's own errors come through, keyed
        build_datamodule(compose(["data.scale=[0.9,0.1]"]))
    assert e.value.option == "data.scale"


def test_a_plain_composition_does_not_read_an_earlier_runs_overrides(compose) -> None:
    # resolved_run_config sets Hydra's node in the process; a config composed after it without
    # that node must not see the earlier command line's model override (a bank grown in-process
    # after it was refused for an override it never had).
    from stylenet.training.build import _model_overrides

    run = compose(["model.base_channels=8"], hydra=True)
    assert _model_overrides(run)["base_channels"] == 8
    assert _model_overrides(compose([])) == {}
