"""Read a PyTorch ``.pth``/``.bin`` state dict into numpy **without torch**.

``torch.load`` is pickle: loading an untrusted checkpoint can run arbitrary
code. This reader uses a restricted unpickler that resolves only the handful
of globals a plain state dict needs (OrderedDict, tensor rebuild helpers,
typed storages) and refuses everything else by name. Both the zip format
(torch >= 1.6) and the legacy sequential format are supported.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tlapp.base.errors import WeightsError
from tlapp.base.untrusted import check_zip

_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "BFloat16Storage": np.uint16,  # raw bits; widened to float32 below
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class _Storage:
    dtype_name: str
    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        base = self.storage.data
        if base is None:
            raise WeightsError(f"tensor storage {self.storage.key!r} has no data")
        if self.storage.dtype_name == "BFloat16Storage":
            base = (base.astype(np.uint32) << 16).view(np.float32)
        item = base.itemsize
        if (
            any(n < 0 for n in self.size)
            or any(st < 0 for st in self.stride)
            or self.offset < 0
            or len(self.stride) != len(self.size)
        ):
            raise WeightsError(f"tensor on storage {self.storage.key!r} has an invalid shape/stride")
        if 0 in self.size:
            return np.zeros(self.size, base.dtype)
        # The last element a view reads must lie inside its storage (as_strided would read past it).
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
        if last >= len(base):
            raise WeightsError(
                f"tensor of shape {self.size} on storage {self.storage.key!r} reads element "
                f"{last:,} of a storage with {len(base):,}; the file is corrupt or crafted"
            )
        if not self.size:
            return np.array(base[self.offset])
        arr = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(arr)  # own the memory


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *rest):  # noqa: ANN001 - pickle protocol
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=None, hooks=None, *rest):  # noqa: ANN001
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO, source: str, storages: dict[str, _Storage], zip_format: bool) -> None:
        super().__init__(f)
        self.source, self.storages, self.zip_format = source, storages, zip_format

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"{self.source}: refusing to unpickle global {module}.{name} (only plain tensor state dicts are accepted)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            if isinstance(pid, tuple) and pid and pid[0] == "module":
                return None
            raise WeightsError(f"{self.source}: unexpected persistent id {pid!r}")
        if self.zip_format:
            _, stype, key, _location, numel = pid
        else:
            _, stype, key, _location, numel, *_view = pid
        if not isinstance(stype, _StorageType):
            raise WeightsError(f"{self.source}: unsupported storage type {stype!r}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(stype.name, key, int(numel))
        return self.storages[key]


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, _Tensor):
        out[prefix] = obj.materialize()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def _load_zip(path: Path) -> Any:
    storages: dict[str, _Storage] = {}
    check_zip(path)  # no member outside the archive, no link, no zip bomb
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise WeightsError(f"{path}: zip file without data.pkl is not a PyTorch checkpoint")
        root = pkl[: -len("data.pkl")]
        with z.open(pkl) as f:
            obj = _RestrictedUnpickler(f, str(path), storages, zip_format=True).load()
        for key, st in storages.items():
            raw = z.read(f"{root}data/{key}")
            st.data = np.frombuffer(raw, dtype=_DTYPES[st.dtype_name])
    return obj


def _load_legacy(path: Path) -> Any:
    storages: dict[str, _Storage] = {}
    size = path.stat().st_size
    with open(path, "rb") as f:
        safe = lambda: _RestrictedUnpickler(f, str(path), storages, zip_format=False).load()  # noqa: E731
        try:
            magic = safe()
        except (pickle.UnpicklingError, EOFError):
            raise WeightsError(f"{path}: not a PyTorch checkpoint") from None
        if magic != _LEGACY_MAGIC:
            raise WeightsError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        safe()  # protocol version
        safe()  # sys info
        obj = safe()
        keys = safe()
        for key in keys:
            st = storages[str(key)]
            dtype = np.dtype(_DTYPES[st.dtype_name])
            (n,) = struct.unpack("<q", f.read(8))
            if n < 0 or n * dtype.itemsize > size - f.tell():
                raise WeightsError(f"{path}: storage {key!r} declares {n:,} elements, more than the file holds")
            st.data = np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype)
    return obj


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` for every tensor in a PyTorch checkpoint.

    A checkpoint that wraps the weights (``{"state_dict": {...}}`` or
    ``{"model": {...}}``) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except WeightsError:
        raise
    except (
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        TypeError,
        IndexError,
        struct.error,
        EOFError,
        pickle.UnpicklingError,
        OSError,
    ) as e:
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None
    if isinstance(obj, dict):
        for k in ("state_dict", "model", "model_state_dict"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    out: dict[str, np.ndarray] = {}
    try:
        _flatten(obj, "", out)
    except (ValueError, TypeError, IndexError) as e:
        raise WeightsError(f"{path}: a tensor cannot be read ({e})") from None
    if not out:
        raise WeightsError(f"{path}: no tensors found")
    return {k.removeprefix("module."): v for k, v in out.items()}
