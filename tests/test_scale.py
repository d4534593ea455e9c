"""Issue #13 in the small: batch order that does not depend on folder order or data set
size, and a cache plan that streams when decoded images would not fit the memory budget."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tlapp.config import TaskType, project_from_dict
from tlapp.data import pipelines
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder

from conftest import tiny_project_dict


@pytest.fixture(scope="module")
def sorted_set(tmp_path_factory):
    """600 tiny images, 10 classes, listed class by class (as a folder scan lists them)."""
    root = tmp_path_factory.mktemp("sorted")
    examples = []
    for c in range(10):
        for i in range(60):
            p = root / f"c{c}_{i}.png"
            Image.fromarray(np.full((8, 8, 3), c * 20, np.uint8)).save(p)
            examples.append(Example(str(p), f"c{c}"))
    return examples


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_first_batches_mix_all_classes_beyond_the_shuffle_buffer(sorted_set, cache, tmp_path, monkeypatch):
    monkeypatch.setattr(pipelines, "SHUFFLE_BUFFER_BYTES", 50 * 8 * 8 * 3)  # a 50-image buffer for 600 images
    enc = LabelEncoder(TaskType.image_classification, [f"c{c}" for c in range(10)])
    ds = pipelines.image_dataset(
        sorted_set, enc, 8, 32, shuffle=True, seed=3, cache=cache, cache_file=tmp_path / "train"
    )
    for epoch in range(2):
        first = next(iter(ds))
        labels = set(first[1].numpy().tolist())
        assert len(labels) >= 8, (cache, epoch, labels)  # class-sorted order would give 1
        assert first[0].dtype.name == "float32" and float(first[0].numpy().max()) <= 255


def test_cache_plan_follows_the_memory_budget():
    small = pipelines.plan_cache(1000, 96, "auto", 0.25, available=8 * 2**30)
    assert small.mode == "memory" and "cached in memory" in small.why
    big = pipelines.plan_cache(50_000, 224, "auto", 0.25, available=8 * 2**30)
    assert big.mode == "none" and "exceed the memory budget" in big.why and "7.0 GB" in big.why
    assert pipelines.plan_cache(50_000, 224, "disk", 0.25).mode == "disk"


def test_training_streams_when_a_small_budget_is_forced(color_data, tmp_path):
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    d["data"]["cache_budget"] = 1e-9  # nothing fits: the stream path must be taken
    d["train"]["phases"] = [{"name": "ft", "epochs": 1, "freeze": {"mode": "none"}}]
    d["export"] = {"formats": [], "verify": False}
    events = []
    result = train(project_from_dict(d), tmp_path / "run", events.append)
    assert result.status == "completed"
    plans = {e.data["split"]: e.data for e in events if e.type == "data_cache"}
    assert plans["train"]["mode"] == "none" and "decoded from disk each epoch" in plans["train"]["why"]
    assert not (tmp_path / "run" / "cache").exists() or not any((tmp_path / "run" / "cache").iterdir())


def test_evaluation_and_export_report_progress_and_cancel_cleanly(color_data, tmp_path):
    from tlapp.base.errors import Cancelled
    from tlapp.training import embcache
    from tlapp.training.run import train

    embcache.clear()  # earlier tests cached these embeddings: this run must compute them
    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [{"name": "head", "epochs": 1, "freeze": {"mode": "all"}}]
    events = []
    train(project_from_dict(d), tmp_path / "ok", events.append)
    stages = {e.data["stage"].split()[0] for e in events if e.type == "progress"}
    assert {"scanning", "embedding", "evaluating", "exporting"} <= stages, stages
    last = [e.data for e in events if e.type == "progress" and e.data["stage"].startswith("exporting")][-1]
    assert last["done"] == last["total"] and last["last"]

    stop = {"now": False}

    def on_event(ev):
        stop["now"] = stop["now"] or (ev.type == "progress" and ev.data["stage"].startswith("exporting"))

    with pytest.raises(Cancelled, match="exporting"):
        train(project_from_dict(d), tmp_path / "cancel", on_event, should_stop=lambda: stop["now"])
    assert not (tmp_path / "cancel" / "export").exists()  # nothing half-written
    assert not [p for p in (tmp_path / "cancel").iterdir() if p.name.startswith(".export")]


def test_large_embedding_matrices_are_memory_mapped_and_removed_at_the_end(color_data, tmp_path, monkeypatch):
    """Above MEMMAP_BYTES the embedding pass writes into a memory-mapped file in the run's cache;
    the head still trains on it, and the scratch file is gone when the run has finished."""
    from tlapp.training import embcache
    from tlapp.training.run import train

    embcache.clear()
    monkeypatch.setattr(embcache, "MEMMAP_BYTES", 1)  # every matrix counts as large
    made = []
    real = np.lib.format.open_memmap
    monkeypatch.setattr(np.lib.format, "open_memmap", lambda *a, **k: made.append(a[0]) or real(*a, **k))
    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [{"name": "head", "epochs": 1, "freeze": {"mode": "all"}}]
    d["export"] = {"formats": [], "verify": False}
    events = []
    assert train(project_from_dict(d), tmp_path / "run", events.append).status == "completed"
    assert made and all(str(p).startswith(str(tmp_path / "run" / "cache")) for p in made)
    emb = next(e.data for e in events if e.type == "embeddings")
    assert not emb["cached"] and emb["n"] > 0
    assert not list((tmp_path / "run" / "cache").glob("embeddings-*.npy"))
    embcache.clear()


def test_a_short_last_batch_gives_the_same_vectors_without_a_new_input_shape():
    from tlapp.training import embcache

    shapes = []

    class Features:
        def predict_on_batch(self, x):
            shapes.append(x.shape)
            return np.asarray(x).reshape(len(x), -1)[:, :2] * 2

    batches = [np.ones((4, 1, 1, 2), np.float32), np.full((3, 1, 1, 2), 3, np.float32)]
    out = embcache.compute(Features().predict_on_batch, batches, 2, 7)
    assert {s for s in shapes} == {(4, 1, 1, 2)}
    assert out.shape == (7, 2) and out[:4].tolist() == [[2, 2]] * 4 and out[4:].tolist() == [[6, 6]] * 3
