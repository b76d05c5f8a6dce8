from __future__ import annotations

import pytest
import torch

from stylenet.checkpoints.format import load_network, read_checkpoint
from stylenet.data.styles import specs_from_config
from stylenet.errors import CheckpointError, OptionError, TrainingError
from stylenet.training.build import build_module
from stylenet.training.run import train
from tests.conftest import random_bank


def test_few_steps_lower_the_loss(compose, tiny_overrides):
    cfg = compose(tiny_overrides + ["style=[starry_night,the_scream]"])
    torch.manual_seed(0)  # the network's initialisation too, whatever ran before
    module = build_module(cfg, specs_from_config(cfg.style))
    x = torch.rand(2, 3, 32, 32)
    idx = torch.tensor([0, 1])
    w = torch.nn.functional.one_hot(idx, 2).float()
    opt = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = module.loss(module.net(x, w), x, idx)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_train_exports_resumes_and_reproduces(compose, tiny_overrides, tmp_path):
    cfg = compose(tiny_overrides + ["style=[starry_night,the_scream]"])
    res = train(cfg)
    assert res.global_step == 4
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert res.sample_grid is not None and res.sample_grid.is_file()
    for k in (
        "train/loss",
        "train/content_loss",
        "train/style_loss",
        "train/tv_loss",
        "train/style_loss/relu3_3",
    ):
        assert k in res.metrics, k

    # Lightning checkpoint carries no VGG weights
    lck = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not [k for k in lck["state_dict"] if k.startswith("loss.")]
    assert lck["stylenet"]["style_names"] == ["starry_night", "the_scream"]

    # exported inference checkpoint: weights_only, self-describing, reproduces the network
    path = res.export_path
    raw = torch.load(path, weights_only=True)
    assert raw["style_names"] == ["starry_night", "the_scream"]
    assert raw["model_args"] == {
        "num_styles": 2,
        "base_channels": 8,
        "num_res_blocks": 1,
        "upsample": "nearest",
        "res_block": "conv",
        "edge_kernel": 9,
        "decoder": "resize_conv",
        "trunk_channels": 0,
    }
    assert raw["train_config"]["data"]["image_size"] == 32
    net, names, _ = load_network(path)
    x = torch.rand(1, 3, 30, 34)
    ckpt_module_net = build_module(cfg, specs_from_config(cfg.style)).net
    ckpt_module_net.load_state_dict(
        {k[4:]: v for k, v in lck["state_dict"].items() if k.startswith("net.")}
    )
    w = net.one_hot(1)
    torch.testing.assert_close(net(x, w), ckpt_module_net.eval()(x, w))

    # automatic resume in the same run directory continues the step count
    cfg2 = compose(tiny_overrides + ["style=[starry_night,the_scream]", "trainer.max_steps=6"])
    res2 = train(cfg2)
    assert res2.global_step == 6
    assert read_checkpoint(res2.export_path)["trained_steps"] == 6


def test_nan_loss_stops_with_step_and_keeps_last_good(compose, tiny_overrides, tmp_path):
    train(compose(tiny_overrides))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    # A finite weight so large that the loss overflows float32: the run must stop at once.
    bad = compose(tiny_overrides + ["trainer.max_steps=8", "loss.content_weight=1e300"])
    try:
        train(bad)
        raise AssertionError("NaN loss did not stop training")
    except TrainingError as e:
        msg = str(e)
    assert "not finite at step 4" in msg and "last good checkpoint" in msg
    after = torch.load(last, map_location="cpu", weights_only=False)
    assert after["global_step"] == before == 4
    assert all(
        torch.isfinite(v).all() for v in after["state_dict"].values() if v.is_floating_point()
    )


def test_missing_data_root_fails_before_model(compose, tiny_overrides, tmp_path, monkeypatch):

    def boom(*a, **k):
        raise AssertionError("model built before the data root was checked")

    monkeypatch.setattr("stylenet.training.plans.build_module", boom)
    cfg = compose(tiny_overrides + [f"data.root={tmp_path / 'nope'}"])
    from stylenet.data.photos import DataError

    try:
        train(cfg)
        raise AssertionError("no error")
    except DataError as e:
        assert "does not exist" in str(e)


def test_missing_style_image_named(compose, tiny_overrides, tmp_path):
    from stylenet.data.styles import StyleError

    cfg = compose(tiny_overrides + [f"style.starry_night.image={tmp_path / 'gone.jpg'}"])
    try:
        train(cfg)
        raise AssertionError("no error")
    except StyleError as e:
        assert "gone.jpg" in str(e)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    cfg = compose(tiny_overrides + [f"style.starry_night.image={corrupt}"])
    try:
        train(cfg)
        raise AssertionError("no error")
    except StyleError as e:
        assert "corrupt.jpg" in str(e)


# ----------------------------------------------------------------------------- schedule


def test_lr_factor_warmup_then_cosine():
    from stylenet.training.module import lr_factor

    def f(step):
        return lr_factor(step, 100, "cosine", warmup_steps=10, min_lr_ratio=0.1)

    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)  # cosine starts at the top after warm-up
    assert f(55) == pytest.approx(0.55)  # half-way: 0.1 + 0.9 * 0.5
    assert f(100) == pytest.approx(0.1) and f(150) == pytest.approx(0.1)
    assert lr_factor(50, 100, "constant", 0, 0.1) == 1.0


def test_cosine_schedule_reaches_the_optimizer(compose, tiny_overrides, tmp_path):
    cfg = compose(tiny_overrides + ["optim.scheduler=cosine", "optim.warmup_steps=2",
                                    "optim.min_lr_ratio=0.2", "optim.lr=0.01"])  # fmt: skip
    train(cfg)
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    from stylenet.training.module import lr_factor

    expected = 0.01 * lr_factor(4, 4, "cosine", 2, 0.2)  # after 4 steps of 4: the floor
    assert ck["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(expected)
    assert expected == pytest.approx(0.002)


def test_unknown_scheduler_names_the_key(compose, tiny_overrides):
    with pytest.raises(OptionError, match="optim.scheduler"):
        train(compose(tiny_overrides + ["optim.scheduler=linear"]))


# ----------------------------------------------------------------------------- resuming


def test_ckpt_path_errors(compose, tiny_overrides, tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        train(compose(tiny_overrides + [f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    with pytest.raises(TrainingError, match="ckpt_path=last"):
        train(compose(tiny_overrides + ["ckpt_path=last"]))
    exported = tmp_path / "inference.pt"
    random_bank(exported, ["a"])
    with pytest.raises(CheckpointError, match="finetune.from"):
        train(compose(tiny_overrides + [f"ckpt_path={exported}"]))


def test_resume_refuses_another_architecture_or_styles(compose, tiny_overrides):
    train(compose(tiny_overrides))
    with pytest.raises(TrainingError) as e:
        train(compose(tiny_overrides + ["model.base_channels=4", "trainer.max_steps=6"]))
    assert "base_channels 8 -> 4" in str(e.value) and "ckpt_path=null" in str(e.value)
    with pytest.raises(TrainingError, match="styles"):
        train(compose(tiny_overrides + ["style=the_scream", "trainer.max_steps=6"]))
    # ckpt_path=null starts afresh in the same place
    assert train(compose(tiny_overrides + ["style=the_scream", "ckpt_path=null"])).global_step == 4


def test_truncated_last_checkpoint_falls_back_to_an_older_one(compose, tiny_overrides, tmp_path):
    train(compose(tiny_overrides))
    ckdir = tmp_path / "run" / "checkpoints"
    last = ckdir / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    res = train(compose(tiny_overrides + ["trainer.max_steps=6"]))
    assert res.global_step == 6  # resumed from step0000004.ckpt, not from scratch
    for p in ckdir.glob("*.ckpt"):
        p.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(TrainingError, match="ckpt_path=null"):
        train(compose(tiny_overrides + ["trainer.max_steps=8"]))


# ----------------------------------------------------------------------------- exporting


def test_export_never_replaces_a_network_this_run_did_not_make(compose, tiny_overrides, tmp_path):
    shipped = tmp_path / "exported" / "test.pt"
    random_bank(shipped, ["starry_night"])
    before = shipped.read_bytes()
    res = train(compose(tiny_overrides))
    assert res.export_path == tmp_path / "exported" / "test-2.pt"
    assert shipped.read_bytes() == before and not shipped.with_suffix(".pt.bak").exists()
    assert any("test-2.pt" in n for n in res.notes)
    # the same run, resumed, re-exports to its own file
    res2 = train(compose(tiny_overrides + ["trainer.max_steps=6"]))
    assert res2.export_path == res.export_path
    assert shipped.read_bytes() == before
    # only when told
    res3 = train(compose(tiny_overrides + ["ckpt_path=null", "export.overwrite=true"]))
    assert res3.export_path == shipped and shipped.read_bytes() != before
    assert shipped.with_suffix(".pt.bak").read_bytes() == before


# ----------------------------------------------------------------------------- interrupting


def test_interrupt_saves_and_resumes(compose, tiny_overrides, tmp_path, monkeypatch):
    from stylenet.errors import Interrupted
    from stylenet.training.module import StyleTransferModule

    original = StyleTransferModule.training_step

    def ctrl_c_at_step_3(self, batch, idx):
        if self.global_step == 3:
            raise KeyboardInterrupt
        return original(self, batch, idx)

    monkeypatch.setattr(StyleTransferModule, "training_step", ctrl_c_at_step_3)
    with pytest.raises(Interrupted, match="resume from step 3"):
        train(compose(tiny_overrides + ["trainer.max_steps=6"]))
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    monkeypatch.setattr(StyleTransferModule, "training_step", original)
    assert train(compose(tiny_overrides + ["trainer.max_steps=6"])).global_step == 6


def test_a_wall_clock_limit_stops_saves_and_exports(compose, tiny_overrides):
    """trainer.max_time: the run ends at a step boundary past the limit, well before max_steps,
    and ends as at max_steps: a last checkpoint and an exported file of the steps it made."""
    cfg = compose(tiny_overrides + ["trainer.max_steps=400", "trainer.max_time=00:00:00:02"])
    res = train(cfg)
    assert 0 < res.global_step < 400
    assert read_checkpoint(res.export_path)["trained_steps"] == res.global_step
    assert (res.run_dir / "checkpoints" / "last.ckpt").is_file()


def test_lr_factor_follows_the_clock_when_it_comes_first():
    from stylenet.training.module import lr_factor

    assert lr_factor(5, 1000, "cosine", 0, 0.1, time_fraction=0.5) == pytest.approx(0.55)
    assert lr_factor(5, 1000, "cosine", 0, 0.1, time_fraction=1.0) == pytest.approx(0.1)
    assert lr_factor(900, 1000, "cosine", 0, 0.1, time_fraction=0.0) == pytest.approx(
        lr_factor(900, 1000, "cosine", 0, 0.1)
    )  # the steps came first
    assert lr_factor(5, 0, "cosine", 0, 0.1, time_fraction=0.5) == pytest.approx(0.55)
    assert lr_factor(5, 1000, "constant", 0, 0.1, time_fraction=0.9) == 1.0


def test_a_cosine_run_under_a_wall_clock_limit_ends_at_its_lowest_rate(compose, tiny_overrides):
    """max_steps far away, max_time near: the rate at the last step is near min_lr_ratio."""
    cfg = compose(tiny_overrides + ["trainer.max_steps=400", "trainer.max_time=00:00:00:03",
                                    "optim.scheduler=cosine", "optim.min_lr_ratio=0.1"])  # fmt: skip
    res = train(cfg)
    assert 0 < res.global_step < 400
    ck = torch.load(
        res.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    lr = ck["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr < 0.2 * float(cfg.optim.lr), (lr, res.global_step)


def test_the_clock_moves_the_schedule_on_one_process_only():
    """Several DDP ranks would each read their own clock: their schedule keeps to the steps."""
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import Timer

    from stylenet.training.module import time_fraction_of

    timer = Timer(duration="00:00:01:00")
    one = SimpleNamespace(world_size=1, callbacks=[timer])
    assert time_fraction_of(one)() == pytest.approx(0.0, abs=1e-6)  # the timer has not started
    assert time_fraction_of(SimpleNamespace(world_size=2, callbacks=[timer]))() is None
    assert time_fraction_of(SimpleNamespace(world_size=1, callbacks=[]))() is None
    assert time_fraction_of(None)() is None
