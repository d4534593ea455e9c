"""Where the examples come from: a folder, a CSV, or a TFDS dataset written out
once as a folder/CSV; and the one scan dispatch (image or text) every caller uses.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image

from tlapp.base.errors import DataError
from tlapp.base.paths import store_dir
from tlapp.base.tfenv import quiet_import
from tlapp.config import Project, resolve_data_path
from tlapp.data.corrections import apply_corrections
from tlapp.data.examples import ScanReport
from tlapp.data.scan_images import scan
from tlapp.data.scan_text import scan_text


def _tfds_load(name: str, data_dir: Optional[str]) -> tuple[Any, Any, Any]:
    """(tfds module, train split as (x, label) pairs, info); offline, one clear line."""
    quiet_import()
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            f"data.source 'tfds' ({name!r}) needs tensorflow-datasets, which is not installed: "
            "pip install tensorflow-datasets"
        ) from None
    try:
        ds, info = tfds.load(name, split="train", as_supervised=True, with_info=True, data_dir=data_dir)
    except Exception as e:
        raise DataError(
            f"TFDS dataset {name!r} could not be loaded from data_dir={data_dir or '~/tensorflow_datasets'} "
            f"and could not be downloaded ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    return tfds, ds, info


def materialize_tfds(name: str, data_dir: Optional[str], out_root: Path) -> Path:
    """Write a TFDS image-classification dataset as a folder per class, once."""
    target = out_root / name.replace("/", "_").replace(":", "_")
    if (target / ".complete").is_file():
        return target
    tfds, ds, info = _tfds_load(name, data_dir)
    names = info.features["label"].names
    for i, (img, lab) in enumerate(tfds.as_numpy(ds)):
        d = target / names[int(lab)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.squeeze() if img.shape[-1] == 1 else img).save(d / f"{i:06d}.png")
    (target / ".complete").write_text("ok")
    return target


def materialize_tfds_text(name: str, data_dir: Optional[str], out_root: Path) -> Path:
    """Write a TFDS text-classification dataset (e.g. imdb_reviews) as a text,label CSV, once."""
    target = out_root / f"{name.replace('/', '_').replace(':', '_')}.csv"
    if target.is_file():
        return target
    tfds, ds, info = _tfds_load(name, data_dir)
    names = info.features["label"].names
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for text, lab in tfds.as_numpy(ds):
            w.writerow([text.decode("utf-8", errors="replace"), names[int(lab)]])
    tmp.replace(target)
    return target


def resolve_source(project: Project, project_file: Optional[Path]) -> Path:
    """The folder or file to scan (TFDS sets are written out once into the model store)."""
    if project.data.source == "tfds" and project.task.type.is_text:
        return materialize_tfds_text(
            project.data.tfds_name or "", project.data.tfds_data_dir, store_dir("datasets", "tfds")
        )
    if project.data.source == "tfds":
        return materialize_tfds(project.data.tfds_name or "", project.data.tfds_data_dir, store_dir("datasets", "tfds"))
    path = resolve_data_path(project, project_file)
    assert path is not None
    return path


def scan_data(
    source: Path,
    task: str,
    text_column: Optional[str] = None,
    label_column: Optional[str] = None,
    encoding: Optional[str] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> ScanReport:
    """Scan images or texts, as the task says: the one dispatch the CLI, the GUI and training use.

    ``should_stop`` (images) cancels the scan: it raises :class:`Cancelled` once the running decodes end.
    """
    if task.startswith("text_"):
        return scan_text(source, task, text_column, label_column, encoding)
    return scan(source, task, progress=progress, should_stop=should_stop)


def scan_project_data(
    project: Project,
    project_file: Optional[Path],
    progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> ScanReport:
    """Scan a project's data and report, whether or not it can train (the wizard shows every problem)."""
    d = project.data
    report = scan_data(
        resolve_source(project, project_file),
        project.task.type.value,
        d.text_column,
        d.label_column,
        d.encoding,
        progress,
        should_stop,
    )
    apply_corrections(report, d.exclude, d.relabel)  # the person's label decisions, in every caller
    return report


def scan_project(
    project: Project,
    project_file: Optional[Path],
    progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> ScanReport:
    """Scan a project's data and refuse data that cannot train (empty class, one class...)."""
    report = scan_project_data(project, project_file, progress, should_stop)
    report.require_usable()
    return report
