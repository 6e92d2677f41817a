"""Read any photo a user may hand us, and write images without ever leaving a half-written file.

Everything downstream works on one representation: ``HxWx3`` ``uint8`` RGB with
the EXIF orientation already applied (so landmarks, masks and outputs agree
with what an image viewer shows). Whatever the file held (grey, palette,
alpha, 16-bit, CMYK) is converted here once, and what is needed to write a
result "like" the input (format, ICC profile, EXIF, alpha) is remembered in
:class:`LoadedImage`.

Bad input never surfaces as a Pillow/OpenCV traceback: it becomes an
:class:`~stylegan_unmask.errors.InputImageError` naming the file and the problem.
"""
from __future__ import annotations

import contextlib
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_file
from .errors import InputImageError, UnmaskError

PathLike = Union[str, "os.PathLike[str]"]

#: Default pixel limit (width x height). Pillow warns at ~89 MP and refuses at
#: ~179 MP; 200 MP still admits every camera sensor on the market while a
#: forged header claiming 100000x100000 is refused before any memory is used.
DEFAULT_MAX_PIXELS = 200_000_000

EXIF_ORIENTATION_TAG = 0x0112
_JPEG_MAX_EXIF = 65533  # an APP1 segment cannot hold more

# Extension -> Pillow format name, for writing; the same extensions are the photos folders are searched for.
_SAVE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}

#: The one list of photo extensions (lower case): what folder runs, eval-masks and the dataset tool look for.
IMAGE_EXTENSIONS = tuple(_SAVE_FORMATS)

_PIL_LOCK = threading.Lock()  # guards the temporary change of Image.MAX_IMAGE_PIXELS
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(eq=False)  # holds arrays: compare fields explicitly
class LoadedImage:
    """A decoded photo plus what is needed to write results that look like it."""

    pixels: np.ndarray  # HxWx3 uint8 RGB, EXIF orientation applied
    path: Optional[Path]  # None when built from an array
    original_size: Tuple[int, int]  # (width, height) as stored in the file, before orientation
    exif_orientation: int  # 1..8, the tag as found (1 when absent)
    original_mode: str  # Pillow mode of the file ("RGB", "L", "I;16", "CMYK", ...)
    format: Optional[str]  # Pillow format name ("JPEG", "PNG", ...)
    icc_profile: Optional[bytes] = None  # only kept when it describes RGB data
    exif: Optional[bytes] = None  # EXIF to carry to outputs, orientation reset to 1
    has_alpha: bool = False
    alpha: Optional[np.ndarray] = None  # HxW uint8, oriented like ``pixels``
    dpi: Optional[Tuple[float, float]] = None

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of ``pixels`` (after orientation)."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def name(self) -> str:
        return "<array>" if self.path is None else self.path.name


# ----------------------------------------------------------------------------- arrays


def as_rgb_uint8(array, name: Optional[PathLike] = None) -> np.ndarray:
    """Validate an in-memory image and return it as a contiguous HxWx3 uint8 RGB array.

    Accepts HxW / HxWx1 (grey), HxWx3 (RGB) and HxWx4 (RGBA: alpha dropped)
    arrays of dtype uint8, uint16 (scaled by 255/65535), bool (0/255) or float
    in [0, 1]. Anything else is refused with an :class:`InputImageError`
    rather than guessed at. ``name`` is used in error messages. An array that
    is already contiguous HxWx3 uint8 is returned as is (not copied).
    """
    if isinstance(array, LoadedImage):
        return array.pixels
    try:
        arr = np.asarray(array)
    except Exception as exc:  # noqa: BLE001 - anything not array-like
        raise InputImageError(name, f"cannot be read as an image array ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise InputImageError(
            name, f"image array has unsupported dtype {arr.dtype}; expected uint8, uint16, bool or float"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputImageError(name, f"image array has shape {arr.shape}; expected HxW, HxWx3 or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputImageError(name, f"image is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = _scale_16_to_8(arr)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputImageError(name, "float image array contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputImageError(
                name, f"float image array must be in [0, 1] (got {lo:g}..{hi:g}); convert 0-255 data to uint8 first"
            )
        arr = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    else:  # signed / wider integers: only accept values that are already 8-bit
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputImageError(
                name, f"integer image array of dtype {arr.dtype} has values {lo}..{hi}, outside 0..255"
            )
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def _scale_16_to_8(arr: np.ndarray) -> np.ndarray:
    """Map 0..65535 onto 0..255 with rounding (65535/255 = 257 exactly)."""
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


# ----------------------------------------------------------------------------- loading


def load_image(path: PathLike, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode a photo into an upright HxWx3 uint8 RGB :class:`LoadedImage`.

    ``max_pixels`` (width x height, checked from the header before decoding)
    protects against decompression bombs; ``None`` disables the limit.
    Raises :class:`InputImageError` for anything that is not a readable image.
    """
    p = Path(path)
    _check_file(p)
    try:
        with _open_without_pillow_limit(p) as im:
            return _decode(p, im, max_pixels)
    except InputImageError:
        raise
    except UnidentifiedImageError:
        pass  # maybe OpenCV knows the format; decided below
    except Image.DecompressionBombError as exc:  # only reachable if someone patched Pillow's limit
        raise InputImageError(p, f"refused as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError) as exc:
        raise InputImageError(p, _describe_decode_failure(exc)) from None
    return _load_with_opencv(p, max_pixels)


def _check_file(p: Path) -> None:
    if not p.exists():
        raise InputImageError(p, "file not found")
    if p.is_dir():
        raise InputImageError(p, "is a directory, not an image file")
    if not p.is_file():
        raise InputImageError(p, "is not a regular file")
    if not os.access(p, os.R_OK):
        raise InputImageError(p, "cannot be read (permission denied)")
    if p.stat().st_size == 0:
        raise InputImageError(p, "file is empty (0 bytes)")


@contextlib.contextmanager
def _open_without_pillow_limit(p: Path) -> Iterator[Image.Image]:
    """Open lazily with Pillow's own bomb check off: our ``max_pixels`` check replaces it.

    Pillow's limit is a process-wide global, so it is lifted only for the
    header parse, under a lock, and restored at once.
    """
    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(p)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    try:
        yield im
    finally:
        im.close()


def _check_pixels(p: Path, width: int, height: int, max_pixels: Optional[int]) -> None:
    if width <= 0 or height <= 0:
        raise InputImageError(p, f"image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise InputImageError(
            p,
            f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.0f} megapixels (max_pixels); this guards against decompression bombs — "
            "raise max_pixels if you trust the file, or downscale it",
        )


def _decode(p: Path, im: Image.Image, max_pixels: Optional[int]) -> LoadedImage:
    width, height = im.size
    _check_pixels(p, width, height, max_pixels)
    original_mode = im.mode
    fmt = im.format
    deep_rgb = _is_multichannel_16bit(im)  # before getexif(): for PNG that decodes the pixels and clears .tile
    with warnings.catch_warnings():  # a damaged EXIF block is common and harmless: we just lose it
        warnings.simplefilter("ignore")
        try:
            exif = im.getexif()
        except (OSError, SyntaxError, ValueError, struct.error, KeyError, IndexError, TypeError):
            exif = Image.Exif()
        try:
            orientation = int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)
        except (TypeError, ValueError):
            orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    icc = im.info.get("icc_profile") or None
    dpi = im.info.get("dpi")

    if deep_rgb:
        rgb, alpha = _decode_16bit_with_opencv(p)
        if rgb is not None:
            if (rgb.shape[1], rgb.shape[0]) != (width, height):
                rgb = alpha = None  # disagreement between decoders: trust Pillow below
        if rgb is not None:
            rgb = _orient_array(rgb, orientation)
            alpha = None if alpha is None else _orient_array(alpha, orientation)
            return LoadedImage(
                pixels=np.ascontiguousarray(rgb), path=p, original_size=(width, height),
                exif_orientation=orientation, original_mode=original_mode, format=fmt,
                icc_profile=_rgb_profile_only(icc), exif=_exif_for_output(exif, orientation),
                has_alpha=alpha is not None, alpha=alpha, dpi=_dpi(dpi),
            )

    im.load()  # decode now: truncated/corrupt data fails here
    upright = ImageOps.exif_transpose(im) if orientation != 1 else im
    rgb, alpha, icc_kept = _to_rgb(upright, icc)
    return LoadedImage(
        pixels=rgb, path=p, original_size=(width, height), exif_orientation=orientation,
        original_mode=original_mode, format=fmt, icc_profile=icc_kept,
        exif=_exif_for_output(exif, orientation), has_alpha=alpha is not None, alpha=alpha, dpi=_dpi(dpi),
    )


def _to_rgb(im: Image.Image, icc: Optional[bytes]) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[bytes]]:
    """Convert any Pillow mode to (RGB uint8, alpha uint8 or None, ICC profile still valid for the RGB)."""
    mode = im.mode
    alpha = None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(im)
        if grey.dtype != np.uint16:  # mode "I" (32-bit): 16-bit PNG/TIFF data in older Pillow
            grey = np.clip(grey, 0, 65535).astype(np.uint16)
        g8 = _scale_16_to_8(grey)
        rgb = np.repeat(g8[:, :, None], 3, axis=2)
        return np.ascontiguousarray(rgb), None, None
    if mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        grey = np.nan_to_num(grey, nan=0.0, posinf=1.0, neginf=0.0)
        g8 = np.rint(np.clip(grey, 0.0, 1.0) * 255.0).astype(np.uint8)  # float TIFF convention: 0..1
        return np.ascontiguousarray(np.repeat(g8[:, :, None], 3, axis=2)), None, None
    if mode == "CMYK":
        return _cmyk_to_rgb(im, icc), None, None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) or (
        mode in ("L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        rgb = rgba[:, :, :3].copy()
        alpha = rgba[:, :, 3].copy()
        # Colour under fully transparent pixels is undefined (often black or
        # garbage); white keeps detection/projection sane and is invisible
        # once the alpha is written back.
        rgb[alpha == 0] = 255
    else:
        rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    keep_icc = _rgb_profile_only(icc) if mode in ("RGB", "RGBA", "RGBa", "P", "PA") else None
    return np.ascontiguousarray(rgb), alpha, keep_icc


def _cmyk_to_rgb(im: Image.Image, icc: Optional[bytes]) -> np.ndarray:
    """Colour-managed CMYK -> sRGB when the file has a profile, Pillow's formula otherwise."""
    if icc:
        try:
            import io

            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if out is not None:
                return np.ascontiguousarray(np.asarray(out))
        except Exception:  # noqa: BLE001 - a broken profile must not make the photo unreadable
            pass
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _is_multichannel_16bit(im: Image.Image) -> bool:
    """Pillow decodes 16-bit RGB(A) by keeping the high byte; OpenCV gives us all 16 bits."""
    if im.mode not in ("RGB", "RGBA") or not im.tile:
        return False
    raw = im.tile[0][3] if len(im.tile[0]) > 3 else None
    rawmode = raw[0] if isinstance(raw, tuple) and raw else raw
    return isinstance(rawmode, str) and ";16" in rawmode


def _read_bytes_for_opencv(p: Path) -> np.ndarray:
    # np.fromfile + imdecode also works for paths OpenCV's imread cannot open (non-ASCII on Windows).
    return np.fromfile(str(p), dtype=np.uint8)


def _decode_16bit_with_opencv(p: Path) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    import cv2

    try:
        arr = cv2.imdecode(_read_bytes_for_opencv(p), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None, None
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None, None
    rgb = _scale_16_to_8(arr[:, :, 2::-1])
    alpha = _scale_16_to_8(arr[:, :, 3]) if arr.shape[2] == 4 else None
    if alpha is not None:
        rgb[alpha == 0] = 255
    return np.ascontiguousarray(rgb), alpha


def _load_with_opencv(p: Path, max_pixels: Optional[int]) -> LoadedImage:
    """Last resort for formats Pillow does not identify but OpenCV reads (e.g. some TIFF/JPEG 2000 variants)."""
    import cv2

    head = p.read_bytes()[:64]
    try:
        data = _read_bytes_for_opencv(p)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except (cv2.error, MemoryError, OSError):
        arr = None
    if arr is None:
        raise InputImageError(p, _describe_unreadable(head))
    h, w = arr.shape[:2]
    _check_pixels(p, w, h, max_pixels)
    alpha = None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint16:
        arr = _scale_16_to_8(arr)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 1 if arr.dtype.kind == "f" else 255)
        arr = np.rint(arr * (255 if arr.dtype.kind == "f" else 1)).astype(np.uint8)
    if arr.shape[2] == 1:
        rgb = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 2:  # grey + alpha
        rgb, alpha = np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1]
    else:
        rgb = arr[:, :, 2::-1]
        alpha = arr[:, :, 3] if arr.shape[2] == 4 else None
    rgb = np.ascontiguousarray(rgb)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha)
        rgb[alpha == 0] = 255
    return LoadedImage(
        pixels=rgb, path=p, original_size=(w, h), exif_orientation=1, original_mode=f"cv2:{arr.dtype}x{arr.shape[2]}",
        format=None, has_alpha=alpha is not None, alpha=alpha,
    )


def _describe_unreadable(head: bytes) -> str:
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        return "is a HEIC/HEIF photo, which cannot be decoded here; convert it to JPEG or PNG"
    if head[:4] == b"%PDF":
        return "is a PDF document, not an image"
    try:
        text = head.decode("utf-8")
        if text and all(c.isprintable() or c in "\r\n\t" for c in text):
            return "is not an image file (it contains text)"
    except UnicodeDecodeError:
        pass
    return "is not an image file in a format that can be read (Pillow and OpenCV both failed to identify it)"


def _describe_decode_failure(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    low = msg.lower()
    if "truncated" in low or isinstance(exc, EOFError) or "premature end" in low:
        return "image data is truncated (incomplete download or copy?)"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode this image"
    return f"image data is corrupt or unsupported ({msg})"


def _orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an HxW[xC] array, like ImageOps.exif_transpose."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return np.swapaxes(a, 0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.swapaxes(a, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _rgb_profile_only(icc: Optional[bytes]) -> Optional[bytes]:
    """Keep an ICC profile only if it describes RGB data (bytes 16..20 of the header)."""
    if icc and len(icc) >= 20 and icc[16:20] == b"RGB ":
        return bytes(icc)
    return None


def _exif_for_output(exif: "Image.Exif", orientation: int) -> Optional[bytes]:
    if not exif:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = Image.Exif()  # a copy: Pillow caches the image's own Exif object
            out.load(exif.tobytes())
            if EXIF_ORIENTATION_TAG in out or orientation != 1:
                out[EXIF_ORIENTATION_TAG] = 1  # pixels are stored upright from now on
            data = out.tobytes()
    except Exception:  # noqa: BLE001 - unwritable maker notes etc.: drop EXIF rather than fail
        return None
    return data or None


def _dpi(value) -> Optional[Tuple[float, float]]:
    try:
        x, y = value
        return float(x), float(y)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------- saving


def ensure_not_input(out_path: PathLike, input_paths: Iterable[Optional[PathLike]]) -> None:
    """Refuse to write over a file the user gave us (also through links or another spelling)."""
    out = Path(out_path)
    for inp in input_paths:
        if inp is None:
            continue
        src = Path(inp)
        same = False
        if out.exists() and src.exists():
            try:
                same = os.path.samefile(out, src)
            except OSError:
                same = False
        if not same:
            same = os.path.normcase(os.path.abspath(out.resolve())) == os.path.normcase(os.path.abspath(src.resolve()))
        if same:
            raise UnmaskError(f"{out}: refusing to overwrite the input image {src}; choose another output path")


def save_image(
    path: PathLike,
    pixels,
    like: Optional[LoadedImage] = None,
    *,
    protect: Iterable[Optional[PathLike]] = (),
    quality: int = 95,
) -> Path:
    """Write an image atomically (temp file in the same folder, then ``os.replace``).

    The format comes from the extension. ``pixels`` is HxWx3 RGB uint8, or a
    2-D uint8/bool array (written single-channel "L"; bool -> 0/255, the mask
    convention). With ``like``, the input's ICC profile and EXIF (orientation
    reset to 1) are carried over, and its alpha channel is restored when the
    size matches and the format can hold it. JPEG is written at ``quality``
    with 4:4:4 chroma. Never overwrites ``like.path`` or any path in ``protect``.
    """
    out = Path(path)
    ext = out.suffix.lower()
    fmt = _SAVE_FORMATS.get(ext)
    if fmt is None:
        known = ", ".join(sorted(_SAVE_FORMATS))
        raise UnmaskError(f"{out}: unsupported output extension {ext or '(none)'!r}; use one of {known}")
    ensure_not_input(out, [like.path if like is not None else None, *protect])

    arr = np.asarray(pixels)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        arr2 = arr.reshape(arr.shape[0], arr.shape[1])
        if arr2.dtype == np.bool_:
            arr2 = arr2.astype(np.uint8) * 255
        elif arr2.dtype != np.uint8:
            raise ValueError(f"single-channel images must be uint8 or bool, got {arr2.dtype}")
        im = Image.fromarray(np.ascontiguousarray(arr2), "L")
        is_rgb = False
    else:
        rgb = as_rgb_uint8(arr, out) if not (arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8) else arr
        im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        is_rgb = True
    if im.width == 0 or im.height == 0:
        raise ValueError(f"{out}: refusing to write an empty image")

    params = {}
    if like is not None:
        if is_rgb and like.has_alpha and like.alpha is not None and fmt in _ALPHA_FORMATS and like.alpha.shape == (
            im.height,
            im.width,
        ):
            im = Image.fromarray(np.dstack([np.asarray(im), like.alpha]), "RGBA")
        if is_rgb and like.icc_profile:
            params["icc_profile"] = like.icc_profile
        if like.exif and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
            if fmt != "JPEG" or len(like.exif) <= _JPEG_MAX_EXIF:
                params["exif"] = like.exif
        if like.dpi and fmt in ("JPEG", "PNG", "TIFF"):
            params["dpi"] = like.dpi
    if fmt == "JPEG":
        params.update(quality=int(quality), subsampling=0, optimize=True)
    elif fmt == "WEBP":
        params.update(quality=int(quality), method=4)
    elif fmt == "TIFF":
        params.update(compression="tiff_deflate")

    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(out, im, fmt, params)
    return out


def _atomic_save(out: Path, im: Image.Image, fmt: str, params: dict) -> None:
    try:
        with atomic_file(out) as tmp, open(tmp, "wb") as f:
            im.save(f, format=fmt, **params)
    except BaseException as exc:
        if isinstance(exc, OSError):
            raise UnmaskError(f"{out}: cannot write image ({exc.strerror or exc})") from None
        raise


def blurred_luminance(img: np.ndarray, sigma: float) -> np.ndarray:
    """An RGB image's luminance blurred by ``sigma`` px: its lighting without detail, for drawn masks
    to take on (a large blur runs at a reduced size: the same look, much faster)."""
    import cv2

    lum = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    f = int(max(1, sigma // 4))
    if f == 1:
        return cv2.GaussianBlur(lum, (0, 0), sigma)
    h, w = lum.shape
    small = cv2.resize(lum, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / f), (w, h), interpolation=cv2.INTER_LINEAR)
