"""Decoding any image file to 3-channel 8-bit RGB, one documented way.

- EXIF orientation is applied.
- Grayscale (L, I, I;16, F) is replicated to three channels; 16-bit and
  float data are scaled to 0..255 by their nominal range (I;16 / 257).
- Transparent images (RGBA, LA, palette with transparency) are composited on
  white, which is what a viewer shows and what most datasets assume.
- CMYK and YCbCr go through Pillow's converters.
- Declared sizes above ``MAX_PIXELS`` are refused as decompression bombs
  before any pixel is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 64_000_000  # 8000x8000: far above any training image, far below a bomb
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
UNSUPPORTED_IMAGE_EXTS = {".heic", ".heif", ".svg", ".psd", ".raw", ".cr2", ".nef", ".arw", ".dng", ".avif", ".jxl"}

Image.MAX_IMAGE_PIXELS = None  # we enforce MAX_PIXELS ourselves with a clearer message


class ImageProblem(Exception):
    """A file that cannot be used as a training image; str() is the reason."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = 1.0 if arr.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def check_header(path: Path) -> tuple[int, int, str]:
    """Open lazily; return (width, height, format) or raise ImageProblem."""
    ext = path.suffix.lower()
    if ext in UNSUPPORTED_IMAGE_EXTS:
        raise ImageProblem(f"unsupported image format {ext}")
    if ext not in IMAGE_EXTS:
        raise ImageProblem(f"not an image file (extension {ext or 'none'!s})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageProblem(f"unreadable: {e.strerror}") from None
    if size == 0:
        raise ImageProblem("zero-byte file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            fmt = img.format or "?"
    except Image.UnidentifiedImageError:
        raise ImageProblem("not an image (content is not a recognised image format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageProblem(f"corrupt header: {e}") from None
    if w * h > MAX_PIXELS:
        raise ImageProblem(f"declared size {w}x{h} exceeds {MAX_PIXELS:,} pixels (decompression bomb?)")
    if w < 1 or h < 1:
        raise ImageProblem(f"declared size {w}x{h} is empty")
    return w, h, fmt


def load_rgb(path: Path | str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode fully to uint8 RGB ``[H, W, 3]``, optionally resized (bilinear)."""
    path = Path(path)
    check_header(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
    except ImageProblem:
        raise
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise ImageProblem("truncated file (image data ends early)") from None
        raise ImageProblem(f"corrupt image data: {msg}") from None
    except (ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageProblem(f"corrupt image data: {e}") from None
    if size is not None and rgb.size != size:
        rgb = rgb.resize(size, Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)
