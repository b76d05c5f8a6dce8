"""Any image as a style: a checkpoint's style predictor turns it into one more row.

A style spec may name image files beside the bank's styles (``"starry_night=0.5,my.jpg=0.5"``).
Each file is read once, scaled to the predictor's style size, and turned into per-layer
(gamma, beta) by the predictor (``stylenet.nn.predictor``); the rows are cached by the file's
content, so a style used again costs nothing. The rows join the bank's for one request as the
``extra`` rows of a ``RowMix`` (``stylenet.nn.params``): mixes, masks, strength, tiling and
batching treat them like any other row. Each file's colours (``stylenet.inference.palette``) are
kept beside its rows, for ``palette``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from stylenet.errors import StyleSpecError, VGGWeightsError
from stylenet.inference.palette import Colours, image_colours
from stylenet.io.images import image_to_tensor, resize_long, to_rgb
from stylenet.nn.mix import StyleLike, _listing, shown
from stylenet.nn.params import Affine
from stylenet.nn.predictor import StylePredictor, style_statistics

log = logging.getLogger(__name__)

# Predicted styles kept per Stylizer: each is one (gamma, beta) pair per norm (about 13 kB for
# the full network), so 256 of them cost about 3 MB; a server seeing more drops the oldest.
CACHE_SIZE = 256


def spec_tokens(spec: StyleLike) -> list[str]:
    """The style names a spec mentions, as written (``"a=0.5,b.jpg"`` -> ``["a", "b.jpg"]``)."""
    if isinstance(spec, Mapping):
        return [str(k).strip() for k in spec]
    if not isinstance(spec, str):
        return []
    return [p.split("=", 1)[0].strip() for p in spec.split(",") if p.strip()]


def is_bank_token(token: str, names: Sequence[str]) -> bool:
    return token in names or token.lstrip("-").isdigit()


class StyleImages:
    """Predicted rows for style images, for one network and its predictor."""

    def __init__(
        self,
        predictor: StylePredictor | None,
        device: torch.device,
        vgg_weights_path: str | None = None,
        source: str = "this checkpoint",
        vgg: torch.nn.Module | None = None,
    ) -> None:
        self.predictor = predictor.to(device).eval() if predictor is not None else None
        self.device = device
        self.vgg_weights_path = vgg_weights_path
        self.source = source
        # The feature extractor (a VGGFeatures with the predictor's layers); built from the
        # ImageNet weights on first use unless given.
        self._vgg = vgg.to(device).eval() if vgg is not None else None
        self._cache: OrderedDict[str, tuple[list[Affine], Colours]] = OrderedDict()
        self._files: dict[tuple[str, int, int], str] = {}  # (path, mtime, size) -> content key
        self._last_bytes: tuple[bytes, str] | None = None  # the last bytes hashed, and the hash
        self.predictions = 0  # forward passes of the predictor (a cached style adds none)

    # -- which tokens of a spec are images -------------------------------------------------------
    def image_tokens(self, specs: Sequence[StyleLike | None], names: Sequence[str]) -> list[str]:
        """The tokens of ``specs`` that are not the bank's styles, each checked to be an image
        file (one line naming both possibilities otherwise), in first-seen order."""
        out: list[str] = []
        for spec in specs:
            for tok in spec_tokens(spec) if spec is not None else []:
                if not tok or is_bank_token(tok, names) or tok in out:
                    continue
                p = Path(os.path.expanduser(tok))
                if not p.is_file():
                    raise StyleSpecError(
                        f"style {shown(tok)} is neither a style of {self.source} nor an image "
                        f"file; available: {_listing(names)}"
                    )
                if self.predictor is None:
                    raise StyleSpecError(
                        f"{self.source} has no style predictor, so an image file ({shown(tok)}) "
                        f"cannot be a style; its styles: {_listing(names)}"
                    )
                out.append(tok)
        return out

    # -- prediction -----------------------------------------------------------------------------
    def _features(self):  # noqa: ANN202  (a VGGFeatures)
        if self._vgg is None:
            from stylenet.losses.perceptual import VGGFeatures
            from stylenet.losses.weights import resolve_vgg16_features

            try:
                state, _ = resolve_vgg16_features(
                    self.vgg_weights_path, allow_download=False, allow_mirror=False
                )
            except VGGWeightsError:
                raise VGGWeightsError(
                    "a style image is turned into a style through the VGG16 weights, which are "
                    "not on this machine: run `stylenet-weights` once to fetch them"
                ) from None
            layers = list(self.predictor.config.layers)
            self._vgg = VGGFeatures(layers, state_dict=state).to(self.device)
        return self._vgg

    def rows_for_file(self, path: str | os.PathLike) -> list[Affine]:
        return self.style_for_file(path)[0]

    def style_for_file(self, path: str | os.PathLike) -> tuple[list[Affine], Colours]:
        """The file's predicted rows and its colours (``stylenet.inference.palette``)."""
        p = Path(os.path.expanduser(str(path)))
        try:
            st = p.stat()
            # A file seen before and unchanged (a video's frames all name the same painting)
            # is not read again.
            stamp = (str(p.resolve()), st.st_mtime_ns, st.st_size)
            key = self._files.get(stamp)
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            data = p.read_bytes()
        except OSError as e:
            raise StyleSpecError(f"cannot read style image {p}: {e.strerror or e}") from e
        key = hashlib.sha256(data).hexdigest()
        self._files[stamp] = key
        return self.style_for_bytes(data, str(p), key)

    def rows_for_bytes(
        self, data: bytes, label: str = "style image", key: str | None = None
    ) -> list[Affine]:
        """Per layer ``(gamma [1, C], beta [1, C])`` of the style in ``data`` (an encoded image)."""
        return self.style_for_bytes(data, label, key)[0]

    def style_for_bytes(
        self, data: bytes, label: str = "style image", key: str | None = None
    ) -> tuple[list[Affine], Colours]:
        """The predicted rows and the colours of the style in ``data``."""
        if self.predictor is None:
            raise StyleSpecError(
                f"{self.source} has no style predictor: it takes only its own styles"
            )
        if key is None:
            # The same bytes object again (the server asks for an upload's rows, then for its
            # colours) is not hashed twice; held here, it cannot be freed and its id reused.
            last = self._last_bytes
            if last is not None and last[0] is data:
                key = last[1]
            else:
                key = hashlib.sha256(data).hexdigest()
                self._last_bytes = (data, key)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        x = self.style_tensor(data, label)
        entry = (self.predict(x), image_colours(x))
        self._cache[key] = entry
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return entry

    def style_tensor(self, data: bytes, label: str) -> Tensor:
        """The image in ``data`` as ``[1, 3, h, w]`` with its longer side at the style size. A
        large JPEG is decoded at a reduced scale (``Image.draft``), so even a huge painting never
        needs its full-size pixels in memory."""
        size = int(self.predictor.config.style_size)
        try:
            img = Image.open(io.BytesIO(data))
            img.draft("RGB", (size, size))
            img.thumbnail((size * 2, size * 2), Image.LANCZOS)
            img = to_rgb(img)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise StyleSpecError(f"style image {label} is not a readable image ({e})") from e
        return resize_long(image_to_tensor(img)[None], size).clamp(0, 1)

    @torch.inference_mode()
    def predict(self, x: Tensor) -> list[Affine]:
        vgg = self._features()
        feats = vgg(x.to(self.device, torch.float32))
        params = self.predictor(style_statistics(feats, self.predictor.config.layers))
        self.predictions += 1
        return [(g.float(), b.float()) for g, b in zip(params.gammas, params.betas, strict=True)]


def concat_rows(rows: Sequence[list[Affine]]) -> list[Affine] | None:
    """Several styles' per-layer rows -> per layer ``(gamma [K, C], beta [K, C])``."""
    if not rows:
        return None
    return [
        (torch.cat([r[i][0] for r in rows]), torch.cat([r[i][1] for r in rows]))
        for i in range(len(rows[0]))
    ]
