"""The one image loader: orientation, bit depth, modes, alpha, sizes and unreadable files, as users' photos come."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from levitor._util.images import MAX_PIXELS, ImageDownscaledWarning, as_rgb_uint8, load_image


def _gradient(h: int = 40, w: int = 60) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([rows * 255 // (h - 1), cols * 255 // (w - 1), np.full_like(rows, 40)], -1).astype(np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_gradient())  # 60 wide, 40 tall, stored as a camera would: sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    rgb = as_rgb_uint8(tmp_path / "phone.jpg")
    assert rgb.shape == (60, 40, 3)  # shown portrait, as every photo viewer shows it
    expected = np.asarray(Image.fromarray(_gradient()).transpose(Image.Transpose.ROTATE_270))
    assert np.abs(rgb.astype(int) - expected).mean() < 3  # JPEG's loss only


def test_sixteen_bit_grey_png_keeps_its_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = as_rgb_uint8(tmp_path / "g16.png")
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255  # not flat grey
    np.testing.assert_array_equal(rgb[0, :, 0], np.round(ramp[0] / 257).astype(np.uint8))
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_float_and_uint16_arrays():
    f = np.linspace(0, 1, 8 * 8 * 3).reshape(8, 8, 3)
    assert as_rgb_uint8(f).max() == 255 and as_rgb_uint8(f).min() == 0
    assert as_rgb_uint8(np.full((8, 8, 3), 65535, np.uint16)).max() == 255
    with pytest.raises(ValueError, match="NaN"):
        as_rgb_uint8(np.full((8, 8, 3), np.nan))
    with pytest.raises(ValueError, match="outside 0..255"):
        as_rgb_uint8(np.full((8, 8, 3), 1000, np.int32))


def test_alpha_is_composited_on_white(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[..., 0] = 200
    a[:5, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "cut.png")
    for source in (tmp_path / "cut.png", a, Image.fromarray(a, "RGBA")):
        rgb = as_rgb_uint8(source)
        assert tuple(rgb[0, 0]) == (200, 0, 0) and tuple(rgb[9, 9]) == (255, 255, 255)
    la = Image.fromarray(np.stack([np.full((10, 10), 50, np.uint8), a[..., 3]], -1), "LA")
    assert tuple(as_rgb_uint8(la)[9, 9]) == (255, 255, 255) and tuple(as_rgb_uint8(la)[0, 0]) == (50, 50, 50)


def test_palette_and_cmyk(tmp_path):
    img = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert as_rgb_uint8(img).shape == (40, 60, 3)
    cmyk = Image.fromarray(_gradient()).convert("CMYK")
    cmyk.save(tmp_path / "print.jpg")
    assert np.abs(as_rgb_uint8(tmp_path / "print.jpg").astype(int) - _gradient()).mean() < 8


@pytest.mark.parametrize("size", [(1, 1), (7, 100)])
def test_tiny_images_are_refused_from_every_source(tmp_path, size):
    arr = np.zeros((*size, 3), np.uint8)
    Image.fromarray(arr).save(tmp_path / "tiny.png")
    for source in (arr, Image.fromarray(arr), tmp_path / "tiny.png", str(tmp_path / "tiny.png")):
        with pytest.raises(ValueError, match="at least 8x8"):
            as_rgb_uint8(source)


def test_unreadable_files_name_the_file(tmp_path):
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "torn.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    for name in ("torn.png", "notes.png"):
        with pytest.raises(ValueError, match=name) as err:
            as_rgb_uint8(tmp_path / name)
        assert "save it again" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        as_rgb_uint8(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="is a folder"):
        as_rgb_uint8(tmp_path)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (no need to hold the pixels to test the size check)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


def test_huge_photos_are_downscaled_or_refused(tmp_path):
    big = Image.new("RGB", (6000, 4000), (10, 120, 30))
    big.save(tmp_path / "big.jpg", quality=80)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = as_rgb_uint8(tmp_path / "big.jpg")
    assert rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS and abs(rgb.shape[1] / rgb.shape[0] - 1.5) < 0.01
    assert any(issubclass(w.category, ImageDownscaledWarning) and "6000x4000" in str(w.message) for w in caught)
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(ValueError, match="bomb.png is too large to decode safely.*downscale it first"):
        load_image(tmp_path / "bomb.png")
