"""Reading and writing photos: every odd input either loads correctly or fails with a clear, named error."""
from __future__ import annotations

import io
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms
from PIL.JpegImagePlugin import get_sampling

from stylegan_unmask.errors import InputImageError, UnmaskError
from stylegan_unmask.images import (
    LoadedImage,
    as_rgb_uint8,
    ensure_not_input,
    load_image,
    save_image,
)


def _pattern(h=48, w=64) -> np.ndarray:
    """An asymmetric RGB test card: red block top-left, green block top-right, blue bottom."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[: h // 3, : w // 3] = (255, 0, 0)
    a[: h // 3, -w // 3:] = (0, 255, 0)
    a[-h // 3:, :] = (0, 0, 255)
    return a


def _quadrant_means(a: np.ndarray):
    h, w = a.shape[:2]
    return {
        "tl": a[: h // 6, : w // 6].reshape(-1, 3).mean(0),
        "tr": a[: h // 6, -w // 6:].reshape(-1, 3).mean(0),
        "bl": a[-h // 6:, : w // 6].reshape(-1, 3).mean(0),
        "br": a[-h // 6:, -w // 6:].reshape(-1, 3).mean(0),
    }


def _dominant(rgb) -> str:
    return "rgb"[int(np.argmax(rgb))] if np.ptp(rgb) > 60 else "grey"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# ----------------------------------------------------------------------------- bad files


def _assert_named_error(path, match):
    with pytest.raises(InputImageError, match=match) as info:
        load_image(path)
    assert os.path.basename(str(path)) in str(info.value)
    assert info.value.path is not None
    return info.value


def test_missing_file(tmp_path):
    _assert_named_error(tmp_path / "nobody.jpg", "not found")


def test_directory(tmp_path):
    d = tmp_path / "photos.jpg"
    d.mkdir()
    _assert_named_error(d, "directory")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    _assert_named_error(p, "empty")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\nbut a shopping list\n")
    _assert_named_error(p, "not an image")


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (256, 256, 3), np.uint8)).save(buf, "JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _assert_named_error(p, "truncated")


def test_garbage_after_jpeg_magic(tmp_path):
    p = tmp_path / "garbage.jpg"
    p.write_bytes(b"\xff\xd8\xff" + np.random.RandomState(1).bytes(4000))
    _assert_named_error(p, "image")


def test_decompression_bomb_header_is_refused_without_decoding(tmp_path):
    # A tiny PNG whose header claims 100000 x 100000 pixels (30 GB as RGB).
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))
    p = tmp_path / "bomb.png"
    p.write_bytes(data)
    limit_before = Image.MAX_IMAGE_PIXELS
    err = _assert_named_error(p, "megapixels")
    assert "100000x100000" in str(err) and "max_pixels" in str(err)
    assert Image.MAX_IMAGE_PIXELS == limit_before  # Pillow's global is restored


def test_our_limit_replaces_pillows(tmp_path, monkeypatch):
    # Pillow refuses images above 2x its MAX_IMAGE_PIXELS with its own exception;
    # our max_pixels decides instead, and Pillow's global is left as it was.
    p = tmp_path / "fine.png"
    Image.fromarray(_pattern(100, 100)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(p).pixels.shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_max_pixels_is_configurable(tmp_path):
    p = tmp_path / "small.png"
    Image.fromarray(_pattern(100, 100)).save(p)
    with pytest.raises(InputImageError, match="megapixels"):
        load_image(p, max_pixels=5000)
    assert load_image(p, max_pixels=10_000).pixels.shape == (100, 100, 3)


# ----------------------------------------------------------------------------- modes


def test_tiny_image(tmp_path):
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(p)
    li = load_image(p)
    assert li.pixels.shape == (1, 1, 3) and li.pixels.dtype == np.uint8
    assert li.pixels[0, 0].tolist() == [10, 20, 30]


def test_rgb_png_roundtrip_is_exact(tmp_path):
    a = _pattern()
    p = tmp_path / "card.png"
    Image.fromarray(a).save(p)
    li = load_image(p)
    assert isinstance(li, LoadedImage)
    assert np.array_equal(li.pixels, a)
    assert li.format == "PNG" and li.original_mode == "RGB" and not li.has_alpha
    assert li.original_size == (64, 48) and li.size == (64, 48)


def test_grayscale_modes(tmp_path):
    grey = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 256
    for mode in ("L", "1"):
        p = tmp_path / f"grey_{mode}.png"
        Image.fromarray(grey.astype(np.uint8)).convert(mode).save(p)
        li = load_image(p)
        assert li.pixels.shape == (48, 64, 3)
        assert (li.pixels == li.pixels[..., :1]).all()  # R == G == B
        assert li.original_mode == mode
    li = load_image(tmp_path / "grey_L.png")
    assert np.array_equal(li.pixels[..., 0], grey.astype(np.uint8))


def test_la_keeps_alpha(tmp_path):
    g = np.full((20, 30), 90, np.uint8)
    alpha = np.zeros((20, 30), np.uint8)
    alpha[:, 10:] = 255
    alpha[:, 20:] = 128
    p = tmp_path / "la.png"
    Image.fromarray(np.dstack([g, alpha]), "LA").save(p)
    li = load_image(p)
    assert li.has_alpha and np.array_equal(li.alpha, alpha)
    assert (li.pixels[:, :10] == 255).all()  # undefined colour under full transparency -> white
    assert (li.pixels[:, 10:] == 90).all()  # visible (incl. half-transparent) colour kept as stored


def test_palette_with_transparency(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.fromarray(_pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    idx = np.asarray(im)
    transparent_index = int(idx[-1, -1])  # the blue band
    im.info["transparency"] = transparent_index
    im.save(p, transparency=transparent_index)
    li = load_image(p)
    assert li.original_mode == "P" and li.has_alpha
    assert (li.alpha[idx == transparent_index] == 0).all() and (li.alpha[idx != transparent_index] == 255).all()
    assert _dominant(_quadrant_means(li.pixels)["tl"]) == "r"


def test_palette_without_transparency(tmp_path):
    p = tmp_path / "pal.gif"
    Image.fromarray(_pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(p)
    li = load_image(p)
    assert not li.has_alpha and li.pixels.shape == (48, 64, 3)
    q = _quadrant_means(li.pixels)
    assert (_dominant(q["tl"]), _dominant(q["tr"]), _dominant(q["bl"])) == ("r", "g", "b")


def test_rgba_alpha_remembered_and_restored_on_save(tmp_path):
    rgb = _pattern()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :8] = 0
    alpha[:, 8:16] = 100
    p = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(p)
    li = load_image(p)
    assert li.has_alpha and np.array_equal(li.alpha, alpha)
    assert (li.pixels[:, :8] == 255).all()
    assert np.array_equal(li.pixels[:, 8:], rgb[:, 8:])
    out = save_image(tmp_path / "result.png", li.pixels, like=li)
    back = Image.open(out)
    assert back.mode == "RGBA"
    arr = np.asarray(back)
    assert np.array_equal(arr[..., 3], alpha) and np.array_equal(arr[:, 8:, :3], rgb[:, 8:])
    # JPEG cannot hold alpha: plain RGB is written.
    assert Image.open(save_image(tmp_path / "result.jpg", li.pixels, like=li)).mode == "RGB"


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    g = np.array([[0, 1000, 32896], [40000, 65280, 65535]], np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(g).save(p)  # Pillow writes I;16 as a 16-bit PNG
    li = load_image(p)
    assert li.original_mode.startswith("I")
    assert li.pixels[..., 0].tolist() == [[0, 4, 128], [156, 254, 255]]


def test_16bit_rgb_png_uses_all_bits(tmp_path):
    bgr = np.zeros((2, 3, 3), np.uint16)
    bgr[0, 0] = (1000, 2000, 30000)  # B, G, R
    bgr[0, 1] = (65535, 32896, 0)
    bgr[1, :] = (257, 514, 771)
    p = tmp_path / "deep_rgb.png"
    assert cv2.imwrite(str(p), bgr)
    li = load_image(p)
    assert li.pixels[0, 0].tolist() == [117, 8, 4]  # rint(v / 257); Pillow alone would give [117, 7, 3]
    assert li.pixels[0, 1].tolist() == [0, 128, 255]
    assert li.pixels[1, 0].tolist() == [3, 2, 1]


def test_16bit_rgba_png(tmp_path):
    bgra = np.full((4, 4, 4), 40000, np.uint16)
    bgra[0, 0, 3] = 0
    p = tmp_path / "deep_rgba.png"
    assert cv2.imwrite(str(p), bgra)
    li = load_image(p)
    assert li.has_alpha and li.alpha[1, 1] == 156 and li.alpha[0, 0] == 0
    assert li.pixels[1, 1].tolist() == [156, 156, 156]


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((32, 32, 4), np.uint8)
    cmyk[:, :16, 0] = 255  # cyan
    cmyk[:, 16:, 1] = 255  # magenta
    p = tmp_path / "print.jpg"
    Image.fromarray(cmyk, "CMYK").save(p, quality=95)
    li = load_image(p)
    assert li.original_mode == "CMYK" and li.pixels.shape == (32, 32, 3)
    cyan = li.pixels[8, 4].astype(int)
    magenta = li.pixels[8, 28].astype(int)
    assert cyan[0] < 60 and cyan[1] > 190 and cyan[2] > 190
    assert magenta[1] < 60 and magenta[0] > 190 and magenta[2] > 190
    assert li.icc_profile is None  # a CMYK profile must never be attached to RGB output


@pytest.mark.parametrize("orientation, expect", [
    (3, ("b", "b", "g", "r")),  # rotated 180: blue band on top, red block bottom-right
    (6, ("b", "r", "b", "g")),  # rotated 90 clockwise: blue band on the left, red block top-right
])
def test_exif_orientation(tmp_path, orientation, expect):
    a = _pattern(48, 64)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make, to check EXIF is carried
    p = tmp_path / f"rot{orientation}.jpg"
    im.save(p, quality=95, exif=exif.tobytes())
    li = load_image(p)
    assert li.exif_orientation == orientation
    assert li.original_size == (64, 48)
    expected_shape = (64, 48, 3) if orientation == 6 else (48, 64, 3)
    assert li.pixels.shape == expected_shape
    q = _quadrant_means(li.pixels)
    got = tuple(_dominant(q[k]) for k in ("tl", "tr", "bl", "br"))
    assert got == expect

    # Saving: pixels are stored upright and the orientation tag reset, so every viewer shows the same.
    out = save_image(tmp_path / f"out{orientation}.jpg", li.pixels, like=li)
    back = Image.open(out)
    assert back.getexif().get(0x0112, 1) == 1
    assert back.getexif().get(0x010F) == "TestCam"
    li2 = load_image(out)
    assert li2.pixels.shape == expected_shape
    assert np.abs(li2.pixels.astype(int) - li.pixels).mean() < 3


# ----------------------------------------------------------------------------- arrays


def test_as_rgb_uint8_accepts_and_converts():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb_uint8(g).shape == (3, 4, 3)
    assert as_rgb_uint8(g[:, :, None]).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert as_rgb_uint8(rgba).shape == (3, 4, 3)
    assert as_rgb_uint8(np.full((2, 2, 3), 65535, np.uint16)).max() == 255
    assert as_rgb_uint8(np.ones((2, 2), bool)).min() == 255
    f = as_rgb_uint8(np.full((2, 2, 3), 0.5, np.float32))
    assert f.dtype == np.uint8 and f[0, 0, 0] == 128
    a = np.zeros((5, 6, 3), np.uint8)
    assert as_rgb_uint8(a) is a  # already right: no copy


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((4,), np.uint8), "shape"),
    (np.full((2, 2, 3), 200.0), r"\[0, 1\]"),
    (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 3), np.complex64), "dtype"),
    (np.full((2, 2, 3), -1, np.int32), "outside"),
])
def test_as_rgb_uint8_refuses(bad, match):
    with pytest.raises(InputImageError, match=match):
        as_rgb_uint8(bad, name="frame_007")


# ----------------------------------------------------------------------------- saving


def test_atomic_save_leaves_no_temp_files(tmp_path):
    out = tmp_path / "sub" / "res.png"
    save_image(out, _pattern())
    save_image(out, _pattern()[::-1].copy())  # overwrite an earlier output of ours
    assert sorted(os.listdir(out.parent)) == ["res.png"]
    assert np.array_equal(np.asarray(Image.open(out)), _pattern()[::-1])


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(UnmaskError, match="res.png.*No space left"):
        save_image(tmp_path / "res.png", _pattern())
    assert os.listdir(tmp_path) == []


def test_masks_are_saved_single_channel(tmp_path):
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    out = save_image(tmp_path / "mask.png", m)
    im = Image.open(out)
    assert im.mode == "L"
    assert np.array_equal(np.asarray(im), m.astype(np.uint8) * 255)


def test_jpeg_written_at_high_quality_444(tmp_path):
    out = save_image(tmp_path / "q.jpg", np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8))
    im = Image.open(out)
    assert im.format == "JPEG" and get_sampling(im) == 0  # 4:4:4 chroma


def test_icc_profile_is_carried(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    p = tmp_path / "tagged.jpg"
    Image.fromarray(_pattern()).save(p, quality=95, icc_profile=srgb)
    li = load_image(p)
    assert li.icc_profile == srgb
    out = save_image(tmp_path / "tagged_out.png", li.pixels, like=li)
    assert Image.open(out).info.get("icc_profile") == srgb
    # A mask is not an RGB image: the profile is not attached to it.
    out_mask = save_image(tmp_path / "tagged_mask.png", np.zeros((48, 64), bool), like=li)
    assert Image.open(out_mask).info.get("icc_profile") is None


def test_unknown_extension_refused(tmp_path):
    with pytest.raises(UnmaskError, match="extension"):
        save_image(tmp_path / "result.xyz", _pattern())


def test_refuses_to_overwrite_input(tmp_path):
    p = tmp_path / "me.png"
    Image.fromarray(_pattern()).save(p)
    before = p.read_bytes()
    li = load_image(p)
    with pytest.raises(UnmaskError, match="overwrite"):
        save_image(p, np.zeros_like(li.pixels), like=li)
    with pytest.raises(UnmaskError, match="overwrite"):
        save_image(tmp_path / "." / "me.png", np.zeros_like(li.pixels), protect=[p])
    link = tmp_path / "alias.png"
    link.symlink_to(p)
    with pytest.raises(UnmaskError, match="overwrite"):
        ensure_not_input(link, [p])
    ensure_not_input(tmp_path / "other.png", [p, None])  # a different path is fine
    assert p.read_bytes() == before
