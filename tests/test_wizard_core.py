"""The core rules behind the wizard's first-time-user features (no Qt): what a
dropped path is, a run's headline, progress/ETA, the backbone recommendation,
published accuracy with sources, per-machine latency, scan cancel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlapp.backbones import speed
from tlapp.backbones.catalog import all_entries, get_entry, weights_origin
from tlapp.base.errors import Cancelled, DataError
from tlapp.base.progress import Rate, describe_seconds
from tlapp.config import Backbone, TaskType
from tlapp.data.scan_images import scan
from tlapp.data.starter import guess_task
from tlapp.deploy.summary import latest_run, summarize_run

from conftest import make_color_dataset


def test_guess_task_from_a_dropped_path(tmp_path, color_data):
    assert guess_task(color_data) == TaskType.image_classification
    texts = tmp_path / "texts"
    for c in ("a", "b"):
        (texts / c).mkdir(parents=True)
        (texts / c / "1.txt").write_text("hello")
    assert guess_task(texts) == TaskType.text_classification
    (tmp_path / "img.csv").write_text("path,label\nx.jpg,a\n")
    (tmp_path / "noheader.csv").write_text("photos/x.png,a\n")
    (tmp_path / "sms.tsv").write_text("ham\tsee you soon\n")
    assert guess_task(tmp_path / "img.csv") == TaskType.image_classification
    assert guess_task(tmp_path / "noheader.csv") == TaskType.image_classification
    assert guess_task(tmp_path / "sms.tsv") == TaskType.text_classification


def test_run_summary_headline_and_predict_command(trained_run, tmp_path):
    s = summarize_run(trained_run[2])
    assert s.status == "completed" and s.metric == "accuracy" and 0 <= s.value <= 1
    assert s.headline.startswith("accuracy ") and "validation examples" in s.headline
    assert s.seconds and s.seconds > 0 and s.finished and s.export_dir and s.verified
    assert s.predict_command().startswith(f"tlapp predict {trained_run[2]} ")
    with pytest.raises(DataError, match="not a tlapp run folder"):
        summarize_run(tmp_path)
    # The newest finished run of a project, found beside its file.
    runs = tmp_path / "runs"
    runs.mkdir()
    import shutil

    shutil.copytree(trained_run[2], runs / "tiny-20260101-000000")
    assert latest_run(tmp_path / "project.yaml", "tiny").run_dir.name == "tiny-20260101-000000"
    assert latest_run(tmp_path / "project.yaml", "other") is None


def test_rate_says_speed_and_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("tlapp.base.progress.time.monotonic", lambda: clock[0])
    r = Rate(started=100.0)
    assert r.eta_s(0, 100) is None
    clock[0] = 110.0
    assert r.eta_s(50, 100) == pytest.approx(10.0) and r.per_s(50) == pytest.approx(5.0)
    assert r.text(50, 100, "files") == "50 of 100 files · 5 files/s · about 10 s left"
    assert describe_seconds(30) == "30 s" and describe_seconds(150) == "2.5 min"


def test_published_accuracy_has_a_source_and_weights_an_origin():
    image = all_entries(modality="image")
    with_top1 = [e for e in image if e.top1 is not None]
    assert len(with_top1) >= 40
    assert all(e.top1_source and 60 < e.top1 < 90 for e in with_top1)
    assert get_entry("mobilenet_v2").top1 == 71.3 and "keras.io" in get_entry("mobilenet_v2").top1_source
    for e in all_entries():
        assert weights_origin(e)


def test_recommendation_rule():
    image = all_entries(modality="image")
    # Offline here: only the embedded default has weights -> it is the one recommended.
    assert speed.recommend(image, 500, lambda n: n == "efficientnet_lite0") == "efficientnet_lite0"
    # Online, small data: the smallest within a point of the best under the small-data size cap.
    small = speed.recommend(image, 500, lambda n: False)
    e = get_entry(small)
    pool = [x for x in image if x.top1 and x.params_m <= speed.SMALL_DATA_MAX_PARAMS_M]
    best = max(x.top1 for x in pool)
    assert e.top1 >= best - 1 and all(x.params_m >= e.params_m for x in pool if x.top1 >= best - 1)
    # More data allows a larger backbone.
    assert get_entry(speed.recommend(image, 50_000, lambda n: False)).params_m > e.params_m
    assert speed.recommend(all_entries(modality="text"), 500, lambda n: True) == "minilm_l6"


def test_latency_is_measured_and_cached_per_machine(monkeypatch):
    ms = speed.measure_latency(Backbone(name="tiny_cnn", image_size=32), batch=2, repeats=2)
    assert ms > 0 and speed.cached_latency("tiny_cnn", 32) == pytest.approx(ms, abs=0.01)
    monkeypatch.setattr(speed, "machine_id", lambda: "another computer")
    assert speed.cached_latencies() == {}  # never another machine's figures


def test_scan_can_be_cancelled(tmp_path):
    data = make_color_dataset(tmp_path / "d", n=5)
    seen = []
    with pytest.raises(Cancelled, match="scan cancelled"):
        scan(data, progress=lambda d, t: seen.append(d), should_stop=lambda: True)
    report = scan(data, should_stop=lambda: False)
    assert len(report.examples) == 15


def test_metrics_record_time_taken(trained_run):
    metrics = json.loads((Path(trained_run[2]) / "metrics.json").read_text())
    assert metrics["seconds"] > 0 and metrics["finished"] > 1e9
