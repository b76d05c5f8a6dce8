"""The CPU-class network (``model=fast``), its normalisation statistics and distillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from stylenet.nn.network import random_network
from stylenet.nn.norm import instance_stats
from tests.conftest import make_photo, random_bank

FAST = {"res_block": "separable", "edge_kernel": 5, "decoder": "conv_resize"}
HYBRID = {**FAST, "decoder": "hybrid", "upsample": "bilinear"}
SHUFFLE = {**FAST, "decoder": "conv_shuffle", "upsample": "bilinear"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_instance_stats_match_float64(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    # An offset mean is where a one-pass E[x^2] - E[x]^2 form loses its digits.
    x = (torch.randn(2, 3, 17, 23, dtype=torch.float64) * 0.5 + 40.0).to(dtype)
    mean, var = instance_stats(x)
    ref_var, ref_mean = torch.var_mean(x.double(), dim=(2, 3), keepdim=True, unbiased=False)
    assert mean.dtype == var.dtype == torch.float32
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-4, atol=1e-6)


def test_fast_config_is_small(compose) -> None:
    from stylenet.nn.network import build_model

    net = build_model({**compose(["model=fast"]).model, "num_styles": 10})
    # The budget: at most 20k multiply-adds per output pixel.
    assert net.macs_per_pixel() <= 20_000
    full = build_model({**compose([]).model, "num_styles": 10})
    assert net.macs_per_pixel() * 10 < full.macs_per_pixel()


@pytest.mark.parametrize(
    "args", [{}, FAST, HYBRID, SHUFFLE], ids=["conv", "fast", "hybrid", "shuffle"]
)
def test_mixes_behave_alike(args: dict) -> None:
    net = random_network(3, 8, 2, **args)
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        y0 = net(x, net.one_hot(0))
        y1 = net(x, net.one_hot(1))
        one_hot = torch.tensor([[1.0, 0.0, 0.0]])
        assert y0.shape == x.shape
        torch.testing.assert_close(net(x, one_hot), y0)
        # A constant share map is the same blend as the row mix.
        half = torch.tensor([[0.5, 0.5, 0.0]])
        const = half[:, :, None, None].expand(1, 3, 40, 36)
        torch.testing.assert_close(net(x, const), net(x, half), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(y0, y1)


@pytest.mark.parametrize("args", [FAST, HYBRID, SHUFFLE], ids=["fast", "hybrid", "shuffle"])
def test_fast_onnx_matches_eager(tmp_path: Path, args: dict) -> None:
    pytest.importorskip("onnxruntime")
    from stylenet.checkpoints.export import check_onnx, export_onnx

    net = random_network(2, 8, 1, **args)
    path = tmp_path / "fast.onnx"
    export_onnx(net, path)
    assert check_onnx(path, net) < 1e-4


def test_onnx_native_instance_norm_matches_eager(tmp_path: Path) -> None:
    """The export with ONNX's InstanceNormalization op (measured against the explicit form by
    the onnx-instance-norm study) computes the same image, and leaves the network as it was."""
    pytest.importorskip("onnxruntime")
    import onnx

    from stylenet.checkpoints.export import check_onnx, export_onnx

    net = random_network(2, 8, 1, **FAST)
    path = export_onnx(net, tmp_path / "native.onnx", native_norm=True)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("InstanceNormalization") == len(net.norms())
    assert check_onnx(path, net) < 1e-4
    plain = export_onnx(net, tmp_path / "plain.onnx")
    assert "InstanceNormalization" not in [n.op_type for n in onnx.load(str(plain)).graph.node]


def test_hybrid_decoder_runs_its_last_conv_at_full_resolution() -> None:
    """The same weights as conv_resize, but the last decoder conv sees the full-resolution
    resize: its multiply-adds per pixel grow by 3/4 of that conv's conv_resize count."""
    a = random_network(2, 8, 1, **FAST)
    b = random_network(2, 8, 1, **HYBRID)
    b.load_state_dict(a.state_dict())
    last = a.up[-1].conv
    k = last.kernel_size[0] * last.kernel_size[1] * last.in_channels * last.out_channels
    assert b.macs_per_pixel() - a.macs_per_pixel() == pytest.approx(k * (1 - 1 / 4))
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        assert not torch.allclose(a(x, a.one_hot(0)), b(x, b.one_hot(0)))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("kernel", [3, 5, 9])
def test_shuffle_out_weights_fold_the_resize_into_the_conv(mode: str, kernel: int) -> None:
    """A 2x resize then a conv equals the folded conv at half resolution then a pixel shuffle,
    away from the border (where the two pad differently)."""
    import torch.nn.functional as F

    from stylenet.nn.network import shuffle_out_weights

    torch.manual_seed(0)
    w, b = torch.randn(3, 6, kernel, kernel), torch.randn(3)
    x = torch.randn(1, 6, 20, 24)
    kw = {} if mode == "nearest" else {"align_corners": False}
    ref = F.conv2d(F.interpolate(x, scale_factor=2.0, mode=mode, **kw), w, b, padding=kernel // 2)
    fw, fb = shuffle_out_weights(w, b, mode)
    assert fw.shape == (12, 6, kernel, kernel) and fb.shape == (12,)
    got = F.pixel_shuffle(F.conv2d(x, fw, fb, padding=kernel // 2), 2)
    m = 2 * kernel
    torch.testing.assert_close(got[..., m:-m, m:-m], ref[..., m:-m, m:-m], rtol=1e-4, atol=1e-4)


def test_shuffle_decoder_starts_as_the_conv_resize_student(tmp_path: Path) -> None:
    """distill.init of a conv_resize student into a conv_shuffle run: the same multiply-adds, and
    the same images but for a thin border, where a random conv_shuffle network differs."""
    from stylenet.checkpoints.format import export_inference_checkpoint
    from stylenet.training.distill import student_init

    a = random_network(2, 8, 1, seed=3, **{**FAST, "upsample": "bilinear"})
    path = tmp_path / "student.pt"
    export_inference_checkpoint(a, ["a", "b"], path)
    b = random_network(2, 8, 1, seed=4, **SHUFFLE)
    assert b.macs_per_pixel() == a.macs_per_pixel()
    x = torch.rand(1, 3, 96, 80)
    with torch.no_grad():
        far = (a(x, a.one_hot(1)) - b(x, b.one_hot(1))).abs()[..., 8:-8, 8:-8].mean()
        b.load_state_dict(student_init(str(path), ["a", "b"], b))
        gap = (a(x, a.one_hot(1)) - b(x, b.one_hot(1))).abs()
    assert gap[..., 8:-8, 8:-8].max() < 1e-2 < far


@pytest.mark.parametrize("block", ["separable", "conv"])
def test_wider_trunk_starts_as_the_narrower_student(tmp_path: Path, block: str) -> None:
    """distill.init of a student into a run with a wider trunk (model.trunk_channels): the same
    images, though the new channels are live (they read the old ones and get gradients)."""
    from stylenet.checkpoints.format import export_inference_checkpoint
    from stylenet.errors import TrainingError
    from stylenet.nn.network import build_model
    from stylenet.training.distill import student_init

    args = {**FAST, "res_block": block}
    a = random_network(2, 8, 2, seed=3, **args)
    path = tmp_path / "student.pt"
    export_inference_checkpoint(a, ["a", "b"], path)
    b = random_network(2, 8, 2, seed=4, trunk_channels=48, **args)
    assert b.res_conv[0](torch.zeros(1, 48, 8, 8)).shape[1] == 48
    assert b.macs_per_pixel() > a.macs_per_pixel()
    x = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        assert not torch.allclose(a(x, a.one_hot([0, 1])), b(x, b.one_hot([0, 1])), atol=1e-3)
        b.load_state_dict(student_init(str(path), ["a", "b"], b))
        torch.testing.assert_close(b(x, b.one_hot([0, 1])), a(x, a.one_hot([0, 1])))
    # The new channels read the old ones (they are not dead weights) and the output gets a
    # gradient through the zero weights that read them.
    assert b.down[2].conv.weight[32:].abs().sum() > 0
    y = b(x, b.one_hot([0, 1]))
    y.square().mean().backward()
    assert b.up[0].conv.weight.grad[:, 32:].abs().sum() > 0
    # A student of other base channels does not fit.
    c = build_model({**args, "num_styles": 2, "base_channels": 4, "num_res_blocks": 2,
                     "trunk_channels": 48})  # fmt: skip
    with pytest.raises(TrainingError, match="does not fit model"):
        student_init(str(path), ["a", "b"], c)


class TeacherGap(pl.Callback):
    """The distance between student and teacher on fixed images, at fit start and end: through
    the loss's VGG (content and Gram terms against the teacher's output, at the loss's weights:
    what the default run minimises), and in pixels (mean L1)."""

    def __init__(self, photos: list[Path]) -> None:
        from stylenet.io.images import image_to_tensor, load_image

        # Photos like the training ones (smooth), not noise: what the student learns on.
        self.x = torch.stack([image_to_tensor(load_image(p))[:, :32, :32] for p in photos])
        self.gaps: list[float] = []
        self.l1: list[float] = []

    @torch.no_grad()
    def measure(self, module) -> None:  # noqa: ANN001
        x = self.x.to(module.device)
        k = torch.tensor([0, 1], device=module.device)
        t = module.distill_terms(x, k)
        loss = module.loss
        self.gaps.append(
            float(
                loss.content_weight * t["teacher_content"] + loss.style_weight * t["teacher_style"]
            )
        )
        self.l1.append(float(t["pixel_l1"]))

    def on_fit_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.measure(pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.measure(pl_module)


def test_distill_lowers_l1_and_exports(tmp_path: Path, tiny_overrides, compose) -> None:
    from PIL import Image

    from stylenet.checkpoints.format import load_network
    from stylenet.training.run import train

    thumbs = [torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8) for _ in range(2)]
    teacher = random_bank(tmp_path / "teacher.pt", ["a", "b"], thumbnails=thumbs)
    ov = [o for o in tiny_overrides if not o.startswith("model")]
    ov += ["experiment=distill", f"distill.teacher={teacher}", "model.base_channels=8",
           "model.num_res_blocks=1", "trainer.max_steps=100", "samples.every_n_steps=100",
           "optim.lr=1e-2"]  # fmt: skip
    gap = TeacherGap([make_photo(tmp_path / f"p{i}.png", seed=40 + i) for i in range(2)])
    result = train(compose(ov, hydra=True), extra_callbacks=[gap])
    # The student moved towards the teacher (a random one, through a random VGG).
    assert gap.gaps[1] < 0.85 * gap.gaps[0], gap.gaps
    # With the pixel term off (the default) the L1 distance is only reported.
    assert gap.l1[0] > 0 and gap.l1[1] > 0
    assert result.metrics["train/pixel_l1"] > 0
    ck = torch.load(result.export_path, weights_only=True)
    assert ck["style_names"] == ["a", "b"]
    assert ck["history"][-1]["event"] == "distilled"
    # The random teacher's paintings are not on disk, so only its outputs were learned from.
    assert ck["history"][-1]["loss_weights"] == {"teacher": 1.0, "usual": 0.0, "pixel": 0.0}
    assert ck["model_args"]["res_block"] == "separable"
    assert all(torch.equal(a, b) for a, b in zip(ck["style_thumbnails"], thumbs, strict=True))
    net, names, _ = load_network(result.export_path)
    assert names == ["a", "b"] and net.config.res_block == "separable"
    assert not [k for k in ck["state_dict"] if k.startswith(("teacher.", "loss."))]

    # The sample grid: each photo's row of student outputs, then a row starting blank (the
    # teacher's outputs), three cells across (the photo or blank, then two styles).
    grid = torch.from_numpy(np.asarray(Image.open(result.sample_grid).convert("L"), np.float32))
    cell = (grid.shape[1] - 2) // 3
    rows = (grid.shape[0] - 2) // cell
    assert rows >= 2 and rows % 2 == 0 and (grid.shape[0] - 2) % cell == 0
    blank = grid[cell + 2 : 2 * cell, 2:cell]
    assert float(blank.min()) == 255.0 and float(grid[2:cell, 2:cell].std()) > 0

    # An interrupted or extended run resumes from its last checkpoint (no teacher inside it).
    again = train(compose([*ov, "trainer.max_steps=106"], hydra=True))
    assert again.global_step == 106
    assert torch.load(again.export_path, weights_only=True)["history"][-1]["steps"] == 106


def test_distill_init_starts_from_an_exported_student(
    tmp_path: Path, tiny_overrides, compose
) -> None:
    from stylenet.checkpoints.format import export_inference_checkpoint, read_checkpoint
    from stylenet.errors import TrainingError
    from stylenet.io.files import sha256_file
    from stylenet.training.plans import make_plan

    # The teacher's recorded painting size and loss weights are the run's (and its record's).
    recorded = {"style_size": 40, "loss": {"style_weight": 3.0e9, "content_weight": 2.0e4}}
    teacher = random_bank(tmp_path / "teacher.pt", ["a", "b"], train_config=recorded,
                          history=[{"event": "trained", "steps": 9}])  # fmt: skip
    student = random_network(2, 8, 1, seed=7, **FAST)
    init = tmp_path / "student.pt"
    before = [{"event": "distilled", "steps": 5, "teacher": "t.pt"},
              {"event": "finetuned", "mode": "affine", "steps": 4}]  # fmt: skip
    theirs = read_checkpoint(teacher)["history"]
    export_inference_checkpoint(student, ["a", "b"], init, history=[*theirs, *before])
    ov = [o for o in tiny_overrides if not o.startswith("model")]
    ov += ["experiment=distill", f"distill.teacher={teacher}", "model.base_channels=8",
           "model.num_res_blocks=1", f"distill.init={init}"]  # fmt: skip
    cfg = compose(ov, hydra=True)
    assert cfg.style_size != 40 and cfg.loss.style_weight != 3.0e9
    module = make_plan(cfg, []).build_module(cfg)
    assert cfg.style_size == 40 and cfg.loss.style_weight == 3.0e9
    assert module.hparams.style_size == 40 and module.hparams.style_weight == 3.0e9
    assert module.hparams.content_weight == 2.0e4
    assert module.hparams.colour_weight == 0.0  # the record predates the colour term
    for k, v in student.state_dict().items():
        assert torch.equal(module.net.state_dict()[k], v), k
    # The export's history: the teacher's, what the starting student's file added to it (its
    # distillation, its rows fine-tuned), then this run.
    plan = make_plan(cfg, [])
    _, history = plan.export_parts(plan.build_module(cfg), 3, {})
    assert theirs and history[:-1] == [*theirs, *before] and history[-1]["init"] == str(init)
    assert history[-1]["init_sha256"] == sha256_file(init) and history[-1]["steps"] == 3
    # A run that leaves the teacher's term out says so in its record.
    cfg = compose([*ov, "distill.teacher_weight=0", "distill.pixel_weight=0.5"], hydra=True)
    plan = make_plan(cfg, [])
    _, history = plan.export_parts(plan.build_module(cfg), 3, {})
    assert history[-1]["loss_weights"] == {"teacher": 0.0, "usual": 0.0, "pixel": 0.5}

    # A student of other styles, or of another shape, is one line naming the mismatch.
    export_inference_checkpoint(student, ["b", "a"], tmp_path / "swapped.pt")
    cfg = compose([*ov, f"distill.init={tmp_path / 'swapped.pt'}"], hydra=True)
    with pytest.raises(TrainingError, match="teacher's styles, in order"):
        make_plan(cfg, []).build_module(cfg)
    cfg = compose([*ov, "model.base_channels=4"], hydra=True)
    with pytest.raises(TrainingError, match="does not fit model") as e:
        make_plan(cfg, []).build_module(cfg)
    assert "\n" not in str(e.value)


def test_distill_usual_loss_has_the_colour_term(tmp_path: Path) -> None:
    # The usual loss (the teacher's paintings) carries the colour term when it is on, as in
    # training, and the run's total counts it at its weight; without a weight it is absent.
    from stylenet.training.distill import DistillModule

    paintings = {n: {"image": str(make_photo(tmp_path / f"{n}.png", seed=i))}
                 for i, n in enumerate(["a", "b"])}  # fmt: skip
    teacher = random_bank(tmp_path / "teacher.pt", ["a", "b"],
                          train_config={"style": paintings, "style_size": 32})  # fmt: skip
    x = torch.stack([torch.rand(3, 32, 32), torch.rand(3, 32, 32)])
    k = torch.tensor([0, 1])
    terms = {}
    for w in (0.0, 1e3):
        torch.manual_seed(0)
        module = DistillModule(str(teacher), model={"base_channels": 8, "num_res_blocks": 1, **FAST},
                               colour_weight=w, vgg_weights="random", style_size=32)  # fmt: skip
        with torch.no_grad():
            terms[w] = module.distill_terms(x, k)
    assert "colour_loss" not in terms[0.0] and terms[1e3]["colour_loss"] > 0
    torch.testing.assert_close(
        terms[1e3]["loss"], terms[0.0]["loss"] + 1e3 * terms[1e3]["colour_loss"]
    )


def test_distill_on_the_usual_loss_alone_skips_the_teacher(tmp_path: Path) -> None:
    # distill.teacher_weight=0 (and no pixel term): the student trains on the teacher's own loss
    # without running the teacher; every weight 0 is one line.
    from stylenet.errors import TrainingError
    from stylenet.training.distill import DistillModule

    paintings = {n: {"image": str(make_photo(tmp_path / f"{n}.png", seed=i))}
                 for i, n in enumerate(["a", "b"])}  # fmt: skip
    teacher = random_bank(tmp_path / "teacher.pt", ["a", "b"],
                          train_config={"style": paintings, "style_size": 32})  # fmt: skip
    model = {"base_channels": 8, "num_res_blocks": 1, **FAST}
    module = DistillModule(str(teacher), model=model, teacher_weight=0.0, vgg_weights="random",
                           style_size=32)  # fmt: skip
    calls = []
    module.teacher.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        terms = module.distill_terms(x, torch.tensor([0, 1]))
    assert not calls and "teacher_style" not in terms
    module.hparams.teacher_weight = 1.0
    with torch.no_grad():
        both = module.distill_terms(x, torch.tensor([0, 1]))
    assert calls
    # The same student output and usual terms; the teacher's term only adds.
    for name in ("content_loss", "style_loss"):
        torch.testing.assert_close(terms[name], both[name])
    assert 0 < terms["loss"] < both["loss"]
    with pytest.raises(TrainingError, match="all 0") as e:
        DistillModule(str(teacher), model=model, teacher_weight=0.0, usual_weight=0.0,
                      vgg_weights="random", style_size=32)  # fmt: skip
    assert "\n" not in str(e.value)


def test_distill_style_shares_draw_styles_unevenly(tmp_path: Path, tiny_overrides, compose) -> None:
    # distill.style_shares: the styles of a step are drawn by the given shares (a style not
    # named weighs 1), the export records the shares, and bad shares are one line each.
    from stylenet.errors import TrainingError
    from stylenet.training.distill import style_sampling
    from stylenet.training.plans import make_plan

    names = ["a", "b", "c"]
    assert style_sampling(None, names) is None and style_sampling({}, names) is None
    torch.testing.assert_close(
        style_sampling({"a": 2, "c": 0}, names), torch.tensor([2 / 3, 1 / 3, 0])
    )
    for bad, match in [({"d": 1}, r"names \['d'\], not styles of the teacher \(its styles: a, b, c\)"),
                       ({"a": -1}, "a share is a number >= 0"),
                       ({"a": float("nan")}, "a share is a number >= 0"),
                       ({"a": 0, "b": 0, "c": 0}, "all 0")]:  # fmt: skip
        with pytest.raises(TrainingError, match=match) as e:
            style_sampling(bad, names)
        assert "\n" not in str(e.value)

    teacher = random_bank(tmp_path / "teacher.pt", ["a", "b"])
    ov = [o for o in tiny_overrides if not o.startswith("model")]
    ov += ["experiment=distill", f"distill.teacher={teacher}", "model.base_channels=8",
           "model.num_res_blocks=1"]  # fmt: skip
    cfg = compose([*ov, "distill.style_shares={a:0}"], hydra=True)
    plan = make_plan(cfg, [])
    module = plan.build_module(cfg)
    drawn = []

    def record(x, k):  # noqa: ANN001, ANN202
        drawn.append(k)
        raise StopIteration

    module.distill_terms = record
    for _ in range(20):
        with pytest.raises(StopIteration):
            module.training_step({"image": torch.rand(4, 3, 16, 16)}, 0)
    assert torch.cat(drawn).tolist() == [1] * 80
    _, history = plan.export_parts(module, 3, {})
    assert history[-1]["style_shares"] == {"a": 0.0, "b": 1.0}
    # Without shares every style is drawn, and the record has no shares.
    cfg = compose(ov, hydra=True)
    plan = make_plan(cfg, [])
    module = plan.build_module(cfg)
    drawn.clear()
    module.distill_terms = record
    for _ in range(20):
        with pytest.raises(StopIteration):
            module.training_step({"image": torch.rand(4, 3, 16, 16)}, 0)
    assert set(torch.cat(drawn).tolist()) == {0, 1}
    assert "style_shares" not in plan.export_parts(module, 3, {})[1][-1]
    # A value that is not a mapping by name is one line.
    cfg = compose([*ov, "distill.style_shares=3"], hydra=True)
    with pytest.raises(TrainingError, match="give shares by style name") as e:
        make_plan(cfg, []).build_module(cfg)
    assert "\n" not in str(e.value)
