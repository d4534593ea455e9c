"""The parity samples an export carries (``parity_samples.npz``): the inputs,
what the in-app model answered, and the images as PNG bytes.

Stored without pickle (texts as a unicode array, PNGs as one byte array plus
offsets), so reading a run folder from elsewhere can never run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from tlapp.base.errors import ExportError

FILE = "parity_samples.npz"


def write_samples(
    path: Path,
    expected: np.ndarray,
    images: Optional[np.ndarray] = None,
    pngs: Optional[list[bytes]] = None,
    texts: Optional[list[str]] = None,
) -> None:
    arrays = {"expected": np.asarray(expected)}
    if texts is not None:
        arrays["texts"] = np.array(list(texts), dtype=str)
    if images is not None:
        arrays["images"] = images.astype(np.uint8)
    if pngs is not None:
        arrays["png_data"] = np.frombuffer(b"".join(pngs), dtype=np.uint8)
        arrays["png_offsets"] = np.cumsum([0] + [len(p) for p in pngs]).astype(np.int64)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def read_samples(path: Path) -> dict[str, object]:
    """``{"expected", "images"|"texts", "png" (list of bytes)}``; :class:`ExportError` if unreadable."""
    try:
        data = np.load(path, allow_pickle=False)
        out: dict[str, object] = {k: data[k] for k in data.files if not k.startswith("png_")}
        if "png_data" in data.files:
            raw, off = data["png_data"].tobytes(), data["png_offsets"]
            out["png"] = [raw[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: unreadable parity samples ({str(e).splitlines()[0][:120]})") from None
    return out
