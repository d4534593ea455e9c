"""Crafted model and weight files (issue #10, "untrusted files"): each ends in one
clean WeightsError naming the file and the reason, runs nothing, and writes
nothing outside a temp dir."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tlapp.backbones.torchfile import load_state_dict
from tlapp.backbones.weights import import_weights
from tlapp.base.errors import ExportError, WeightsError
from tlapp.base.paths import tlapp_home
from tlapp.base.untrusted import check_keras_file
from tlapp.deploy.samples import read_samples

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "tlapp-pwned-marker"


def keras_zip(path: Path, config: dict, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps(config))
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def functional(*layers: dict) -> dict:
    return {"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": list(layers)}}


def store_snapshot() -> set[str]:
    home = tlapp_home()
    return {str(p) for p in home.rglob("*")} if home.exists() else set()


@pytest.fixture
def untouched_store():
    before = store_snapshot()
    yield
    assert store_snapshot() == before, "a refused import wrote into the model store"
    assert not MARKER.exists(), "a crafted file ran code"


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def torch_zip(path: Path, obj_pickle: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", obj_pickle)
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


CASES = {
    "lambda layer": lambda d: keras_zip(
        d / "lambda.keras",
        functional(
            {
                "module": "keras.layers",
                "class_name": "Lambda",
                "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": "x"}}},
            }
        ),
    ),
    "foreign module": lambda d: keras_zip(
        d / "foreign.keras", functional({"module": "evilpkg.layers", "class_name": "Dense", "config": {"name": "d"}})
    ),
    "TFSMLayer": lambda d: keras_zip(
        d / "tfsm.keras",
        functional({"module": "keras.layers", "class_name": "TFSMLayer", "config": {"name": "t", "filepath": "/etc"}}),
    ),
    "file vocabulary": lambda d: keras_zip(
        d / "vocab.keras",
        functional(
            {
                "module": "keras.layers",
                "class_name": "StringLookup",
                "config": {"name": "s", "vocabulary": "/etc/passwd"},
            }
        ),
    ),
    "traversal member": lambda d: keras_zip(d / "trav.keras", functional(), {"../../evil.txt": b"x"}),
    "unexpected member": lambda d: keras_zip(d / "extra.keras", functional(), {"run_me.py": b"print(1)"}),
    "zip bomb": lambda d: keras_zip(d / "bomb.keras", functional(), {"assets/zeros.bin": bytes(64 * 2**20)}),
}
EXPECTED = {
    "lambda layer": "can run code",
    "foreign module": "evilpkg",
    "TFSMLayer": "can run code",
    "file vocabulary": "/etc/passwd",
    "traversal member": "outside the archive",
    "unexpected member": "unexpected member",
    "zip bomb": "zip bomb",
}


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_keras_files_are_refused(case, tmp_path, untouched_store):
    path = CASES[case](tmp_path)
    with pytest.raises(WeightsError, match=EXPECTED[case]) as e:
        import_weights(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_symlinked_archive_member_is_refused(tmp_path, untouched_store):
    path = keras_zip(tmp_path / "link.keras", functional())
    with zipfile.ZipFile(path, "a") as z:
        info = zipfile.ZipInfo("assets/link")
        info.external_attr = 0o120777 << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(WeightsError, match="symbolic link"):
        check_keras_file(path)


def test_h5_external_link_external_and_virtual_datasets_are_refused(tmp_path, untouched_store):
    import h5py

    (tmp_path / "raw.bin").write_bytes(bytes(40))
    cases = {}
    with h5py.File(tmp_path / "link.weights.h5", "w") as f:
        f["w"] = h5py.ExternalLink("/etc/passwd.h5", "/data")
    cases["link.weights.h5"] = "link to another file"
    with h5py.File(tmp_path / "ext.weights.h5", "w") as f:
        f.create_dataset("w", shape=(10,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 40)])
    cases["ext.weights.h5"] = "external file"
    layout = h5py.VirtualLayout(shape=(10,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "data", shape=(10,))
    with h5py.File(tmp_path / "virt.weights.h5", "w") as f:
        f.create_virtual_dataset("w", layout)
    cases["virt.weights.h5"] = "virtual dataset"
    with h5py.File(tmp_path / "full.weights.h5", "w") as f:
        f.attrs["model_config"] = "{}"
        f["w"] = np.zeros(3)
    cases["full.weights.h5"] = "full-model"
    for name, reason in cases.items():
        with pytest.raises(WeightsError, match=reason):
            import_weights(tmp_path / name)


def test_h5_declaring_more_data_than_it_holds_is_refused(tmp_path, untouched_store):
    import h5py

    path = tmp_path / "huge.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", shape=(2**31,), dtype="f4")  # 8 GB declared, never written
    with pytest.raises(WeightsError, match="declares"):
        import_weights(path)


def test_pickle_payload_never_runs(tmp_path, untouched_store):
    path = torch_zip(tmp_path / "evil.pth", pickle.dumps({"w": Payload()}, protocol=2))
    with pytest.raises(WeightsError, match="refusing to unpickle global"):
        load_state_dict(path)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        import_weights(path, arch="resnet18")


def torch_pickle(shape: tuple, stride: tuple, numel: int) -> bytes:
    """A state dict pickled exactly as torch would write it ({"w": tensor}), without torch."""
    import collections
    import sys
    import types

    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while dumping")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2, torch._utils = FloatStorage, _rebuild_tensor_v2, utils
    storage = object()

    class Tensor:
        def __reduce__(self):
            return _rebuild_tensor_v2, (storage, 0, shape, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", numel) if obj is storage else None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(collections.OrderedDict(w=Tensor()))
        return buf.getvalue()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_oversized_tensor_shape_is_refused(tmp_path, untouched_store):
    four = {"0": np.arange(4, dtype=np.float32).tobytes()}
    ok = torch_zip(tmp_path / "ok.pth", torch_pickle((2, 2), (2, 1), 4), four)
    np.testing.assert_array_equal(load_state_dict(ok)["w"], [[0, 1], [2, 3]])
    big = torch_zip(tmp_path / "big.pth", torch_pickle((1_000_000, 1_000_000), (1_000_000, 1), 4), four)
    with pytest.raises(WeightsError, match="storage with 4"):
        load_state_dict(big)


def test_garbage_checkpoint_is_one_clean_error(tmp_path, untouched_store):
    (tmp_path / "junk.pth").write_bytes(os.urandom(2000))
    with pytest.raises(WeightsError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


def test_preset_folder_with_a_symlink_is_refused(tmp_path, untouched_store):
    folder = tmp_path / "preset"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    (folder / "model.safetensors").symlink_to("/etc/passwd")
    with pytest.raises(WeightsError, match="symbolic link"):
        import_weights(folder)


def test_import_name_cannot_escape_the_store(tmp_path, untouched_store):
    path = tmp_path / "ok.weights.h5"
    import h5py

    with h5py.File(path, "w") as f:
        f["w"] = np.zeros(3)
    with pytest.raises(WeightsError, match="plain name"):
        import_weights(path, name="../../escape.weights.h5")


def test_parity_samples_never_unpickle(tmp_path):
    path = tmp_path / "parity_samples.npz"
    np.savez(
        path,
        images=np.zeros((1, 2, 2, 3), np.uint8),
        expected=np.zeros((1, 2)),
        png=np.array([Payload()], dtype=object),
    )
    with pytest.raises(ExportError, match="unreadable parity samples"):
        read_samples(path)
    assert not MARKER.exists()


def test_tlapps_own_exports_pass_the_checks(trained_run):
    run_dir = Path(trained_run[2])
    check_keras_file(run_dir / "export" / "model.keras")
    data = read_samples(run_dir / "export" / "parity_samples.npz")
    assert len(data["png"]) == len(data["images"]) and data["png"][0][:4] == b"\x89PNG"


def test_import_is_atomic(tmp_path, monkeypatch):
    """An import that dies mid-copy leaves no half-written file in the store."""
    import shutil

    import h5py

    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f["w"] = np.zeros(1000)

    def dies(src, dst, *a, **k):
        Path(dst).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", dies)
    with pytest.raises(OSError):
        import_weights(path)
    store = tlapp_home() / "weights"
    if store.exists():
        assert not (store / "w.weights.h5").exists() and not list(store.glob(".*"))
