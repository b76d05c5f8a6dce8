"""The benchmark and evaluation code paths on tiny inputs (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylenet.bench.baseline import NaiveTransformerNet
from stylenet.bench.inference import bench_inference
from stylenet.bench.report import render_markdown, write_results
from stylenet.bench.training import bench_training
from stylenet.evaluation.harness import EvalConfig, evaluate_checkpoint
from stylenet.evaluation.measures import checkerboard_score, ssim_luma
from stylenet.evaluation.report import write_report
from stylenet.nn.network import TransformerNet
from stylenet.runtime.machine import environment
from tests.conftest import make_photo, random_bank


def test_naive_baseline_has_the_same_architecture():
    naive = NaiveTransformerNet(32, 5)
    ours = TransformerNet(1, 32, 5)
    conv_naive = sum(p.numel() for n, p in naive.named_parameters() if "conv" in n)
    conv_ours = sum(p.numel() for n, p in ours.named_parameters() if "conv" in n)
    assert conv_naive == conv_ours
    assert naive(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_bench_inference_and_report(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    # the compiled rows' code path, without paying for a compilation (the equality of compiled
    # and eager outputs is tests/test_compile.py's)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    rows = bench_inference(
        [32],
        "cpu",
        repeats=1,
        tiled_size=80,
        tile=48,
        tile_overlap=8,
        peer=False,
        log=lambda s: None,
    )
    impls = {r["impl"].split(" (")[0] for r in rows}
    assert {
        "naive",
        "stylenet full",
        "stylenet narrow",
        "stylenet fast",
        "stylenet full ONNX",
        "stylenet fast ONNX",
        "stylenet tiled 48",
        "stylenet full compiled",
        "stylenet narrow compiled",
        "stylenet fast compiled",
    } <= impls
    assert all(r["first_call_s"] >= 0 for r in rows if "compiled" in r["impl"])
    assert {r["model"] for r in rows} >= {"full", "narrow", "fast"}
    fast = next(r for r in rows if r["impl"].startswith("stylenet fast ("))
    assert fast["params"] < next(r for r in rows if r["model"] == "narrow")["params"]
    for r in rows:
        assert r["ms_per_image"] > 0 and r["megapixels_per_s"] > 0
    tr = bench_training(32, batch=2, steps=1, vgg_weights="random", log=lambda s: None)
    assert [r["impl"].split(" (")[0] for r in tr][:3] == [
        "data loading",
        "naive loop",
        "stylenet step",
    ]
    res = {"env": environment(), "inference": rows, "training": tr, "notes": "tiny"}
    path = write_results(res, tmp_path / "results")
    assert json.loads(path.read_text())["inference"][0]["impl"].startswith("naive")
    md = render_markdown([path])
    assert "samples / s" in md
    # The "vs naive" column of our full model is naive time / our time, from the same run.
    naive = next(r for r in rows if r["impl"].startswith("naive"))
    ours = next(r for r in rows if r["impl"].startswith("stylenet full"))
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {ours['impl']} |"))
    expected = f"{naive['ms_per_image'] / ours['ms_per_image']:.2f}x"
    assert line.split(" | ")[7] == expected, (line, expected)


def test_ssim_and_checkerboard():
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(64, 64), mode="bilinear")
    assert ssim_luma(x, x) == pytest.approx(1.0, abs=1e-6)
    assert ssim_luma(x, torch.rand_like(x)) < 0.3
    assert checkerboard_score(x, x) == pytest.approx(1.0)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy + xx) % 2).float() * 0.1
    assert checkerboard_score((x + checker).clamp(0, 1), x) > 10


def test_evaluate_checkpoint_writes_report(tmp_path):
    ck = random_bank(tmp_path / "bank.pt", ["starry_night", "the_scream"])
    single = random_bank(tmp_path / "single.pt", ["the_scream"], seed=1)
    photos = tmp_path / "photos"
    for i in range(2):
        make_photo(photos / f"p{i}.png", (56, 40), seed=i)
    clip = tmp_path / "clip.mp4"
    import imageio_ffmpeg

    gen = imageio_ffmpeg.write_frames(
        str(clip), (48, 32), fps=5, macro_block_size=2, ffmpeg_log_level="error"
    )
    gen.send(None)
    for i in range(4):
        gen.send(np.full((32, 48, 3), 40 * i, np.uint8))
    gen.close()
    cfg = EvalConfig(size=48, gap_photos=1, gap_steps=3, vgg_weights="random", device="cpu")
    rep = evaluate_checkpoint(ck, photos, None, cfg, compare_checkpoint=single, video=clip)
    s = rep["styles"]["the_scream"]["summary"]
    for k in (
        "loss",
        "content_loss",
        "style_loss",
        "style_loss/relu3_3",
        "ssim_luma",
        "checkerboard_2px",
        "amortization_gap",
        "compare_loss",
        "compare_checkerboard_2px",
    ):
        assert np.isfinite(s[k]), k
    assert "compare_loss" not in rep["styles"]["starry_night"]["summary"]  # not in the single ckpt
    assert rep["video_flicker"]["frames"] == 4
    paths = write_report(rep, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "| the_scream |" in md and "Amortization gap per photo" in md and "Bank vs single" in md
    ratio = s["loss"] / s["compare_loss"]
    assert f"| {s['loss']:.4g} | {s['compare_loss']:.4g} | {ratio:.3f} |" in md
    assert f"against `{Path(single).name}`" in md and "Loss ratio over the 1 styles" in md
    assert paths["sheet"].is_file()
    assert (
        json.loads(paths["json"].read_text())["styles"]["starry_night"]["per_photo"][0]["photo"]
        == "p0"
    )


def test_gpu_suite_code_runs_quick_and_reports(tmp_path, monkeypatch):
    """The one-command suite at tiny sizes on the CPU (compilation stubbed: test_compile.py
    covers it): every row is produced, or recorded as failed, and the report renders."""
    from stylenet.bench.suite import run_suite

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    seen = []  # the results after every row: partial until the end
    res = run_suite("cpu", quick=True, tests=False, log=lambda s: None,
                    on_progress=lambda r: seen.append((r["partial"], len(r["inference"]),
                                                       len(r["training"]))))  # fmt: skip
    assert seen[0] == (True, 1, 0) and seen[-1] == (False, len(res["inference"]), 2)
    assert [n for _, n, _ in seen] == sorted(n for _, n, _ in seen)  # one row at a time
    assert sum(1 for p, _, _ in seen if not p) == 1
    assert res["errors"] == [], res["errors"]
    impls = {r["impl"] for r in res["inference"]}
    # The precision the Stylizer picks on this CPU (bf16 where AMX makes it fast, fp32 elsewhere)
    from stylenet.runtime.device import resolve_precision

    p = resolve_precision("auto", torch.device("cpu"))
    assert {"naive (fp32 eager)", f"stylenet eager ({p})", f"stylenet compiled ({p})"} <= impls
    fast = {(r["impl"], r["batch"]) for r in res["inference"] if r["model"] == "fast"}
    assert fast == {(f"stylenet fast {m} ({p})", b) for m in ("eager", "compiled") for b in (1, 2)}
    assert any(r["impl"].startswith("stylenet tiled") for r in res["inference"])
    assert len(res["training"]) == 2 and all(r["samples_per_s"] > 0 for r in res["training"])
    assert res["memory"] and res["memory"][0]["estimate_mb"] > 0
    path = write_results(res, tmp_path)
    md = render_markdown([path])
    assert "samples / s" in md and "memory of one pass" in md and "First call" in md


def test_report_includes_studies_after_the_results(tmp_path):
    from stylenet.bench.studies import study, write_study

    data = study(
        "growing", "Growing a bank", "Rows against full training.",
        [{"caption": "", "columns": [["run", "run"], ["loss", "loss", ".1f"]],
          "rows": [{"run": "affine", "loss": 1.0}]}],
        commands=["stylenet-train ..."], provenance="measured here",
    )  # fmt: skip
    path = write_study(data, tmp_path / "bench" / "studies")
    md = render_markdown([], None, tmp_path, [path])
    assert "## Growing a bank" in md and "| affine | 1.0 |" in md
    assert "    stylenet-train ..." in md and "Provenance: measured here" in md
    assert "(from `bench/studies/growing.json`)" in md


def test_quality_reports_link_their_sheets_and_name_a_dropped_one(tmp_path):
    """BENCHMARKS.md links each report's contact sheet from the repository root, and a report
    whose sheet was dropped says so instead of a broken image link."""
    from stylenet.bench.report import DROPPED_SHEET

    dirs = []
    for name in ("kept", "dropped"):
        d = tmp_path / "bench" / "quality" / name
        d.mkdir(parents=True)
        (d / "report.md").write_text(
            f"# Quality report: {name}\n\n![contact sheet](contact_sheet.jpg)\n"
        )
        dirs.append(d)
    (dirs[0] / "contact_sheet.jpg").write_bytes(b"jpeg")
    md = render_markdown([], dirs, tmp_path)
    assert "![contact sheet](bench/quality/kept/contact_sheet.jpg)" in md
    assert md.count("![contact sheet]") == 1 and md.count(DROPPED_SHEET) == 1
    assert md.index("report: dropped") < md.index(DROPPED_SHEET)


def test_held_out_status_reads_the_recorded_exclusion_list(tmp_path):
    """A report says the photos were held out only when the network's recorded exclusion list
    names them all, and says the list is not here when its file cannot be read (a shipped
    file's paths are placeholders) rather than claiming nothing was excluded."""
    from stylenet.evaluation.harness import held_out_status
    from stylenet.evaluation.report import render_report_md
    from tests.conftest import random_bank

    listed = tmp_path / "heldout.txt"
    listed.write_text("a.jpg\nb.jpg  # comment\n")
    cases = {
        "yes": str(listed),
        "not recorded": [],
        "list not here: <data>/heldout.txt": "<data>/heldout.txt",
    }
    for want, exclude in cases.items():
        ck = random_bank(tmp_path / "n.pt", ["s"], train_config={"data": {"exclude": exclude}})
        assert held_out_status(ck, ["a", "b"]) == want
        ck.unlink()
    ck = random_bank(tmp_path / "n.pt", ["s"], train_config={"data": {"exclude": str(listed)}})
    assert held_out_status(ck, ["a", "c"]) == "not recorded"
    report = {"checkpoint": "n.pt", "photos": ["a"], "size": 64, "styles": {},
              "eval_loss": {"content_layers": ["relu2_2"], "style_layers": ["relu1_2"],
                            "content_weight": 1.0, "style_weight": 1.0}}  # fmt: skip
    md = render_report_md({**report, "held_out": "list not here: <data>/heldout.txt"})
    assert "listed in `<data>/heldout.txt`, a file not on this machine" in md
    assert "excludes none of them" not in md
    assert "excludes none of them" in render_report_md({**report, "held_out": "not recorded"})
    assert "held-out photos" in render_report_md({**report, "held_out": "yes"})


def test_gpu_suite_budget_skips_and_lists_the_rows_left(tmp_path):
    """A spent budget: no row runs, each is listed as skipped, and the report says so."""
    from stylenet.bench.suite import run_suite

    res = run_suite("cpu", quick=True, tests=False, log=lambda s: None, budget_s=0.0)
    assert res["inference"] == [] and res["training"] == [] and res["errors"] == []
    assert "naive 64 b1" in res["skipped"] and "tiled" in res["skipped"]
    assert any(w.startswith("training") for w in res["skipped"])
    md = render_markdown([write_results(res, tmp_path)])
    assert "Skipped, the suite's budget of 0 s spent" in md and "`tiled`" in md
    assert "Partial" not in md
    md = render_markdown([write_results({**res, "partial": True}, tmp_path)])
    assert "Partial: the run was stopped" in md


def test_gpu_kit_packs_training_photos_small_and_leaves_the_held_out_behind(tmp_path):
    from PIL import Image

    from stylenet.bench.kit import pack_photos

    src = tmp_path / "photos"
    make_photo(src / "a.png", (600, 400), seed=1)
    make_photo(src / "sub" / "b.jpg", (90, 80), seed=2)  # below the kit's size: kept as it is
    make_photo(src / "held.jpg", (500, 400), seed=3)
    make_photo(src / "sub" / "held2.png", (500, 400), seed=4)
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    kit = tmp_path / "kit"
    (kit / "photos").mkdir(parents=True)
    (kit / "photos" / "stale.jpg").write_bytes(b"from an earlier packing")
    packed = pack_photos(src, kit, {"held.jpg", "sub/held2.png"}, short_side=100)
    assert sorted(p.relative_to(kit).as_posix() for p in packed.train) == [
        "photos/a.jpg", "photos/sub/b.jpg"]  # fmt: skip
    assert packed.held_out == 2 and len(packed.skipped) == 1 and "broken.jpg" in packed.skipped[0]
    assert sorted(p.name for p in (kit / "photos").rglob("*.jpg")) == ["a.jpg", "b.jpg"]
    assert Image.open(kit / "photos" / "a.jpg").size == (150, 100)
    assert Image.open(kit / "photos" / "sub" / "b.jpg").size == (90, 80)
    assert not list(kit.rglob("held*"))


def test_evaluate_command_writes_a_jpeg_sheet_and_reads_the_vgg_file_it_is_given(tmp_path, capsys):
    from PIL import Image

    from stylenet.cli.evaluate import main

    ck = random_bank(tmp_path / "bank.pt", ["starry_night", "the_scream"])
    photos = tmp_path / "photos"
    make_photo(photos / "p0.png", (56, 40), seed=0)
    common = ["-c", str(ck), "--content-dir", str(photos), "--size", "48", "--gap-photos", "0"]
    assert main([*common, "--vgg-weights", "random", "-o", str(tmp_path / "r")]) == 0
    sheet = tmp_path / "r" / "contact_sheet.jpg"
    assert Image.open(sheet).format == "JPEG"
    assert "](contact_sheet.jpg)" in (tmp_path / "r" / "report.md").read_text()
    capsys.readouterr()
    missing = tmp_path / "missing_vgg.pth"
    rc = main([*common, "--vgg-weights-path", str(missing), "-o", str(tmp_path / "r2")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and f"{missing} does not exist" in err
