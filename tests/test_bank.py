"""Growing a bank (affine-only and full fine-tunes) and managing its styles."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from stylenet.checkpoints.bank import merge, remove, rename, reorder
from stylenet.checkpoints.format import export_inference_checkpoint, load_network, read_checkpoint
from stylenet.cli.bank import main as bank_main
from stylenet.data.styles import load_style_image, specs_from_config
from stylenet.errors import BankError, CheckpointError, StylenetError
from stylenet.losses.perceptual import PerceptualLoss, VGGFeatures
from stylenet.nn.network import TransformerNet, random_network
from stylenet.training.grow import plan_finetune
from stylenet.training.run import train
from tests.conftest import random_bank

BASE_NAMES = ["starry_night", "night_cafe"]


@pytest.fixture
def base(tmp_path):
    p = tmp_path / "base.pt"
    export_inference_checkpoint(
        random_network(2), BASE_NAMES, p,
        train_config={"style": {n: {"image": f"{n}.jpg"} for n in BASE_NAMES}, "style_size": 48},
    )  # fmt: skip
    return p


def _ft(tiny_overrides, base, *extra):
    return [o for o in tiny_overrides if not o.startswith("model")] + [
        f"finetune.from={base}",
        *extra,
    ]


def _new_style_loss(net: TransformerNet, row: int, photos: torch.Tensor) -> float:
    """The training loss (random-weight VGG, as in the tiny runs) of ``row`` on fixed photos."""
    vgg = VGGFeatures(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights="random")
    loss = PerceptualLoss(vgg)
    spec = specs_from_config({"the_scream": {"image": "the_scream.jpg"}})[0]
    loss.set_style_targets([load_style_image(spec, 48)])
    with torch.no_grad():
        y = net(photos, net.one_hot(row, photos.shape[0]))
        return float(loss(y, photos, torch.zeros(photos.shape[0], dtype=torch.long))["loss"])


def test_affine_fine_tune_adds_a_row_and_leaves_the_base_untouched(
    compose, tiny_overrides, base, tmp_path
):
    overrides = _ft(tiny_overrides, base, "style=the_scream", "trainer.max_steps=12",
                    "finetune.affine_lr=0.05")  # fmt: skip
    res = train(compose(overrides))
    out = res.export_path
    assert out.name == "test.pt"  # name= given by the tiny overrides
    raw = torch.load(out, weights_only=True)
    assert raw["style_names"] == [*BASE_NAMES, "the_scream"]
    assert raw["model_args"]["num_styles"] == 3
    base_sd = torch.load(base, weights_only=True)["state_dict"]
    for k, v in raw["state_dict"].items():
        if k.endswith((".gamma", ".beta")):
            assert torch.equal(v[:2], base_sd[k]), k  # old rows bit-identical
        else:
            assert torch.equal(v, base_sd[k]), k  # shared weights bit-identical
    grown, _, _ = load_network(out)
    ref, _, _ = load_network(base)
    x = torch.rand(2, 3, 40, 36)
    for s in range(2):
        assert (grown(x, grown.one_hot(s, 2)) - ref(x, ref.one_hot(s, 2))).abs().max() == 0
    ev = raw["history"][-1]
    assert ev["event"] == "finetuned" and ev["added"] == ["the_scream"] and ev["mode"] == "affine"
    assert len(ev["base_sha256"]) == 64 and ev["steps"] == 12
    assert raw["style_thumbnails"][2].numel() > 100  # the new painting's thumbnail
    # the new style's loss fell from the mean-of-rows initialisation
    from stylenet.training.grow import grow_network

    plan = plan_finetune(base, specs_from_config({"the_scream": {"image": "the_scream.jpg"}}))
    start = grow_network(plan).eval()
    photos = torch.stack([torch.rand(3, 32, 32) for _ in range(4)])
    assert _new_style_loss(grown, 2, photos) < _new_style_loss(start, 2, photos)


def test_default_name_is_base_plus_new_styles(compose, base):
    cfg = compose([f"finetune.from={base}", "style=[the_scream,cafe_terrace]"], hydra=True)
    assert cfg.name == "base+the_scream+cafe_terrace"
    assert cfg.trainer.max_steps == 150  # finetune.max_steps on a CPU


def test_errors_before_training(compose, tiny_overrides, base, tmp_path, monkeypatch):

    def boom(*a, **k):
        raise AssertionError("a model was built before the inputs were checked")

    monkeypatch.setattr("stylenet.training.plans.build_module", boom)
    with pytest.raises(BankError, match="already has a style named 'night_cafe'"):
        train(compose(_ft(tiny_overrides, base, "style=night_cafe")))
    with pytest.raises(CheckpointError, match="does not exist"):
        train(compose(_ft(tiny_overrides, tmp_path / "nope.pt", "style=the_scream")))
    lightning = tmp_path / "last.ckpt"
    torch.save({"pytorch-lightning_version": "2.6", "state_dict": {}}, lightning)
    with pytest.raises(CheckpointError, match="Lightning training checkpoint"):
        train(compose(_ft(tiny_overrides, lightning, "style=the_scream")))
    with pytest.raises(StylenetError, match="gone.jpg"):
        train(compose(_ft(tiny_overrides, base, "style=the_scream",
                          f"style.the_scream.image={tmp_path / 'gone.jpg'}")))  # fmt: skip
    specs = specs_from_config({"x": {"image": "the_scream.jpg"}})
    with pytest.raises(BankError, match="base_channels=8, but model.base_channels=32"):
        plan_finetune(base, specs, model_overrides={"base_channels": 32, "num_res_blocks": 1})
    with pytest.raises(StylenetError, match="finetune.mode"):
        plan_finetune(base, specs, mode="some")


class CropSizes(pl.Callback):
    """The spatial sizes of the training batches a run saw."""

    def __init__(self) -> None:
        self.sizes: set[tuple[int, int]] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.sizes.add(tuple(batch["image"].shape[-2:]))


def test_grown_rows_train_as_the_base_rows_did(compose, tiny_overrides, tmp_path):
    """finetune.match_base=true: new rows take the crop size, painting size and loss weights the
    base records; by default they keep the run's own. The grown file records every style's
    painting size either way."""
    from stylenet.training.plans import make_plan

    recorded_loss = {"content_weight": 2.0e4, "style_weight": 3.0e9, "tv_weight": 0.0,
                     "style_layers": {"relu1_2": 1.0, "relu2_2": 0.5}}  # fmt: skip
    base = tmp_path / "base.pt"
    export_inference_checkpoint(
        random_network(2), BASE_NAMES, base,
        train_config={"style": {n: {"image": f"{n}.jpg"} for n in BASE_NAMES}, "style_size": 40,
                      "loss": recorded_loss, "data": {"image_size": 24}},
    )  # fmt: skip
    ov = _ft(tiny_overrides, base, "style=the_scream", "trainer.max_steps=2",
             "finetune.match_base=true")  # fmt: skip
    cfg = compose(ov)
    run_weight, run_colour = cfg.loss.style_weight, cfg.loss.colour_weight
    assert cfg.style_size == 48 and run_weight != 3.0e9  # the run's own
    specs = specs_from_config(cfg.style)
    module = make_plan(cfg, specs).build_module(cfg)
    assert module.hparams.style_size == 40
    assert module.hparams.style_weight == 3.0e9 and module.hparams.content_weight == 2.0e4
    assert dict(module.hparams.style_layers) == recorded_loss["style_layers"]
    # The record predates the colour term: its rows were trained without it.
    assert module.hparams.colour_weight == 0.0 < run_colour

    crops = CropSizes()
    raw = torch.load(train(compose(ov), extra_callbacks=[crops]).export_path, weights_only=True)
    assert crops.sizes == {(24, 24)}  # the base's crops, not the run's 32 px
    tc = raw["train_config"]
    assert tc["style_size"] == 40 and tc["loss"]["style_weight"] == 3.0e9
    assert tc["data"]["image_size"] == 24
    assert {n: e["size"] for n, e in tc["style"].items()} == {
        "starry_night": 40, "night_cafe": 40, "the_scream": 40}  # fmt: skip

    own = [*ov[:-1], "name=own", "ckpt_path=null"]  # the default: the run's own values
    cfg = compose(own)
    module = make_plan(cfg, specs).build_module(cfg)
    assert module.hparams.style_size == 48 and module.hparams.style_weight == run_weight
    assert module.hparams.colour_weight == run_colour
    crops = CropSizes()
    tc = torch.load(train(compose(own), extra_callbacks=[crops]).export_path,
                    weights_only=True)["train_config"]  # fmt: skip
    assert crops.sizes == {(32, 32)}
    assert {n: e["size"] for n, e in tc["style"].items()} == {
        "starry_night": 40, "night_cafe": 40, "the_scream": 48}  # fmt: skip


def test_replace_retrains_a_row(compose, tiny_overrides, base):
    res = train(compose(_ft(tiny_overrides, base, "style=night_cafe", "finetune.replace=true")))
    raw = torch.load(res.export_path, weights_only=True)
    assert raw["style_names"] == BASE_NAMES
    base_sd = torch.load(base, weights_only=True)["state_dict"]
    assert torch.equal(raw["state_dict"]["out_norm.gamma"][0], base_sd["out_norm.gamma"][0])
    assert not torch.equal(raw["state_dict"]["out_norm.gamma"][1], base_sd["out_norm.gamma"][1])
    assert raw["history"][-1]["replaced"] == ["night_cafe"]


def test_full_fine_tune_replays_old_styles(compose, tiny_overrides, base, monkeypatch):
    from stylenet.training.module import StyleTransferModule

    seen = []
    original = StyleTransferModule.draw_styles

    def spy(self, b, device):
        k = original(self, b, device)
        seen.extend(self._row_index[k].tolist())
        return k

    monkeypatch.setattr(StyleTransferModule, "draw_styles", spy)
    res = train(compose(_ft(tiny_overrides, base, "style=the_scream", "finetune.mode=all",
                            "trainer.max_steps=10")))  # fmt: skip
    raw = torch.load(res.export_path, weights_only=True)
    base_sd = torch.load(base, weights_only=True)["state_dict"]
    assert not torch.equal(raw["state_dict"]["down.0.conv.weight"], base_sd["down.0.conv.weight"])
    assert set(seen) == {0, 1, 2}  # old rows replayed alongside the new one


def test_interrupted_fine_tune_resumes(compose, tiny_overrides, base, monkeypatch):
    from stylenet.errors import Interrupted
    from stylenet.training.module import StyleTransferModule

    original = StyleTransferModule.training_step

    def stop(self, batch, idx):
        if self.global_step == 2:
            raise KeyboardInterrupt
        return original(self, batch, idx)

    monkeypatch.setattr(StyleTransferModule, "training_step", stop)
    overrides = _ft(tiny_overrides, base, "style=the_scream", "trainer.max_steps=4")
    with pytest.raises(Interrupted, match="resume from step 2"):
        train(compose(overrides))
    monkeypatch.setattr(StyleTransferModule, "training_step", original)
    res = train(compose(overrides))
    assert res.global_step == 4
    assert read_checkpoint(res.export_path)["style_names"] == [*BASE_NAMES, "the_scream"]


# ----------------------------------------------------------------------------- management


def _outputs(path, names):
    net, got, _ = load_network(path)
    x = torch.rand(1, 3, 36, 40, generator=torch.Generator().manual_seed(1))
    return {n: net(x, net.one_hot(got.index(n))) for n in names}


def test_remove_rename_reorder_keep_every_output(base, tmp_path, capsys):
    before = _outputs(base, BASE_NAMES)
    ck = read_checkpoint(base)
    r = reorder(ck, ["night_cafe", "starry_night"])
    assert r["style_names"] == ["night_cafe", "starry_night"]
    out = tmp_path / "r.pt"
    torch.save(r, out)
    after = _outputs(out, BASE_NAMES)
    assert all(torch.equal(before[n], after[n]) for n in BASE_NAMES)
    gone = remove(ck, ["night_cafe"])
    torch.save(gone, out)
    assert torch.equal(_outputs(out, ["starry_night"])["starry_night"], before["starry_night"])
    assert rename(ck, "1", "cafe")["style_names"] == ["starry_night", "cafe"]
    with pytest.raises(BankError, match="already has"):
        rename(ck, "starry_night", "night_cafe")
    with pytest.raises(BankError, match="not be a number"):
        rename(ck, "starry_night", "12")
    with pytest.raises(BankError, match="empty bank"):
        remove(ck, BASE_NAMES)
    with pytest.raises(BankError, match="missing: night_cafe"):
        reorder(ck, ["starry_night"])
    assert [e["event"] for e in r["history"]] == ["reordered"]


def test_merge_only_with_identical_shared_weights(base, compose, tiny_overrides, tmp_path):
    other = tmp_path / "other.pt"
    random_bank(other, ["the_scream"], seed=5)
    with pytest.raises(BankError, match="shared weights differ"):
        merge(read_checkpoint(base), read_checkpoint(other))
    # two affine fine-tunes of one base share their weights: they merge
    a = train(compose(_ft(tiny_overrides, base, "style=the_scream", "name=a",
                          f"++run_dir={tmp_path / 'ra'}")))  # fmt: skip
    b = train(compose(_ft(tiny_overrides, base, "style=cafe_terrace", "name=b",
                          f"++run_dir={tmp_path / 'rb'}")))  # fmt: skip
    ca = remove(read_checkpoint(a.export_path), BASE_NAMES)
    both = merge(read_checkpoint(b.export_path), ca)
    assert both["style_names"] == [*BASE_NAMES, "cafe_terrace", "the_scream"]
    out = tmp_path / "both.pt"
    torch.save(both, out)
    merged = _outputs(out, ["the_scream", "cafe_terrace", "starry_night"])
    assert torch.equal(merged["the_scream"], _outputs(a.export_path, ["the_scream"])["the_scream"])
    assert torch.equal(
        merged["cafe_terrace"], _outputs(b.export_path, ["cafe_terrace"])["cafe_terrace"]
    )
    with pytest.raises(BankError, match="both banks have styles named"):
        merge(read_checkpoint(base), read_checkpoint(base))


def test_bank_command(base, tmp_path, capsys):
    assert bank_main(["list", str(base)]) == 0
    assert capsys.readouterr().out.split()[:4] == ["0", "starry_night", "1", "night_cafe"]
    assert bank_main(["rename", str(base), "night_cafe", "cafe"]) == 1
    assert "say where the result goes" in capsys.readouterr().err
    out = tmp_path / "renamed.pt"
    assert bank_main(["rename", str(base), "night_cafe", "cafe", "-o", str(out)]) == 0
    assert read_checkpoint(out)["style_names"] == ["starry_night", "cafe"]
    assert bank_main(["rename", str(base), "night_cafe", "x", "-o", str(out)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    before = base.read_bytes()
    assert bank_main(["remove", str(base), "0", "--in-place"]) == 0
    assert read_checkpoint(base)["style_names"] == ["night_cafe"]
    assert base.with_suffix(".pt.bak").read_bytes() == before
    assert bank_main(["reorder", str(base), "nope", "-o", str(tmp_path / "x.pt")]) == 1
    assert "unknown style 'nope'" in capsys.readouterr().err


def test_thumbnails_are_stored_and_extractable(compose, tiny_overrides, tmp_path, photo_dir):
    res = train(compose(tiny_overrides + ["style=[starry_night,the_scream]"]))
    jpg = tmp_path / "t.jpg"
    assert bank_main(["thumbnail", str(res.export_path), "the_scream", "-o", str(jpg)]) == 0
    from PIL import Image

    im = Image.open(jpg)
    assert im.format == "JPEG" and max(im.size) == 160
    spread = max(hi - lo for lo, hi in im.convert("RGB").getextrema())
    assert spread > 32, "the thumbnail is flat, not the painting"
