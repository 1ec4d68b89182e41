"""The image store: every bad input is refused with a one-line message; every odd-but-valid
image comes back as upright 8-bit RGB; each image is kept once, by the sha256 of its bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from PIL import Image

from sensorium import ImageInputError, ImageRef, ImageStore


def refused(store: ImageStore, path: Path, match: str) -> str:
    """Add `path`, expect it refused with a message matching `match`; return the message."""
    with pytest.raises(ImageInputError, match=match) as caught:
        store.add(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def store_files(store: ImageStore) -> list[Path]:
    """Every file under the store's root (objects, temporaries, anything)."""
    if not store.root.exists():
        return []
    return [p for p in store.root.rglob("*") if p.is_file()]


def two_colour_image(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Red left half, blue right half: easy to check after rotation or lossy encoding."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def close_to(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


# Bad inputs: one test per path, each pinning its message.


def test_missing_file_is_refused(store: ImageStore, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.png"
    refused(store, missing, rf"^image not found: {re.escape(str(missing))}; check the path$")


def test_directory_is_refused(store: ImageStore, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    refused(
        store,
        folder,
        rf"^{re.escape(str(folder))} is a directory; pass an image file \(PNG, JPEG, \.\.\.\)$",
    )


def test_text_file_is_refused(store: ImageStore, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image\n" * 10)
    refused(
        store,
        notes,
        rf"^{re.escape(str(notes))} is not an image Pillow can read; "
        r"pass a PNG, JPEG, WebP, GIF, BMP or TIFF file$",
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_refused(store: ImageStore, tmp_path: Path, fmt: str) -> None:
    whole = tmp_path / f"whole.{fmt.lower()}"
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    noise.save(whole, format=fmt)
    data = whole.read_bytes()
    half = tmp_path / f"half.{fmt.lower()}"
    half.write_bytes(data[: len(data) // 2])
    message = refused(
        store,
        half,
        rf"^{re.escape(str(half))} is truncated or corrupt \(.+\); re-export the image$",
    )
    assert "truncated" in message


def test_empty_file_is_refused(store: ImageStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused(
        store, empty, rf"^{re.escape(str(empty))} is empty \(0 bytes\); pass a real image file$"
    )


def test_empty_bytes_are_refused(store: ImageStore) -> None:
    with pytest.raises(ImageInputError, match=r"^upload is empty \(0 bytes\)"):
        store.add_bytes(b"", label="upload")


def _png_declaring(size: tuple[int, int], source: Path) -> bytes:
    """A real PNG's bytes with its IHDR patched to declare another size (CRC fixed up)."""
    data = bytearray(source.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", *size)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding(store: ImageStore, tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.new("1", (64, 64)).save(small)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring((20000, 20000), small))
    assert bomb.stat().st_size < 1_000_000
    assert struct.unpack(">II", bomb.read_bytes()[16:24]) == (20000, 20000)
    refused(
        store,
        bomb,
        rf"^{re.escape(str(bomb))} is 400 megapixels, over the limit of "
        r"64 megapixels; downscale it \(possible decompression bomb\)$",
    )


def test_image_over_a_configured_pixel_limit_is_refused(tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(picture)
    store = ImageStore(tmp_path / "store", max_pixels=10_000)
    refused(
        store, picture, r"is 300x200 \(60,000 pixels\), over the limit of 10,000 pixels; downscale"
    )


def test_file_over_max_bytes_is_refused(tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    two_colour_image().save(picture)
    size = picture.stat().st_size
    store = ImageStore(tmp_path / "store", max_bytes=100)
    refused(
        store,
        picture,
        rf"^{re.escape(str(picture))} is {size:,} bytes, over the limit of 100 bytes; "
        r"downscale or recompress it$",
    )


def test_max_bytes_message_uses_mebibytes_for_large_limits(tmp_path: Path) -> None:
    picture = tmp_path / "picture.bmp"
    Image.new("RGB", (1024, 1024)).save(picture)  # 3 MiB uncompressed
    store = ImageStore(tmp_path / "store", max_bytes=2 * 2**20)
    refused(store, picture, r" is 3\.0 MiB, over the limit of 2\.0 MiB; downscale or recompress")


@pytest.mark.parametrize("kind", ["text", "truncated", "bomb", "empty"])
def test_failed_add_leaves_nothing_in_the_store(
    store: ImageStore, tmp_path: Path, kind: str
) -> None:
    bad = tmp_path / "bad.png"
    good = tmp_path / "good.png"
    two_colour_image().save(good)
    if kind == "text":
        bad.write_text("hello")
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[:100])
    elif kind == "bomb":
        bad.write_bytes(_png_declaring((20000, 20000), good))
    else:
        bad.write_bytes(b"")
    with pytest.raises(ImageInputError):
        store.add(bad)
    assert store_files(store) == []


def test_a_failed_write_leaves_no_temporary_file(
    store: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = tmp_path / "picture.png"
    two_colour_image().save(picture)

    def disk_full(self: Image.Image, fp: BinaryIO, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.add(picture)
    assert store_files(store) == []


def test_loading_an_unknown_reference_is_refused(store: ImageStore) -> None:
    sha = "ab" * 32
    with pytest.raises(
        ImageInputError,
        match=rf"^image abababababab is not in the store at {re.escape(str(store.root))}; add it$",
    ) as caught:
        store.load(sha)
    assert "\n" not in str(caught.value)
    with pytest.raises(ImageInputError, match="is not in the store"):
        store.load(ImageRef(sha256=sha))


# Content addressing.


def test_same_bytes_twice_are_stored_once(store: ImageStore, tmp_path: Path) -> None:
    first = tmp_path / "first.png"
    two_colour_image().save(first)
    second = tmp_path / "copy.png"
    second.write_bytes(first.read_bytes())

    ref_a = store.add(first)
    ref_b = store.add(second)
    ref_c = store.add_bytes(first.read_bytes())

    expected = hashlib.sha256(first.read_bytes()).hexdigest()
    assert ref_a.sha256 == ref_b.sha256 == ref_c.sha256 == expected
    assert (ref_a.name, ref_b.name) == ("first.png", "copy.png")
    assert (ref_b.width, ref_b.height) == (64, 48)
    assert len(store_files(store)) == 1


def test_different_images_get_different_references(store: ImageStore) -> None:
    red = store.add_image(Image.new("RGB", (8, 8), (255, 0, 0)))
    blue = store.add_image(Image.new("RGB", (8, 8), (0, 0, 255)))
    assert red.sha256 != blue.sha256
    assert len(store_files(store)) == 2
    assert store.load(red).getpixel((0, 0)) == (255, 0, 0)
    assert store.load(blue.sha256).getpixel((0, 0)) == (0, 0, 255)


# Normalisation: odd but valid images are accepted and come back as upright 8-bit RGB.


def test_cmyk_jpeg_loads_as_rgb(store: ImageStore, tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    loaded = store.load(store.add(path))
    assert loaded.mode == "RGB"
    assert close_to(loaded.getpixel((16, 16)), (255, 0, 0))


def test_palette_png_with_transparency_loads_on_white(store: ImageStore, tmp_path: Path) -> None:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    image.paste(1, (8, 0, 16, 16))  # right half: palette entry 1, green
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)  # palette entry 0 (red) is transparent
    with Image.open(path) as raw:
        assert raw.mode == "P"
        assert "transparency" in raw.info
    loaded = store.load(store.add(path))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((2, 8)) == (255, 255, 255)
    assert loaded.getpixel((12, 8)) == (0, 255, 0)


def test_rgba_alpha_is_composited_on_white(store: ImageStore, tmp_path: Path) -> None:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # transparent black
    image.paste((0, 0, 255, 255), (0, 0, 8, 16))  # opaque blue
    image.paste((255, 0, 0, 128), (8, 0, 16, 8))  # half-transparent red
    path = tmp_path / "alpha.png"
    image.save(path)
    loaded = store.load(store.add(path))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((4, 4)) == (0, 0, 255)
    assert close_to(loaded.getpixel((12, 4)), (255, 127, 127), tolerance=2)
    assert loaded.getpixel((12, 12)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_stretched_to_eight_bits(
    store: ImageStore, tmp_path: Path
) -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    loaded = store.load(store.add(path))
    assert loaded.mode == "RGB"
    pixels = np.asarray(loaded)
    assert pixels.dtype == np.uint8
    assert (pixels.min(), pixels.max()) == (0, 255)
    assert (pixels[..., 0] == pixels[..., 1]).all()
    assert pixels[0, 0, 0] < pixels[32, 0, 0] < pixels[63, 63, 0]


def test_exif_rotated_jpeg_is_stored_upright(store: ImageStore, tmp_path: Path) -> None:
    sideways = two_colour_image((64, 32))  # as the sensor stored it: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    path = tmp_path / "phone.jpg"
    sideways.save(path, exif=exif, quality=95)

    ref = store.add(path)
    loaded = store.load(ref)

    assert (ref.width, ref.height) == (32, 64)
    assert loaded.size == (32, 64)
    assert loaded.mode == "RGB"
    # Turning clockwise brings the left edge to the top.
    assert close_to(loaded.getpixel((16, 8)), (255, 0, 0))
    assert close_to(loaded.getpixel((16, 56)), (0, 0, 255))


def test_grayscale_and_float_images_load_as_rgb(store: ImageStore) -> None:
    gray = store.add_image(Image.new("L", (4, 4), 200))
    assert store.load(gray).getpixel((0, 0)) == (200, 200, 200)
    values = np.linspace(0.0, 1.0, 16, dtype=np.float32).reshape(4, 4)
    floats = store.add_bytes(_tiff_bytes(Image.fromarray(values)))
    loaded = np.asarray(store.load(floats))
    assert loaded.dtype == np.uint8
    assert (loaded.min(), loaded.max()) == (0, 255)


def _tiff_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


def test_a_damaged_stored_image_is_one_line_naming_it(tmp_path: Path, red_image: Path) -> None:
    store = ImageStore(tmp_path / "images")
    ref = store.add(red_image)
    assert store.ref(ref.sha256) == ImageRef(sha256=ref.sha256, width=ref.width, height=ref.height)
    store.require(ref).write_bytes(b"not a png any more")
    for read in (store.ref, store.load):
        with pytest.raises(ImageInputError, match="is damaged; delete it and add the image again"):
            read(ref.sha256)
    with pytest.raises(ImageInputError, match="not in the store"):
        store.ref("0" * 64)


def test_a_key_that_is_not_a_sha256_never_becomes_a_path(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    for key in ("..", "../../etc/passwd", "0" * 63 + "/"):
        for read in (store.require, store.ref, store.load):
            with pytest.raises(ImageInputError, match="is not a sha256 image key"):
                read(key)
        with pytest.raises(ImageInputError, match="is not a sha256 image key"):
            store.add_object(key, b"")
