from __future__ import annotations

import torch

from stylenet.checkpoint import load_network, read_checkpoint
from stylenet.styles import specs_from_config
from stylenet.train import TrainingError, build_module, train


def test_few_steps_lower_the_loss(compose, tiny_overrides):
    cfg = compose(tiny_overrides + ["style=[starry_night,the_scream]"])
    module = build_module(cfg, specs_from_config(cfg.style))
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    idx = torch.tensor([0, 1])
    w = torch.nn.functional.one_hot(idx, 2).float()
    opt = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
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
    assert raw["model_args"] == {"num_styles": 2, "base_channels": 8, "num_res_blocks": 1}
    assert raw["train_config"]["data"]["image_size"] == 32
    net, names, _ = load_network(path)
    x = torch.rand(1, 3, 30, 34)
    ckpt_module_net = build_module(cfg, specs_from_config(cfg.style)).net
    ckpt_module_net.load_state_dict(
        {k[4:]: v for k, v in lck["state_dict"].items() if k.startswith("net.")}
    )
    w = net.style_weights(1)
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
    bad = compose(tiny_overrides + ["trainer.max_steps=8", "loss.content_weight=nan"])
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
    import stylenet.train as T

    def boom(*a, **k):
        raise AssertionError("model built before the data root was checked")

    monkeypatch.setattr(T, "build_module", boom)
    cfg = compose(tiny_overrides + [f"data.root={tmp_path / 'nope'}"])
    from stylenet.data import DataError

    try:
        train(cfg)
        raise AssertionError("no error")
    except DataError as e:
        assert "does not exist" in str(e)


def test_missing_style_image_named(compose, tiny_overrides, tmp_path):
    from stylenet.styles import StyleError

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
