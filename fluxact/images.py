"""images: read and write the files ``fluxact denoise`` filters (.npy, PNG, TIFF).

PNG and TIFF go through Pillow (the ``images`` extra), the imaging library that reads and
writes both formats itself, without plugins or native codecs to install; imageio would add a
layer over the same Pillow code for these formats. What Pillow keeps exactly, fluxact takes:

- greyscale, 8-bit ("L") and 16-bit ("I;16"), PNG and TIFF; bilevel ("1") as 0 and 1,
  written back as 8-bit greyscale 0 to 255 (diffusion makes grey levels of it);
- colour, 8-bit RGB (PNG and TIFF): an (H, W, 3) array filtered with channel axis -1;
- float32 TIFF ("F"), greyscale.

16-bit colour TIFF, which Pillow reads only by dropping the low byte of every sample, goes
through tifffile (also in the ``images`` extra): the TIFF library of the scientific Python
stack (scikit-image and imageio read TIFF through it), pure Python over numpy, released
every few weeks. It is used for that case only.

Refused with one line: 16-bit colour PNG (neither library keeps its 16 bits: save it as
TIFF), alpha and palette images (convert them to RGB first: what a filter should do with
alpha is the user's choice), multi-frame files (one image per file), and images beyond
Pillow's decompression bomb limit (MAX_IMAGE_PIXELS).

Written files keep the input's format where they can: an integer image (8- or 16-bit) is
written as the same integer type, its filtered values rounded to the nearest integer and
clipped to the type's range (diffusion keeps them in range; rounding is the only change);
float data (a .npy input, float TIFF) are written as float32 TIFF, or as float64 .npy. Every
file is written through fluxact.files (a temporary file beside the target, renamed over it).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .denoising import SignalError, load_signal
from .files import open_atomic

#: suffixes read and written through Pillow, and Pillow's name of their format
PILLOW_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
SUFFIXES = (".npy", *PILLOW_FORMATS)
#: Pillow mode -> numpy dtype of the pixel values, and whether it holds colour
_MODES = {"1": (np.bool_, False), "L": (np.uint8, False), "I;16": (np.uint16, False),
          "I;16B": (np.uint16, False), "I;16L": (np.uint16, False), "F": (np.float32, False),
          "RGB": (np.uint8, True)}


@dataclass(frozen=True, slots=True)
class Image:
    """Pixel values as float64 (H, W) or (H, W, 3), with what they were read from."""

    values: np.ndarray
    dtype: np.dtype  # the file's pixel type (float64 for .npy)
    colour: bool  # (H, W, 3) RGB: filter with channel_axis=-1


def _pillow() -> Any:
    try:
        from PIL import Image as pil
    except ImportError:
        raise SignalError("PNG and TIFF files need Pillow: pip install 'fluxact[images]' (or "
                          "pillow)") from None
    return pil


#: image formats fluxact does not read (lossy or palette formats: convert them first)
OTHER_IMAGES = (".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".jp2")


def suffix_of(path: str | os.PathLike[str]) -> str:
    """".png", ".tif", ".tiff" for Pillow's formats; ".npy" for any other name (numpy's
    format, checked when read); refused: image formats fluxact does not take."""
    suffix = Path(path).suffix.lower()
    if suffix in OTHER_IMAGES:
        raise SignalError(f"{os.fspath(path)}: fluxact reads and writes .npy, PNG and TIFF, not "
                          f"{suffix}; convert the image (lossless) first")
    return suffix if suffix in PILLOW_FORMATS else ".npy"


def read_image(path: str | os.PathLike[str], channel_axis: int | None = None) -> Image:
    """The pixels of a .npy, PNG or TIFF file (see the module docstring)."""
    name, suffix = os.fspath(path), suffix_of(path)
    if suffix == ".npy":
        a = load_signal(path, channel_axis)
        return Image(a.astype(np.float64), np.dtype(np.float64), False)
    pil = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            with pil.open(path) as im:
                if im.format != PILLOW_FORMATS[suffix]:
                    raise SignalError(f"{name} holds a {im.format} image, not "
                                      f"{PILLOW_FORMATS[suffix]}; name it after its format")
                if getattr(im, "n_frames", 1) != 1:
                    raise SignalError(f"{name} holds {im.n_frames} frames; save one image per "
                                      "file (a volume: as one .npy array)")
                mode, bits = im.mode, im.info.get("bits") or _tiff_bits(im) or _raw_bits(im)
                rgb16 = mode == "RGB" and bits == 16 and im.format == "TIFF"
                if mode not in _MODES or (mode == "RGB" and bits not in (None, 8)
                                          and not rgb16):
                    png16 = mode == "RGB" and bits == 16
                    raise SignalError(
                        f"{name} is a {mode} image{f' of {bits}-bit samples' if bits else ''}; "
                        "fluxact reads greyscale (8/16-bit, float32 TIFF), 8-bit RGB and "
                        "16-bit RGB TIFF: " + ("save it as a 16-bit TIFF" if png16 else
                                               "convert it (e.g. to RGB without alpha)")
                        + " or as .npy")
                pixels = _tiff_rgb16(path, name) if rgb16 else np.asarray(im)
    except SignalError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in Pillow's parsers
        # with OSError, ValueError, SyntaxError, TypeError, KeyError, struct.error, ...
        why = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise SignalError(f"cannot read {name}: {why}") from None
    dtype, colour = (np.uint16, True) if rgb16 else _MODES[mode]
    values = pixels.astype(np.float64)
    if min(values.shape[:2]) < 2:
        raise SignalError(f"{name} needs at least 2 pixels per axis, got {values.shape[:2]}")
    if channel_axis is not None and not colour:
        raise SignalError(f"{name} is a greyscale image: it has no channel axis")
    if channel_axis is not None and channel_axis not in (-1, 2):
        raise SignalError(f"{name} is an H x W x 3 colour image: its channel axis is -1 (or 2), "
                          f"not {channel_axis}")
    return Image(values, np.dtype(dtype), colour)


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError:
        raise SignalError("16-bit colour TIFF needs tifffile: pip install 'fluxact[images]' "
                          "(or tifffile)") from None
    return tifffile


def _tiff_rgb16(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """The (H, W, 3) uint16 samples of a 16-bit RGB TIFF, through tifffile."""
    pixels = _tifffile().imread(path)
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise SignalError(f"{name}: expected 16-bit RGB samples (H, W, 3), tifffile read "
                          f"{pixels.dtype} of shape {pixels.shape}")
    return pixels


def _raw_bits(im: Any) -> int | None:
    """16 where Pillow decodes 16-bit samples into an 8-bit mode (a 16-bit RGB PNG opens as
    "RGB" with raw mode "RGB;16B": its low bytes would be dropped)."""
    tile = getattr(im, "tile", None) or []
    raw = tile[0].args if tile else None
    if isinstance(raw, tuple):
        raw = raw[0] if raw else None
    return 16 if isinstance(raw, str) and ";16" in raw else None


def _tiff_bits(im: Any) -> int | None:
    """A TIFF's bits per sample (tag 258), the largest of its samples."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return None
    bits = tags.get(258)
    if isinstance(bits, tuple):
        return max(bits) if bits else None
    return bits


def write_image(path: str | os.PathLike[str], values: np.ndarray, like: Image) -> str:
    """Write ``values`` (the filtered ``like``) to ``path`` atomically, in the format of its
    suffix; returns what was done to the values ("" when nothing)."""
    suffix = suffix_of(path)
    if suffix == ".npy":
        with open_atomic(path) as f:
            np.save(f, values)
        return ""
    pil = _pillow()
    if like.dtype == np.bool_:  # diffused 0/1 values are grey levels: 8-bit, 0 to 255
        values, like = values * 255, Image(values, np.dtype(np.uint8), like.colour)
    if np.issubdtype(like.dtype, np.integer):
        dtype = like.dtype
        if suffix == ".png" and dtype == np.uint16 and values.ndim == 3:
            raise SignalError(f"cannot write {os.fspath(path)}: 16-bit colour PNG is not "
                              "supported; write a TIFF (.tif) or .npy")
        info = np.iinfo(dtype)
        out = np.clip(np.rint(values), info.min, info.max).astype(dtype)
        note = f"rounded to {dtype} ({info.min} to {info.max})"
        if dtype == np.uint16 and values.ndim == 3:  # 16-bit RGB TIFF: Pillow cannot
            encoded = io.BytesIO()  # tifffile wants a named file; ours is an O_EXCL descriptor
            _tifffile().imwrite(encoded, out, photometric="rgb")
            with open_atomic(path) as f:
                f.write(encoded.getvalue())
            return note
    else:
        if suffix == ".png" or values.ndim == 3:
            kind = "colour " if values.ndim == 3 else ""
            raise SignalError(f"cannot write {os.fspath(path)}: float {kind}data go to .npy "
                              "(or, greyscale, to a float32 TIFF), not to PNG")
        out, note = values.astype(np.float32), "as float32"
    image = pil.fromarray(out)  # L, I;16, RGB or F from the dtype and shape
    with open_atomic(path) as f:
        image.save(f, format=PILLOW_FORMATS[suffix])
    return note
