"""The content-addressed image store: every image is checked, normalised and kept once.

An image enters through `ImageStore.add` (a path or bytes) and leaves as an `ImageRef`
(its sha256). Experts get pixels back with `ImageStore.load(ref)`: always 8-bit RGB, upright.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sensorium.tools.domain import ImageDomain, image_domain
from sensorium.tools.errors import ImageInputError
from sensorium.tools.evidence import ImageRef

_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: beyond this a file is treated as a bomb
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class ImageStore:
    """Images on disk under `root/objects/<sha[:2]>/<sha>.png`, keyed by the source bytes."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._domains: dict[str, ImageDomain] = {}

    def _object_path(self, sha256: str) -> Path:
        # Keys come from clients too (an HTTP path, a replica's call): never a path of theirs.
        if not _SHA256.fullmatch(sha256):
            raise ImageInputError(f"{sha256[:80]!r} is not a sha256 image key")
        return self.root / "objects" / sha256[:2] / f"{sha256}.png"

    def add(self, path: str | Path) -> ImageRef:
        """Check and store the image file at `path`; raises `ImageInputError` saying why not."""
        path = Path(path)
        return self.add_bytes(self._read_file(path), name=path.name, label=str(path))

    def read(self, path: str | Path) -> tuple[str, Image.Image]:
        """Check and decode an image file without storing it: (sha256 of its bytes, RGB image)."""
        path = Path(path)
        data = self._read_file(path)
        return hashlib.sha256(data).hexdigest(), self._decode(data, str(path))

    def _read_file(self, path: Path) -> bytes:
        if not path.exists():
            raise ImageInputError(f"image not found: {path}; check the path")
        if path.is_dir():
            raise ImageInputError(f"{path} is a directory; pass an image file (PNG, JPEG, ...)")
        size = path.stat().st_size
        if size == 0:
            raise ImageInputError(f"{path} is empty (0 bytes); pass a real image file")
        if size > self.max_bytes:
            raise ImageInputError(
                f"{path} is {_size(size)}, over the limit of {_size(self.max_bytes)}; "
                "downscale or recompress it"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageInputError(f"cannot read {path}: {exc.strerror}") from None
        if not data:
            raise ImageInputError(f"{path} is empty (0 bytes); pass a real image file")
        return data

    def add_bytes(self, data: bytes, *, name: str = "", label: str = "image") -> ImageRef:
        """Check and store an encoded image (PNG, JPEG, ...) given as bytes."""
        if not data:
            raise ImageInputError(f"{label} is empty (0 bytes); pass a real image file")
        if len(data) > self.max_bytes:
            raise ImageInputError(
                f"{label} is {_size(len(data))}, over the {_size(self.max_bytes)} limit; "
                "downscale or recompress it"
            )
        sha = hashlib.sha256(data).hexdigest()
        target = self._object_path(sha)
        if target.exists():
            return self.ref(sha, name=name)
        image = self._decode(data, label)
        self._write(target, image)
        return ImageRef(sha256=sha, name=name, width=image.width, height=image.height)

    def add_image(self, image: Image.Image, *, name: str = "") -> ImageRef:
        """Store an in-memory Pillow image (hashed by its PNG encoding)."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return self.add_bytes(buffer.getvalue(), name=name, label=name or "image")

    def add_object(self, sha256: str, data: bytes) -> None:
        """Keep an image another store already checked, under the key that store gave it (a
        remote expert's replica receiving the agent's image); kept objects are left alone."""
        target = self._object_path(sha256)
        if not target.exists():
            self._write(target, self._decode(data, f"image {sha256[:12]}"))

    def ref(self, sha256: str, *, name: str = "") -> ImageRef:
        """The reference of a stored image (its size read from the file's header, not
        decoded); `ImageInputError` if it is unknown."""
        path = self.require(sha256)
        try:
            with Image.open(path) as stored:
                return ImageRef(sha256=sha256, name=name, width=stored.width, height=stored.height)
        except OSError:
            raise _damaged(path) from None

    def require(self, ref: ImageRef | str) -> Path:
        """The stored file of a reference (not decoded); `ImageInputError` if it is unknown."""
        sha = ref.sha256 if isinstance(ref, ImageRef) else ref
        path = self._object_path(sha)
        if not path.exists():
            raise ImageInputError(f"image {sha[:12]} is not in the store at {self.root}; add it")
        return path

    def load(self, ref: ImageRef | str) -> Image.Image:
        """The stored image as 8-bit RGB; raises `ImageInputError` for an unknown reference."""
        path = self.require(ref)
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError:
            raise _damaged(path) from None

    def domain(self, ref: ImageRef | str) -> ImageDomain:
        """Whether a stored image is a photograph or a flat graphic (decoded once, then
        remembered: fusion asks for every decision about it)."""
        sha = ref.sha256 if isinstance(ref, ImageRef) else ref
        if sha not in self._domains:
            self._domains[sha] = image_domain(self.load(sha))
        return self._domains[sha]

    def _decode(self, data: bytes, label: str) -> Image.Image:
        try:
            with warnings.catch_warnings():
                # Pillow only warns between 1x and 2x its own limit; make every bomb an error.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                pixels = image.width * image.height
                if pixels > self.max_pixels:
                    raise ImageInputError(
                        f"{label} is {image.width}x{image.height} ({_pixels(pixels)}), over "
                        f"the limit of {_pixels(self.max_pixels)}; downscale it (possible "
                        "decompression bomb)"
                    )
                image.load()
        except ImageInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow's own limit (Image.MAX_IMAGE_PIXELS) is lower than ours.
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = _pixels(int(found.group(1))) if found else "too many pixels"
            limit = min(self.max_pixels, Image.MAX_IMAGE_PIXELS or self.max_pixels)
            raise ImageInputError(
                f"{label} is {size}, over the limit of {_pixels(limit)}; downscale it "
                "(possible decompression bomb)"
            ) from None
        except UnidentifiedImageError:
            raise ImageInputError(
                f"{label} is not an image Pillow can read; pass a PNG, JPEG, WebP, GIF, "
                "BMP or TIFF file"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageInputError(
                f"{label} is truncated or corrupt ({str(exc).strip() or type(exc).__name__}); "
                "re-export the image"
            ) from None
        return normalise(image)

    def _write(self, target: Path, image: Image.Image) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash never leaves a half-written object behind.
        handle, temp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                image.save(out, format="PNG")
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _damaged(path: Path) -> ImageInputError:
    return ImageInputError(
        f"stored image {path.stem[:12]} at {path} is damaged; delete it and add the image again"
    )


# Whole MiB / megapixels would print a small limit as "0"; fall back to exact counts.
def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _pixels(n: int) -> str:
    return f"{n / 1e6:g} megapixels" if n >= 1_000_000 else f"{n:,} pixels"


def normalise(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any mode: EXIF rotation, CMYK, palette, alpha, 16-bit, float."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels have no colour of their own; show them on white.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")
