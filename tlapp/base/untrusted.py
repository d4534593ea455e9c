"""Checks for model and weight files tlapp did not write (anything a user
imports or opens from elsewhere), before any loader touches them.

A ``.keras`` file is a zip whose ``config.json`` names classes to rebuild; the
2024-2026 Keras loader CVEs (CVE-2025-1550, CVE-2025-9905, CVE-2025-12060,
CVE-2026-1669, CVE-2026-1462 ...) came through exactly these doors: Lambda
layers and other code-carrying classes, archive members that escape their
folder, HDF5 external links and external/virtual datasets that read other
files, and sizes that exhaust memory. Every check raises :class:`WeightsError`
with one line naming the file and the reason; nothing is extracted to disk.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tlapp.base.errors import WeightsError

MAX_MEMBER_BYTES = 8 * 2**30  # one archive member, uncompressed
MAX_TOTAL_BYTES = 16 * 2**30  # a whole archive, uncompressed
MAX_RATIO = 200  # uncompressed / compressed for members above 1 MiB: more is a zip bomb
MAX_CONFIG_BYTES = 64 * 2**20
KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5", "model.weights.npz")
# Classes that carry or load code, or read other files, whatever module they claim.
DENIED_CLASSES = {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "__lambda__"}
ALLOWED_MODULES = ("keras", "keras_hub", "keras_nlp", "tlapp", "builtins")
LOOKUP_LAYERS = {"StringLookup", "IntegerLookup", "TextVectorization", "Hashing"}


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return f"member {name!r} points outside the archive"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"member {name!r} is a symbolic link"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"member {name!r} unpacks to {info.file_size:,} bytes (limit {MAX_MEMBER_BYTES:,})"
    if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return (
            f"member {name!r} compresses {info.file_size // max(info.compress_size, 1):,}:1 "
            f"(a zip bomb; limit {MAX_RATIO}:1)"
        )
    return None


def check_zip(path: Path, allowed: tuple[str, ...] = (), allowed_dirs: tuple[str, ...] = ()) -> list[zipfile.ZipInfo]:
    """Every member inside the archive, not a link, within size and compression limits;
    with ``allowed``/``allowed_dirs``, only those names (or folders)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{path}: not a readable zip archive ({e})") from None
    total = 0
    for info in infos:
        problem = _member_problem(info)
        if (
            problem is None
            and (allowed or allowed_dirs)
            and not info.is_dir()
            and info.filename not in allowed
            and not info.filename.startswith(allowed_dirs)
        ):
            problem = f"unexpected member {info.filename!r}"
        if problem:
            raise WeightsError(f"{path}: {problem}; refusing to open it")
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise WeightsError(f"{path}: unpacks to {total:,} bytes (limit {MAX_TOTAL_BYTES:,}); refusing to open it")
    return infos


def _walk(node: Any, where: str = "config") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "class_name" in node:
            yield where, node
        for k, v in node.items():
            yield from _walk(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{where}[{i}]")


def check_keras_config(config: Any, source: str) -> None:
    """Only Keras / keras-hub / tlapp classes; no class that runs code or reads a file by path."""
    for where, obj in _walk(config):
        cls, module = str(obj.get("class_name")), obj.get("module")
        name = str(obj.get("config", {}).get("name", "")) if isinstance(obj.get("config"), dict) else ""
        label = f"{cls}{f' {name!r}' if name else ''} at {where}"
        if cls in DENIED_CLASSES:
            raise WeightsError(
                f"{source}: layer {label} can run code; refusing to load it (rebuild the model without it)"
            )
        if module is not None and str(module).split(".")[0] not in ALLOWED_MODULES:
            raise WeightsError(
                f"{source}: class {label} comes from module {module!r}, not Keras/keras-hub/tlapp; refusing to load it"
            )
        cfg = obj.get("config")
        if cls in LOOKUP_LAYERS and isinstance(cfg, dict) and isinstance(cfg.get("vocabulary"), str):
            raise WeightsError(
                f"{source}: {label} reads its vocabulary from the file {cfg['vocabulary']!r}; refusing to load it"
            )


def check_h5(source: Any, label: str) -> None:
    """An HDF5 weights file that reads nothing outside itself and declares no more data than it holds.

    ``source``: a path or a file-like object (a member of a ``.keras`` archive).
    """
    import h5py

    try:
        size = source.getbuffer().nbytes if isinstance(source, io.BytesIO) else Path(source).stat().st_size
        with h5py.File(source, "r") as f:
            declared = [0]

            def visit(group: Any, prefix: str) -> None:
                for key in group:
                    link = group.get(key, getlink=True)
                    where = f"{prefix}/{key}"
                    if isinstance(link, h5py.ExternalLink):
                        raise WeightsError(
                            f"{label}: {where} is a link to another file ({link.filename!r}); refusing to open it"
                        )
                    if isinstance(link, h5py.SoftLink):
                        continue  # stays inside this file; visited through its target
                    obj = group[key]
                    if isinstance(obj, h5py.Dataset):
                        if obj.is_virtual:
                            raise WeightsError(
                                f"{label}: {where} is a virtual dataset (reads other files); refusing to open it"
                            )
                        if obj.external:
                            raise WeightsError(
                                f"{label}: {where} stores its data in an external file; refusing to open it"
                            )
                        if obj.compression is None:
                            declared[0] += obj.size * obj.dtype.itemsize
                    elif isinstance(obj, h5py.Group):
                        visit(obj, where)

            visit(f, "")
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise WeightsError(f"{label}: not a readable HDF5 weights file ({str(e).splitlines()[0][:160]})") from None
    if declared[0] > 2 * size + 2**20:
        raise WeightsError(
            f"{label}: declares {declared[0]:,} bytes of weights but the file holds {size:,}; refusing to open it"
        )


def check_keras_file(path: Path) -> None:
    """A ``.keras`` archive that is safe to hand to ``keras.saving.load_model(safe_mode=True)``."""
    infos = check_zip(path, allowed=KERAS_MEMBERS, allowed_dirs=("assets/",))
    names = {i.filename: i for i in infos}
    if "config.json" not in names:
        raise WeightsError(f"{path}: no config.json; not a Keras 3 .keras file")
    if names["config.json"].file_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{path}: config.json is {names['config.json'].file_size:,} bytes; refusing to parse it")
    with zipfile.ZipFile(path) as z:
        try:
            config = json.loads(z.read("config.json"))
        except ValueError as e:
            raise WeightsError(f"{path}: config.json is not valid JSON ({e})") from None
        check_keras_config(config, str(path))
        if "model.weights.h5" in names:
            check_h5(io.BytesIO(z.read("model.weights.h5")), f"{path}:model.weights.h5")
