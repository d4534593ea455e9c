"""Atomic file writes: temp file in the same folder, then ``os.replace``.

Keras writes ``.keras`` files in place, so an interrupted save would destroy
the previous good file; everything tlapp persists goes through here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success move it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(target: Path, keep_previous: Optional[Path] = None) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; on success swap it in.

    ``keep_previous``: move the folder being replaced there (a fallback) instead of deleting it.
    A crash between the two renames leaves ``.<name>.old``; :func:`recover_dir` puts it back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            if keep_previous is not None:
                shutil.rmtree(keep_previous, ignore_errors=True)
                os.replace(old, keep_previous)
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(target: Path) -> list[str]:
    """After a crash: put back a folder caught between its two renames, and delete the temp
    folders/files an interrupted atomic write left beside ``target``. Returns what was done."""
    target = Path(target)
    done = []
    old = target.with_name(f".{target.name}.old")
    if not target.exists() and old.is_dir():
        os.replace(old, target)
        done.append(f"restored {target.name} from an interrupted save")
    if target.parent.is_dir():
        for p in target.parent.glob(f".{target.name}.*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            done.append(f"removed stale temporary {p.name}")
    return done


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MB blocks (checkpoint manifests, data hashes, duplicates)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
