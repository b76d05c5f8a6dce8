from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.data.photos import ContentDataModule, ContentDataset, collate, scan_images
from stylenet.errors import DataError, ImageReadError
from stylenet.io.images import load_image
from tests.conftest import make_photo


def _write_modes(d):
    d.mkdir(parents=True, exist_ok=True)
    base = Image.open(make_photo(d / "rgb.png", (40, 30), seed=1))
    base.convert("L").save(d / "grey.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "rgba.png")
    base.convert("P", palette=Image.ADAPTIVE).save(d / "palette.png")
    base.convert("CMYK").save(d / "cmyk.jpg")
    base.convert("LA").save(d / "la.png")
    arr16 = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    Image.fromarray(arr16).save(d / "grey16.png")
    base.convert("1").save(d / "bilevel.png")
    # EXIF orientation 6 (rotate 90 cw on display): 40x30 stored -> 30x40 shown
    exif = Image.Exif()
    exif[0x0112] = 6
    base.save(d / "exif_rotated.jpg", exif=exif.tobytes())
    return d


def test_every_image_mode_reads_as_rgb(tmp_path):
    d = _write_modes(tmp_path / "modes")
    for p in sorted(d.iterdir()):
        img = load_image(p)
        assert img.mode == "RGB", p.name
    assert load_image(d / "exif_rotated.jpg").size == (30, 40)
    g16 = np.asarray(load_image(d / "grey16.png"))
    assert g16.max() >= 250 and g16.min() <= 5  # full 16-bit range mapped onto 8 bits
    # transparency composited over white, not black
    assert (
        np.asarray(load_image(d / "rgba.png")).mean() > np.asarray(load_image(d / "rgb.png")).mean()
    )


def _bad_files(d):
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("not an image at all")
    good = make_photo(d / "trunc_src.jpg", (64, 64), seed=3)
    raw = good.read_bytes()
    (d / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    good.unlink()


def test_scan_skips_and_counts_unreadable(tmp_path, photo_dir):
    _bad_files(photo_dir)
    files = sorted(p for p in photo_dir.rglob("*") if p.is_file())
    res = scan_images(files, min_size=32, cache=False)
    # the truncated JPEG has a valid header: only a full decode catches it, before training
    assert res.num_skipped == 3, res.skipped
    assert set(res.skipped) == {"empty", "unreadable", "truncated"}
    assert all(p.name not in ("empty.jpg", "text.png", "truncated.jpg") for p in res.files)
    small = scan_images(files, min_size=1000, small="skip", cache=False)
    assert len(small.files) == 0 and "too small" in small.skipped


def test_truncated_image_skipped_at_load_and_counted(tmp_path):
    d = tmp_path / "ds"
    make_photo(d / "ok.png", (50, 50))
    _bad_files(d)
    ds = ContentDataset([d / "truncated.jpg", d / "ok.png"], image_size=32)
    with pytest.raises(ImageReadError):
        load_image(d / "truncated.jpg")
    img, fails = ds[0]
    assert img.shape == (3, 32, 32) and fails == 1
    b = collate([ds[0], ds[1]])
    assert b["image"].shape == (2, 3, 32, 32)
    assert 0 <= float(b["image"].min()) and float(b["image"].max()) <= 1


def test_small_images_are_upscaled(tmp_path):
    p = make_photo(tmp_path / "tiny.png", (10, 12))
    ds = ContentDataset([p], image_size=32)
    assert ds[0][0].shape == (3, 32, 32)


def test_datamodule_errors_before_training(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ContentDataModule(root=str(tmp_path / "missing")).prepare()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        ContentDataModule(root=str(tmp_path / "empty")).prepare()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="none of 1 files"):
        ContentDataModule(root=str(junk)).prepare()


def test_datamodule_holds_out_samples(photo_dir):
    dm = ContentDataModule(
        root=str(photo_dir),
        image_size=32,
        batch_size=2,
        num_workers=0,
        num_samples=2,
        sample_size=24,
    )
    dm.setup()
    assert len(dm.sample_files) == 2
    assert not set(dm.sample_files) & set(dm.train_files)
    assert dm.sample_images().shape == (2, 3, 24, 24)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)


def test_coco_annotation_listing(tmp_path, photo_dir):
    import json

    ann = tmp_path / "ann.json"
    ann.write_text(
        json.dumps(
            {
                "images": [
                    {"file_name": "p0.png"},
                    {"file_name": "p1.png"},
                    {"file_name": "gone.png"},
                ]
            }
        )
    )
    dm = ContentDataModule(root=str(photo_dir), annotations=str(ann), image_size=32, num_samples=1)
    scan = dm.prepare()
    assert len(scan.files) == 2 and scan.skipped["missing"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataError, match="COCO"):
        ContentDataModule(root=str(photo_dir), annotations=str(bad)).prepare()


def test_sample_content_set_is_shipped():
    dm = ContentDataModule(image_size=128)
    scan = dm.prepare()
    assert len(scan.files) >= 20 and scan.num_skipped == 0
    assert torch.is_tensor(dm.sample_images())
