"""Any image as a style: the style predictor, its checkpoint entry, the Stylizer, the server,
training a predictor (``experiment=arbitrary``) and growing a row from a prediction."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.checkpoints.format import (
    export_inference_checkpoint,
    predictor_from_checkpoint,
    predictor_payload,
    read_checkpoint,
)
from stylenet.errors import StyleSpecError
from stylenet.inference.stylizer import Stylizer
from stylenet.losses.perceptual import VGGFeatures
from stylenet.nn.network import random_network
from stylenet.nn.params import LayerParams
from stylenet.nn.predictor import StylePredictor, style_statistics
from stylenet.nn.vgg import DEFAULT_STYLE_LAYERS
from tests.conftest import make_photo, random_bank

NAMES = ["a", "b"]


def texture(path: Path, seed: int, size: tuple[int, int] = (96, 80)) -> Path:
    """Blocky random colours: a texture whose VGG statistics differ with the seed."""
    rng = np.random.default_rng(seed)
    cells = (rng.random((6, 6, 3)) ** (0.5 + seed % 3)) * 255
    img = Image.fromarray(cells.astype(np.uint8)).resize(size, Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def random_vgg() -> VGGFeatures:
    with pytest.warns(UserWarning, match="RANDOM"):
        return VGGFeatures(DEFAULT_STYLE_LAYERS, weights="random")


def spread_predictor(net, seed: int = 0) -> StylePredictor:
    """A predictor whose outputs depend on the style image (an untrained one gives the mean row
    for every image: its decoder starts at zero)."""
    torch.manual_seed(seed)
    p = StylePredictor.for_network(net)
    torch.nn.init.normal_(p.decoder.weight, std=0.05)
    return p.eval()


@pytest.fixture(scope="module")
def bank_with_predictor(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pred")
    net = random_network(2)
    payload = {"predictor": predictor_payload(spread_predictor(net), 5, {"styles": "test"})}
    return export_inference_checkpoint(net, NAMES, d / "bank.pt", extra=payload)


@pytest.fixture(scope="module")
def fast_bank_with_predictor(tmp_path_factory) -> Path:
    """The fast CPU layout (``model=fast``) with a predictor of its own norm widths."""
    d = tmp_path_factory.mktemp("fastpred")
    net = random_network(2, 4, 2, upsample="bilinear", res_block="separable", edge_kernel=5,
                         decoder="conv_resize")  # fmt: skip
    payload = {"predictor": predictor_payload(spread_predictor(net), 5, {"styles": "test"})}
    return export_inference_checkpoint(net, NAMES, d / "fast.pt", extra=payload)


@pytest.fixture
def vgg_random(monkeypatch):
    """Style images read through a random VGG (the tests have no ImageNet weights)."""
    from stylenet.inference import predicted

    vgg = random_vgg()
    monkeypatch.setattr(predicted.StyleImages, "_features", lambda self: vgg.to(self.device))
    return vgg


@pytest.mark.parametrize("layout", ["full", "fast"])
def test_a_predicted_row_follows_the_style_image_and_is_deterministic(
    layout, bank_with_predictor, fast_bank_with_predictor, tmp_path, vgg_random
):
    bank_file = bank_with_predictor if layout == "full" else fast_bank_with_predictor
    st = Stylizer(bank_file, device="cpu", precision="fp32")
    photo = Image.open(make_photo(tmp_path / "p.png", (64, 48)))
    s1, s2 = texture(tmp_path / "s1.png", 1), texture(tmp_path / "s2.png", 2)
    a = np.asarray(st.stylize(photo, style=str(s1)), dtype=np.int16)
    again = np.asarray(st.stylize(photo, style=str(s1)), dtype=np.int16)
    b = np.asarray(st.stylize(photo, style=str(s2)), dtype=np.int16)
    assert np.array_equal(a, again)
    assert np.abs(a - b).mean() > 2.0
    # The second use of s1 came from the cache (by content): two predictions for two images.
    assert st.images.predictions == 2
    bank = np.asarray(st.stylize(photo, style="a"), dtype=np.int16)
    assert np.abs(a - bank).mean() > 2.0


def test_a_mix_with_a_style_image_is_the_mix_of_their_rows(
    bank_with_predictor, tmp_path, vgg_random
):
    st = Stylizer(bank_with_predictor, device="cpu", precision="fp32")
    s1 = texture(tmp_path / "s1.png", 1)
    x = torch.rand(1, 3, 48, 64)
    y = st.stylize(x, style=f"a=0.25,{s1}=0.75")
    # The same parameters by hand: the bank row of "a" and the predicted row, mixed 1:3.
    pred = st.images.rows_for_file(s1)
    bank = st.net.row_params(0)
    mixed = LayerParams(
        [0.25 * g + 0.75 * p[0] for g, p in zip(bank.gammas, pred, strict=True)],
        [0.25 * b + 0.75 * p[1] for b, p in zip(bank.betas, pred, strict=True)],
    )
    with torch.no_grad():
        ref = st.net(x, mixed).clamp(0, 1)
    assert torch.allclose(y, ref, atol=1e-5)
    # A mask mixes a style image and a bank style like two bank styles.
    mask = torch.zeros(48, 64)
    mask[:, :32] = 1.0
    ym = st.stylize(x, style=str(s1), mask=mask, mask_style="b")
    assert ym.shape == y.shape


def test_the_predictor_saves_and_loads_with_weights_only(bank_with_predictor):
    ckpt = torch.load(bank_with_predictor, map_location="cpu", weights_only=True)
    assert ckpt["predictor"]["trained_steps"] == 5
    net = random_network(2)
    p = predictor_from_checkpoint(read_checkpoint(bank_with_predictor), net, bank_with_predictor)
    ref = spread_predictor(net)
    stats = torch.rand(3, p.stat_mean.numel())
    for got, want in zip(p(stats).gammas, ref(stats).gammas, strict=True):
        assert torch.equal(got, want)
    # A checkpoint without a predictor loads as before and says it has none.
    plain = random_bank(bank_with_predictor.parent / "plain.pt", NAMES)
    assert predictor_from_checkpoint(read_checkpoint(plain), net) is None


def test_bank_edits_keep_the_predictor(bank_with_predictor, tmp_path):
    from stylenet.checkpoints.bank import rename

    before = read_checkpoint(bank_with_predictor)["predictor"]
    out = rename(read_checkpoint(bank_with_predictor), "a", "renamed")
    assert out["style_names"] == ["renamed", "b"]
    assert out["predictor"]["args"] == before["args"]
    for k, v in before["state_dict"].items():
        assert torch.equal(out["predictor"]["state_dict"][k], v)


def test_bad_style_arguments_are_one_line_each(bank_with_predictor, tmp_path, vgg_random, capsys):
    from stylenet.cli.stylize import main

    photo = make_photo(tmp_path / "p.png", (64, 48))
    plain = random_bank(tmp_path / "plain.pt", NAMES)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    cases = [
        (bank_with_predictor, "nonexistent", "neither a style of"),
        (bank_with_predictor, str(tmp_path / "missing.jpg"), "nor an image file"),
        (bank_with_predictor, str(broken), "not a readable image"),
        (plain, str(texture(tmp_path / "s.png", 3)), "has no style predictor"),
    ]
    for ckpt, style, text in cases:
        rc = main(["-c", str(ckpt), "-i", str(photo), "-o", str(tmp_path / "o.png"), "-s", style])
        err = capsys.readouterr().err.strip()
        assert rc != 0 and text in err, (style, err)
        assert len(err.splitlines()) == 1, err
        if "readable" not in text:  # names the bank's styles
            assert "0:a, 1:b" in err, err
    assert not (tmp_path / "o.png").exists()


def test_a_missing_vgg_is_one_line_naming_stylenet_weights(
    bank_with_predictor, tmp_path, monkeypatch, capsys
):
    from stylenet.cli.stylize import main
    from stylenet.losses import weights

    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(weights, "torchvision_cache_file", lambda: tmp_path / "none.pth")
    photo = make_photo(tmp_path / "p.png", (64, 48))
    style = texture(tmp_path / "s.png", 1)
    rc = main(["-c", str(bank_with_predictor), "-i", str(photo), "-o", str(tmp_path / "o.png"),
               "-s", str(style)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "stylenet-weights" in err and len(err.splitlines()) == 1, err


def test_a_huge_style_image_is_read_at_the_style_size(bank_with_predictor, vgg_random):
    st = Stylizer(bank_with_predictor, device="cpu", precision="fp32")
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 30, 40)).save(buf, format="JPEG", quality=80)
    x = st.images.style_tensor(buf.getvalue(), "huge.jpg")
    assert max(x.shape[-2:]) == st.images.predictor.config.style_size
    assert x.shape[-1] > x.shape[-2]


def test_the_server_takes_a_style_image(bank_with_predictor, tmp_path, vgg_random):
    from fastapi.testclient import TestClient

    from stylenet.serve.app import create_app
    from stylenet.serve.config import ServeConfig

    def cfg(ckpt):
        return ServeConfig(checkpoint=str(ckpt), device="cpu", precision="fp32",
                           max_size=256, default_size=64)  # fmt: skip

    photo = make_photo(tmp_path / "p.png", (64, 48)).read_bytes()
    painting = texture(tmp_path / "s.png", 1).read_bytes()
    files = {"image": ("p.png", photo, "image/png"),
             "style_image": ("s.png", painting, "image/png")}  # fmt: skip
    with TestClient(create_app(cfg(bank_with_predictor))) as c:
        assert c.get("/v1/styles").json()["predictor"] is True
        alone = c.post("/v1/stylize", files=files, data={"format": "png"})
        assert alone.status_code == 200, alone.text
        mixed = c.post(
            "/v1/stylize", files=files, data={"style": "a=0.5,upload=0.5", "format": "png"}
        )
        bank = c.post(
            "/v1/stylize", files={"image": files["image"]}, data={"style": "a", "format": "png"}
        )
        arrays = [
            np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.int16)
            for r in (alone, mixed, bank)
        ]
        assert np.abs(arrays[0] - arrays[2]).mean() > 2.0
        assert (
            np.abs(arrays[1] - arrays[0]).mean() > 0.5
            and np.abs(arrays[1] - arrays[2]).mean() > 0.5
        )
        bad = c.post("/v1/stylize", files={**files, "style_image": ("s.png", b"junk", "image/png")})
        assert bad.status_code == 400 and "not a readable image" in bad.json()["error"]
        # A file path in the spec is never opened by the server: it is an unknown style.
        path = c.post(
            "/v1/stylize", files={"image": files["image"]}, data={"style": str(tmp_path / "s.png")}
        )
        assert path.status_code == 400 and "unknown style" in path.json()["error"]
    plain = random_bank(tmp_path / "plain.pt", NAMES)
    with TestClient(create_app(cfg(plain))) as c:
        assert c.get("/v1/styles").json()["predictor"] is False
        r = c.post("/v1/stylize", files=files)
        assert r.status_code == 400 and "no style predictor" in r.json()["error"]


def test_an_uploaded_style_is_hashed_once_per_request(
    bank_with_predictor, tmp_path, vgg_random, monkeypatch
):
    """With the palette, the server asks for the upload's rows and then its colours: one hash of
    its bytes, one prediction; the same bytes in a new request are hashed again (a new object)."""
    import hashlib

    from fastapi.testclient import TestClient

    from stylenet.inference import predicted
    from stylenet.serve.app import create_app
    from stylenet.serve.config import ServeConfig

    painting = texture(tmp_path / "s.png", 1).read_bytes()
    hashed = []

    class Counting:
        @staticmethod
        def sha256(data: bytes):
            if data == painting:
                hashed.append(1)
            return hashlib.sha256(data)

    monkeypatch.setattr(predicted, "hashlib", Counting)
    files = {"image": ("p.png", make_photo(tmp_path / "p.png", (64, 48)).read_bytes(), "image/png"),
             "style_image": ("s.png", painting, "image/png")}  # fmt: skip
    cfg = ServeConfig(checkpoint=str(bank_with_predictor), device="cpu", precision="fp32",
                      max_size=256, default_size=64)  # fmt: skip
    st = Stylizer(bank_with_predictor, device="cpu", precision="fp32")
    with TestClient(create_app(cfg, stylizer=st)) as c:
        r = c.post("/v1/stylize", files=files, data={"palette": "0.5", "format": "png"})
        assert r.status_code == 200, r.text
        assert len(hashed) == 1
        r = c.post("/v1/stylize", files=files, data={"palette": "0.5", "format": "png"})
        assert r.status_code == 200 and len(hashed) == 2
    assert st.images.predictions == 1  # the second request's rows came from the cache


def test_the_engine_batches_requests_with_and_without_style_images():
    from stylenet.serve.engine import Job, batch_mix

    S = 3
    rows = lambda k, v: [(torch.full((k, 4), v), torch.full((k, 4), -v))]  # noqa: E731
    jobs = [
        Job(torch.zeros(1, 3, 8, 8), torch.tensor([1.0, 0, 0]), None, (8, 8), 0.0),
        Job(torch.zeros(1, 3, 8, 8), torch.tensor([0.5, 0, 0, 0.5]), None, (8, 8), 0.0, extra=rows(1, 2.0)),
        Job(torch.zeros(1, 3, 8, 8), torch.tensor([0, 0, 0, 0.25, 0.75]), None, (8, 8), 0.0, extra=rows(2, 3.0)),
    ]  # fmt: skip
    mix, extra = batch_mix(jobs, S)
    assert mix.shape == (3, S + 3)
    assert torch.equal(mix[0], torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert torch.equal(mix[1], torch.tensor([0.5, 0, 0, 0.5, 0, 0]))
    assert torch.equal(mix[2], torch.tensor([0, 0, 0, 0, 0.25, 0.75]))
    assert torch.equal(extra[0][0][:, 0], torch.tensor([2.0, 3.0, 3.0]))


def test_style_statistics_are_channel_means_and_deviations():
    f = torch.rand(2, 3, 5, 7)
    s = style_statistics({"x": f}, ["x"])
    assert s.shape == (2, 6)
    assert torch.allclose(s[:, :3], f.mean((2, 3)))
    assert torch.allclose(s[:, 3:], f.var((2, 3), unbiased=False).add(1e-5).sqrt())


# ----------------------------------------------------------------------------- training


@pytest.fixture
def textures(tmp_path) -> Path:
    d = tmp_path / "textures"
    for i in range(6):
        texture(d / f"t{i}.png", i)
    (d / "broken.jpg").write_bytes(b"unreadable")
    return d


def arbitrary_overrides(tiny_overrides, base: Path, textures: Path, steps: int) -> list[str]:
    keep = [o for o in tiny_overrides if not o.startswith(("model", "trainer.max_steps", "name="))]
    return [*keep, "experiment=arbitrary", f"arbitrary.from={base}", f"data.styles={textures}",
            "data.style_size=32", "data.num_style_samples=1", f"trainer.max_steps={steps}",
            "arbitrary.lr=3e-3", "arbitrary.hidden=32", "loss.style_weight=1e9"]  # fmt: skip


def fixed_loss(module, photos: torch.Tensor, styles: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        stats, grams = module.style_stats(styles)
        y = module.net(photos, module.predictor(stats))
        terms = module.loss.combine(module.loss.vgg(y), module.loss.vgg(photos), grams, y)
    return {k: float(v) for k, v in terms.items()}


def test_training_a_predictor_lowers_its_loss_and_a_grown_row_starts_from_it(
    compose, tiny_overrides, textures, tmp_path
):
    from stylenet.data.style_images import StyleImageDataset
    from stylenet.training.run import train

    base = random_bank(tmp_path / "base.pt", NAMES)
    cfg = compose(arbitrary_overrides(tiny_overrides, base, textures, 60), hydra=True)
    res = train(cfg)
    assert res.global_step == 60 and res.export_path is not None
    out = read_checkpoint(res.export_path)
    assert out["style_names"] == NAMES and out["predictor"]["trained_steps"] == 60
    assert out["history"][-1]["event"] == "predictor trained"
    # The frozen network is the base's, bit for bit.
    for k, v in read_checkpoint(base)["state_dict"].items():
        assert torch.equal(out["state_dict"][k], v)
    # The trained predictor against the untrained one (the mean row) on fixed training pairs.
    from stylenet.training.plans import make_plan

    module = make_plan(cfg, []).build_module(cfg)
    ds = StyleImageDataset(sorted(textures.glob("t*.png")), 32, augment=False)
    torch.manual_seed(0)
    styles = torch.stack([ds.load(p) for p in ds.files])
    photos = torch.rand(len(styles), 3, 32, 32)
    module.eval()
    stats, _ = module.style_stats(styles)
    module.predictor.set_normalisation(stats)  # as on_fit_start would
    before = fixed_loss(module, photos, styles)
    trained = predictor_from_checkpoint(out, module.net)
    module.predictor.load_state_dict(trained.state_dict())
    after = fixed_loss(module, photos, styles)
    # The style term is what the predictor learns; the total falls with it.
    assert after["style_loss"] < 0.85 * before["style_loss"], (before, after)
    assert after["loss"] < before["loss"], (before, after)
    assert (res.run_dir / "samples").is_dir()

    # Growing a row for one of its training textures from this predictor starts at a lower loss
    # than from the mean row (same photos, same loss, before any step).
    from stylenet.data.styles import specs_from_config

    painting = textures / "t1.png"
    losses = {}
    for init in ("mean", "predict"):
        keep = [o for o in tiny_overrides if not o.startswith(("model", "name="))]
        cfg = compose([*keep, f"style={painting}", f"finetune.from={res.export_path}",
                       f"finetune.init={init}", "loss.style_weight=1e8"], hydra=True)  # fmt: skip
        plan = make_plan(cfg, specs_from_config(cfg.style))
        module = plan.build_module(cfg).eval()
        torch.manual_seed(0)
        x = torch.rand(4, 3, 32, 32)
        row = plan.names.index("t1")
        with torch.no_grad():
            y = module.net(x, module.net.one_hot(row, 4))
            losses[init] = float(module.loss(y, x, torch.zeros(4, dtype=torch.long))["loss"])
    assert losses["predict"] < losses["mean"], losses


def overshooting_bank(path: Path) -> Path:
    """A bank whose predictor overshoots: its rows for any image lie far past the mean row."""
    net = random_network(2)
    p = spread_predictor(net)
    with torch.no_grad():
        p.decoder.bias.normal_(std=2.0, generator=torch.Generator().manual_seed(3))
    payload = {"predictor": predictor_payload(p, 5, {"styles": "test"})}
    return export_inference_checkpoint(net, NAMES, path, extra=payload)


def grow_setup(compose, overrides: list[str], base: Path, painting: Path, blends: str):
    from stylenet.data.styles import specs_from_config
    from stylenet.training.build import build_datamodule
    from stylenet.training.plans import make_plan

    keep = [o for o in overrides if not o.startswith(("model", "name="))]
    cfg = compose([*keep, f"style={painting}", f"finetune.from={base}", "finetune.init=predict",
                   f"finetune.start_blends={blends}", "loss.style_weight=1e8"], hydra=True)  # fmt: skip
    plan = make_plan(cfg, specs_from_config(cfg.style))
    return cfg, plan, plan.build_module(cfg).eval(), build_datamodule(cfg)


def norm_rows(net, row: int) -> list[torch.Tensor]:
    return [t[row].detach().clone() for n in net.norms() for t in (n.gamma, n.beta)]


def test_a_predicted_start_moves_to_the_best_point_towards_the_mean_row(
    compose, tiny_overrides, tmp_path
):
    base = overshooting_bank(tmp_path / "base.pt")
    painting = make_photo(tmp_path / "painting.png", (48, 48), seed=7)
    # [1.0]: the prediction as it is.
    cfg, plan, module, dm = grow_setup(compose, tiny_overrides, base, painting, "[1.0]")
    row = plan.names.index("painting")
    predicted = norm_rows(module.net, row)
    plan.before_fit(cfg, module, dm, resuming=False)
    assert all(
        torch.equal(a, b) for a, b in zip(norm_rows(module.net, row), predicted, strict=True)
    )

    blends = [0.0, 0.25, 0.5, 0.75, 1.0]
    cfg, plan, module, dm = grow_setup(compose, tiny_overrides, base, painting, str(blends))
    # The mean row from the base file, and the loss at each point computed here.
    sd = read_checkpoint(base)["state_dict"]
    names = {id(m): n for n, m in module.net.named_modules()}
    mean = [
        sd[f"{names[id(n)]}.{p}"].mean(0) for n in module.net.norms() for p in ("gamma", "beta")
    ]
    photos = dm.training_images(8)
    assert photos.shape[0] == 5  # every training photo of the tiny set (7, less 2 for samples)
    params = [t for n in module.net.norms() for t in (n.gamma, n.beta)]

    def loss_at(t: float) -> float:
        with torch.no_grad():
            for prm, m, q in zip(params, mean, predicted, strict=True):
                prm[row] = m + t * (q - m)
            y = module.net(photos, module.net.one_hot(row, len(photos)))
            return float(module.loss(y, photos, torch.zeros(len(photos), dtype=torch.long))["loss"])

    losses = {t: loss_at(t) for t in blends}
    best = min(losses, key=losses.__getitem__)
    assert best < 1.0 and losses[best] < 0.9 * losses[1.0], losses  # the prediction overshoots
    with torch.no_grad():
        for prm, q in zip(params, predicted, strict=True):
            prm[row] = q
    plan.before_fit(cfg, module, dm, resuming=True)  # a resumed run keeps its own rows
    assert all(
        torch.equal(a, b) for a, b in zip(norm_rows(module.net, row), predicted, strict=True)
    )
    plan.before_fit(cfg, module, dm, resuming=False)
    start = plan.growth.starts["painting"]
    assert start["blend"] == best
    assert start["predicted"] == pytest.approx(losses[1.0], rel=1e-5)
    assert start["mean"] == pytest.approx(losses[0.0], rel=1e-5)
    for now, m, q in zip(norm_rows(module.net, row), mean, predicted, strict=True):
        assert torch.allclose(now, m + best * (q - m), atol=1e-6)


def test_a_grown_bank_records_where_its_rows_started(compose, tiny_overrides, tmp_path):
    from stylenet.training.run import train

    base = overshooting_bank(tmp_path / "base.pt")
    painting = make_photo(tmp_path / "painting.png", (48, 48), seed=7)
    keep = [o for o in tiny_overrides if not o.startswith(("model", "name=", "trainer.max_steps"))]
    cfg = compose([*keep, f"style={painting}", f"finetune.from={base}", "trainer.max_steps=2",
                   "loss.style_weight=1e8"], hydra=True)  # fmt: skip
    res = train(cfg)
    entry = read_checkpoint(res.export_path)["history"][-1]
    assert (
        entry["init"] == "predict"
        and entry["starts"]["painting"]["blend"] in cfg.finetune.start_blends
    )


@pytest.mark.parametrize("blends", ["[2.0]", "[-0.5,1.0]", "[a]"])
def test_bad_start_blends_are_one_line(compose, tiny_overrides, tmp_path, blends):
    from stylenet.errors import OptionError

    base = overshooting_bank(tmp_path / "base.pt")
    painting = make_photo(tmp_path / "painting.png", (48, 48), seed=7)
    with pytest.raises(OptionError, match="finetune.start_blends"):
        grow_setup(compose, tiny_overrides, base, painting, blends)


def test_an_image_file_is_a_style_on_the_train_command_line():
    from stylenet.runtime.hydra import launch_overrides

    out, _ = launch_overrides(["style=/data/My Painting.jpg", "finetune.from=bank.pt"])
    assert "~style" in out and "+style.My_Painting.image='/data/My Painting.jpg'" in out
    assert "plan=grow" in out
    kept, _ = launch_overrides(["style=starry_night"])
    assert "style=starry_night" in kept


def test_predict_init_needs_a_predictor(tmp_path):
    from stylenet.data.styles import StyleSpec
    from stylenet.errors import OptionError
    from stylenet.training.grow import plan_finetune

    plain = random_bank(tmp_path / "plain.pt", NAMES)
    spec = StyleSpec("t", str(texture(tmp_path / "t.png", 1)))
    with pytest.raises(OptionError, match="no style predictor"):
        plan_finetune(plain, [spec], init="predict")
    assert plan_finetune(plain, [spec], init="auto").init == "mean"


def test_a_style_folder_with_nothing_usable_is_one_error(compose, tiny_overrides, tmp_path):
    from stylenet.errors import DataError
    from stylenet.training.run import train

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.jpg").write_bytes(b"junk")
    base = random_bank(tmp_path / "base.pt", NAMES)
    cfg = compose(arbitrary_overrides(tiny_overrides, base, empty, 2), hydra=True)
    with pytest.raises(DataError, match="no usable style image"):
        train(cfg)


def test_unknown_style_without_predictor_still_lists_the_styles(tmp_path):
    st = Stylizer(random_bank(tmp_path / "b.pt", NAMES), device="cpu")
    with pytest.raises(StyleSpecError, match="0:a, 1:b"):
        st.choose("nope")


# ----------------------------------------------------------------------------- evaluation


def test_style_images_are_scored_by_both_measures_and_grown(
    bank_with_predictor, tmp_path, vgg_random, photo_dir
):
    from stylenet.evaluation.arbitrary import ArbitraryEvalConfig, evaluate_style_images
    from stylenet.evaluation.report import write_style_image_report

    tiny = ["data.image_size=32", "data.batch_size=2", "data.num_workers=0", "style_size=48",
            "samples.size=32", "samples.num_photos=1", "checkpoint_every_n_steps=2"]  # fmt: skip
    cfg = ArbitraryEvalConfig(
        size=48, max_photos=2, peer=False, vgg_weights="random", device="cpu", progress=False,
        grow_steps=3, grow_root=str(photo_dir), grow_overrides=tiny, timing_repeats=1,
    )  # fmt: skip
    images = {"wave": (str(texture(tmp_path / "wave.png", 4)), "unseen painting"),
              "a": (str(texture(tmp_path / "a.png", 5)), "bank painting")}  # fmt: skip
    report = evaluate_style_images(bank_with_predictor, photo_dir, images, cfg)
    wave, a = report["styles"]["wave"], report["styles"]["a"]
    assert set(wave["summary"]) == {"predicted", "grown_from_predict", "grown_from_mean"}
    assert set(a["summary"]) == {"predicted", "trained"}
    for kind in wave["summary"].values():
        for key in ("loss", "peer_setup_gram", "peer_setup_meanstd"):
            assert np.isfinite(kind[key]) and kind[key] > 0
    # The trained row and the predicted one are different rows, so they score differently.
    assert a["summary"]["trained"]["loss"] != a["summary"]["predicted"]["loss"]
    assert [len(c) for c in wave["growing"]["curves"].values()] == [3, 3]
    assert report["timing"]["add_style_image_s"] > 0
    paths = write_style_image_report(report, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "| wave | unseen painting |" in md and "Growing a row" in md
    assert Image.open(paths["sheet"]).width > 0


def test_steps_to_reach_uses_the_smoothed_curve():
    from stylenet.evaluation.arbitrary import smooth, steps_to_reach

    assert smooth([1.0, 3.0, 5.0], window=2) == [1.0, 2.0, 4.0]
    curve = [10.0] * 20 + [1.0] * 40
    # The 5-step average first reaches 1.0 five steps into the low part.
    assert steps_to_reach(curve, 1.0, window=5) == 25
    assert steps_to_reach(curve, 0.5, window=5) is None


def test_the_peer_setup_measure_is_zero_for_the_style_itself():
    from stylenet.evaluation.arbitrary import PeerSetupMeasure

    with pytest.warns(UserWarning, match="RANDOM"):
        m = PeerSetupMeasure("random")
    style = torch.rand(1, 3, 40, 40)
    d = m.distances(style, m.targets(style))
    assert d["peer_setup_gram"] == 0.0 and d["peer_setup_meanstd"] == 0.0
    other = m.distances(torch.rand(1, 3, 40, 40) * 0.5, m.targets(style))
    assert other["peer_setup_gram"] > 0 and other["peer_setup_meanstd"] > 0


def test_a_painting_is_added_to_a_bank_as_its_predicted_row(
    bank_with_predictor, tmp_path, vgg_random, capsys
):
    from stylenet.cli.bank import main

    painting = texture(tmp_path / "My Painting.png", 6)
    out = tmp_path / "grown.pt"
    assert main(["add", str(bank_with_predictor), str(painting), "-o", str(out)]) == 0
    ckpt = read_checkpoint(out)
    assert ckpt["style_names"] == ["a", "b", "My_Painting"]
    assert ckpt["history"][-1]["added"] == ["My_Painting"] and ckpt["predictor"]
    # The stored row stylizes exactly as the image file does through the predictor.
    x = torch.rand(1, 3, 40, 48)
    by_file = Stylizer(bank_with_predictor, device="cpu", precision="fp32").stylize(
        x, style=str(painting)
    )
    by_row = Stylizer(out, device="cpu", precision="fp32").stylize(x, style="My_Painting")
    assert torch.allclose(by_file, by_row, atol=1e-5)
    plain = random_bank(tmp_path / "plain.pt", NAMES)
    capsys.readouterr()
    assert main(["add", str(plain), str(painting), "-o", str(tmp_path / "x.pt")]) != 0
    assert "no style predictor" in capsys.readouterr().err


def test_the_predictor_can_be_dropped_from_a_bank(bank_with_predictor, tmp_path):
    from stylenet.cli.bank import main

    out = tmp_path / "plain.pt"
    assert main(["drop-predictor", str(bank_with_predictor), "-o", str(out)]) == 0
    before, after = read_checkpoint(bank_with_predictor), read_checkpoint(out)
    assert "predictor" not in after and after["style_names"] == before["style_names"]
    for k, v in before["state_dict"].items():
        assert torch.equal(after["state_dict"][k], v)
    assert main(["drop-predictor", str(out), "-o", str(tmp_path / "again.pt")]) != 0


def test_a_predictor_is_copied_to_another_network_of_its_widths(
    bank_with_predictor, fast_bank_with_predictor, vgg_random, tmp_path, capsys
):
    """``copy-predictor`` keeps a predictor across a change of the network's weights (as after a
    continued distillation): the bank's own styles untouched, the copied predictor's rows those it
    gave before, the history saying from which file and whether the convolutions are the same."""
    from stylenet.cli.bank import main
    from stylenet.io.files import sha256_file

    def copy(bank: Path, source: Path, out: Path) -> int:
        return main(["copy-predictor", str(bank), "--from", str(source), "-o", str(out)])

    def stylize(path: Path) -> torch.Tensor:
        return Stylizer(path, device="cpu", precision="fp32").stylize(x, style=str(painting))

    painting = texture(tmp_path / "p.png", 3)
    x = torch.rand(1, 3, 32, 40)
    plain = tmp_path / "plain.pt"
    assert main(["drop-predictor", str(bank_with_predictor), "-o", str(plain)]) == 0
    # Another network of the same layout: different convolutions, different rows.
    other = export_inference_checkpoint(random_network(2, seed=7), NAMES, tmp_path / "other.pt")
    out = tmp_path / "kept.pt"
    assert copy(other, bank_with_predictor, out) == 0
    src, before, after = (read_checkpoint(p) for p in (bank_with_predictor, other, out))
    for k, v in before["state_dict"].items():
        assert torch.equal(after["state_dict"][k], v)
    for k, v in src["predictor"]["state_dict"].items():
        assert torch.equal(after["predictor"]["state_dict"][k], v)
    ev = after["history"][-1]
    assert ev["event"] == "predictor copied" and ev["network"] == "different"
    assert ev["from"] == "bank.pt" and ev["from_sha256"] == sha256_file(bank_with_predictor)
    a, b = stylize(out), stylize(bank_with_predictor)
    assert not torch.allclose(a, b)  # the same rows through other convolutions
    # Back onto the network it was trained for: the same network, the same outputs.
    again = tmp_path / "again.pt"
    assert copy(plain, bank_with_predictor, again) == 0
    assert read_checkpoint(again)["history"][-1]["network"] == "the same"
    assert torch.allclose(b, stylize(again), atol=1e-6)
    # A predictor made for other norm widths, or none at all, is refused in one line.
    capsys.readouterr()
    bad = tmp_path / "bad.pt"
    assert copy(plain, fast_bank_with_predictor, bad) != 0
    assert "other norm widths" in capsys.readouterr().err and not bad.exists()
    assert copy(other, plain, bad) != 0
    assert "no style predictor to copy" in capsys.readouterr().err and not bad.exists()


def test_the_style_folder_is_scanned_held_out_and_augmented(textures, photo_dir, tmp_path):
    from stylenet.data.style_images import PairedDataModule

    extra = texture(tmp_path / "bank_painting.png", 9)
    dm = PairedDataModule(
        styles=str(textures), style_exclude=["t0.png"], style_extra=[str(extra)],
        style_extra_share=0.5, style_size=32, num_style_samples=1, root=str(photo_dir),
        image_size=32, batch_size=2, num_workers=0, num_samples=1, sample_size=32,
    )  # fmt: skip
    dm.prepare()
    assert dm.styles_skipped == 1 and dm.styles_excluded == 1  # broken.jpg; t0.png
    assert len(dm.style_files) == 4 and len(dm.style_sample_files) == 1
    assert not set(dm.style_sample_files) & set(dm.style_files)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["style"].shape == (2, 3, 32, 32)
    ds = dm.style_dataset()
    import random

    random.seed(0)
    draws = [ds.draw() for _ in range(400)]
    assert 0.4 < draws.count(extra) / len(draws) < 0.6  # style_extra_share
    assert dm.style_samples().shape == (1, 3, 32, 32)


def test_a_bf16_loss_vgg_leaves_the_predictor_inputs_in_fp32(
    compose, tiny_overrides, textures, tmp_path
):
    from stylenet.training.plans import make_plan

    base = random_bank(tmp_path / "base.pt", NAMES)
    cfg = compose(arbitrary_overrides(tiny_overrides, base, textures, 1), hydra=True)
    assert cfg.speed.vgg_dtype == "fp32"  # the experiment's own default
    plan = make_plan(cfg, [])
    full, half = plan.build_module(cfg), plan.build_module(cfg, vgg_dtype="bf16")
    assert next(half.loss.vgg.parameters()).dtype == torch.bfloat16
    styles = torch.rand(2, 3, 32, 32)
    (s32, g32), (s16, g16) = full.style_stats(styles), half.style_stats(styles)
    assert s16.dtype == torch.float32 and torch.equal(s16, s32)
    assert all(torch.equal(g16[k], g32[k]) for k in g32)
    # Neither VGG is saved.
    ckpt = {"state_dict": half.state_dict()}
    half.on_save_checkpoint(ckpt)
    assert ckpt["state_dict"] and not [k for k in ckpt["state_dict"] if "vgg" in k]


def test_an_encoder_starts_from_another_banks_predictor(
    compose, tiny_overrides, textures, tmp_path
):
    """``arbitrary.encoder_from``: the fast layout's predictor takes the standardisation and
    encoder of another network's trained predictor; its decoder still starts at its mean row.
    A predictor of other width, or a bank without one, is one error naming the option."""
    from stylenet.errors import OptionError
    from stylenet.training.plans import make_plan

    full = random_network(2)
    source = spread_predictor(full)
    torch.manual_seed(1)
    source.set_normalisation(torch.randn(8, source.stat_mean.numel()) * 3 + 1)
    payload = {"predictor": predictor_payload(source, 5, {"styles": "test"})}
    bank_with_predictor = export_inference_checkpoint(
        full, NAMES, tmp_path / "full.pt", extra=payload
    )
    fast = random_network(2, 4, 2, upsample="bilinear", res_block="separable", edge_kernel=5,
                          decoder="conv_resize")  # fmt: skip
    base = export_inference_checkpoint(fast, NAMES, tmp_path / "fast.pt")
    ov = arbitrary_overrides(tiny_overrides, base, textures, 1)
    # The shipped sizes: the bank_with_predictor fixture's predictor has the defaults.
    matched = [*ov, "arbitrary.hidden=512", "data.style_size=256"]
    cfg = compose([*matched, f"arbitrary.encoder_from={bank_with_predictor}"])
    module = make_plan(cfg, []).build_module(cfg)
    other = predictor_from_checkpoint(read_checkpoint(bank_with_predictor), full)
    mine = module.predictor
    assert bool(module.normalised)
    assert torch.equal(mine.stat_std, other.stat_std) and torch.equal(
        mine.stat_mean, other.stat_mean
    )
    for a, b in zip(mine.encoder.parameters(), other.encoder.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not mine.decoder.weight.any() and mine.fits(fast) and not other.fits(fast)
    stats = torch.randn(3, mine.stat_mean.numel())
    torch.testing.assert_close(mine.embed(stats), other.embed(stats))

    cfg = compose([*ov, f"arbitrary.encoder_from={bank_with_predictor}"])  # hidden 32 vs 512
    with pytest.raises(OptionError, match="arbitrary.encoder_from|hidden"):
        make_plan(cfg, []).build_module(cfg)
    cfg = compose([*matched, f"arbitrary.encoder_from={base}"])
    with pytest.raises(OptionError, match="no style predictor"):
        make_plan(cfg, []).build_module(cfg)


def anchored_bank(tmp_path: Path, textures: Path) -> Path:
    """A bank of two rows whose recorded training config names two of the textures as its
    paintings (what ``arbitrary.anchor_weight`` reads)."""
    paintings = {n: {"image": str(textures / f"t{i}.png")} for i, n in enumerate(NAMES)}
    return random_bank(tmp_path / "anchored.pt", NAMES, train_config={"style": paintings})


def painting_rows(module, bank: Path, textures: Path) -> torch.Tensor:
    """Distance of the exported predictor's rows for the bank's two paintings (whole, as a
    style image is read when stylizing) from the bank's trained rows, in units of their spread."""
    from stylenet.io.images import image_to_tensor, load_image, resize_long
    from stylenet.nn.predictor import bank_rows

    ckpt = read_checkpoint(bank)
    predictor = predictor_from_checkpoint(ckpt, module.net)
    views = [resize_long(image_to_tensor(load_image(textures / f"t{i}.png"))[None], 32)
             for i in range(len(NAMES))]  # fmt: skip
    with torch.no_grad():
        pred = torch.cat([predictor.vector(module.style_stats(v)[0]) for v in views])
    rows = bank_rows(module.net)
    return ((pred - rows) / rows.std(0).clamp_min(1e-6)).pow(2).mean(1)


def test_row_anchors_pull_the_banks_paintings_to_their_trained_rows(
    compose, tiny_overrides, textures, tmp_path
):
    """``arbitrary.anchor_weight``: the same run with the anchors predicts rows nearer to the
    trained ones for the bank's own paintings; the weight is recorded in the history."""
    from stylenet.training.plans import make_plan
    from stylenet.training.run import train

    base = anchored_bank(tmp_path, textures)
    distances = {}
    for weight in (0.0, 1e3):
        ov = arbitrary_overrides(tiny_overrides, base, textures, 30)
        ov = [o.replace(str(tmp_path), str(tmp_path / f"w{weight:g}"))
              if o.startswith(("export.dir", "+run_dir")) else o for o in ov]  # fmt: skip
        cfg = compose([*ov, f"arbitrary.anchor_weight={weight}"], hydra=True)
        res = train(cfg)
        module = make_plan(cfg, []).build_module(cfg).eval()
        distances[weight] = painting_rows(module, res.export_path, textures)
        last = read_checkpoint(res.export_path)["history"][-1]
        assert last.get("anchor_weight") == (weight or None), last
    # Both paintings are nearer their rows, by a wide margin.
    assert (distances[1e3] < 0.5 * distances[0.0]).all(), distances


def test_row_anchors_need_the_banks_paintings(compose, tiny_overrides, textures, tmp_path):
    from stylenet.errors import OptionError
    from stylenet.training.plans import make_plan

    # Paintings named by a config that points nowhere readable.
    missing = {n: {"image": str(tmp_path / f"gone_{n}.png")} for n in NAMES}
    base = random_bank(tmp_path / "b.pt", NAMES, train_config={"style": missing})
    cfg = compose([*arbitrary_overrides(tiny_overrides, base, textures, 1),
                   "arbitrary.anchor_weight=1"])  # fmt: skip
    with pytest.raises(OptionError, match="arbitrary.anchor_weight"):
        make_plan(cfg, []).build_module(cfg)
    cfg = compose([*arbitrary_overrides(tiny_overrides, anchored_bank(tmp_path, textures),
                                        textures, 1), "arbitrary.anchor_weight=-1"])  # fmt: skip
    with pytest.raises(OptionError, match=">= 0"):
        make_plan(cfg, []).build_module(cfg)


def test_a_predictor_carries_on_from_a_banks_trained_one(
    compose, tiny_overrides, textures, tmp_path
):
    """``arbitrary.init``: the whole trained predictor (standardisation, encoder, decoder) is the
    starting point; one that does not fit, a bank without one, or init with encoder_from is one
    error naming the option."""
    from stylenet.errors import OptionError
    from stylenet.training.plans import make_plan

    net = random_network(2)
    source = spread_predictor(net)
    source.set_normalisation(torch.randn(8, source.stat_mean.numel()) * 3 + 1)
    payload = {"predictor": predictor_payload(source, 5, {"styles": "test"})}
    bank = export_inference_checkpoint(net, NAMES, tmp_path / "bank.pt", extra=payload)
    ov = [*arbitrary_overrides(tiny_overrides, bank, textures, 1), "arbitrary.hidden=512",
          "data.style_size=256"]  # fmt: skip
    cfg = compose([*ov, f"arbitrary.init={bank}"])
    module = make_plan(cfg, []).build_module(cfg)
    assert bool(module.normalised)
    for k, v in source.state_dict().items():
        assert torch.equal(module.predictor.state_dict()[k], v), k
    stats = torch.randn(3, source.stat_mean.numel())
    torch.testing.assert_close(module.predictor.vector(stats), source.vector(stats))

    cfg = compose([*ov[:-2], f"arbitrary.init={bank}"])  # hidden 32 and style size 32
    with pytest.raises(OptionError, match="arbitrary.init.*(hidden|style_size)"):
        make_plan(cfg, []).build_module(cfg)
    plain = random_bank(tmp_path / "plain.pt", NAMES)
    cfg = compose([*ov, f"arbitrary.init={plain}"])
    with pytest.raises(OptionError, match="no style predictor"):
        make_plan(cfg, []).build_module(cfg)
    cfg = compose([*ov, f"arbitrary.init={bank}", f"arbitrary.encoder_from={bank}"])
    with pytest.raises(OptionError, match="not both"):
        make_plan(cfg, []).build_module(cfg)


def test_every_norm_weighs_alike_in_the_anchor_term(compose, tiny_overrides, textures, tmp_path):
    """One spread of error on the 3 channels of the output norm costs as much as one spread on
    every channel of the widest norm (a plain mean over parameters would make it ~1/1000th)."""
    from stylenet.training.plans import make_plan

    base = anchored_bank(tmp_path, textures)
    cfg = compose([*arbitrary_overrides(tiny_overrides, base, textures, 1),
                   "arbitrary.anchor_weight=1"])  # fmt: skip
    module = make_plan(cfg, []).build_module(cfg)
    module.build_anchors()
    targets = module.anchor_targets
    widths = list(module.predictor.config.channels)
    start = {i: sum(widths[:i]) for i in range(len(widths))}
    widest = max(range(len(widths)), key=widths.__getitem__)
    costs = {}
    for layer in (widest, len(widths) - 1):
        off = torch.zeros_like(targets)
        cols = slice(start[layer], start[layer] + widths[layer])  # that norm's gammas
        off[:, cols] = module.anchor_spread[cols]
        module.predictor.vector = lambda stats, off=off: targets + off
        costs[layer] = float(module.anchor_term())
    assert widths[-1] == 3 and widths[widest] > 3
    assert costs[widest] == pytest.approx(costs[len(widths) - 1], rel=1e-5)
    assert costs[widest] == pytest.approx(1 / (2 * len(widths)), rel=1e-5)
