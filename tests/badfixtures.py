"""Builds the bad-data fixture folder: every way a real dataset goes wrong."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge size (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def make_bad_dataset(root: Path) -> dict[str, str]:
    """Returns {relative path: expected reason fragment} for every unusable file."""
    rng = np.random.default_rng(1)
    good, odd = root / "good", root / "odd"
    for d in (good, odd, root / "empty", root / "__MACOSX" / "good", root / ".hidden"):
        d.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(rgb).save(good / f"ok{i}.jpg", quality=90)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (good / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (good / "zero.jpg").write_bytes(b"")
    (good / "notes.jpg").write_text("this is not an image")
    (good / "bomb.png").write_bytes(png_declaring(20000, 20000))
    (good / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (good / "readme.txt").write_text("hello")
    # Odd but valid formats: all must decode to 3-channel RGB.
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA").save(odd / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(odd / "palette.png")
    Image.fromarray(rgb).convert("L").save(odd / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(odd / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)).save(odd / "gray16.png")
    Image.fromarray(rgb).save(odd / "photo.bmp")
    (root / "__MACOSX" / "good" / "._ok0.jpg").write_bytes(b"\x00\x05\x16\x07")
    (good / "._ok1.jpg").write_bytes(b"\x00\x05\x16\x07")
    (good / ".DS_Store").write_bytes(b"\x00")
    Image.fromarray(rgb).save(root / ".hidden" / "x.png")
    return {
        "good/truncated.jpg": "truncated",
        "good/zero.jpg": "zero-byte",
        "good/notes.jpg": "not an image",
        "good/bomb.png": "decompression bomb",
        "good/photo.heic": "unsupported image format",
        "good/readme.txt": "not an image file",
    }
