"""What to label next: uncertain and diverse picks, from the run's own model, by CLI and wizard."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tlapp.base.errors import DataError
from tlapp.deploy.suggest import margins, rank

from conftest import make_color_dataset


def test_rank_takes_the_uncertain_and_not_their_near_copies() -> None:
    # 0-2: near-copies of one confusing example; 3: confusing and different; 4-5: certain.
    probs = np.array([[0.5, 0.5], [0.51, 0.49], [0.52, 0.48], [0.55, 0.45], [0.99, 0.01], [0.98, 0.02]])
    feats = np.array([[1, 0, 0], [0.99, 0.01, 0], [0.98, 0.02, 0], [0, 1, 0], [0, 0, 1], [0, 0.1, 1]], float)
    np.testing.assert_allclose(margins(probs), [0, 0.02, 0.04, 0.1, 0.98, 0.96])
    assert rank(probs, feats, 2) == [0, 3]  # the least sure, then the far one: not 1, a near-copy of 0
    assert rank(probs, feats, 1) == [0]
    # Diversity only among the pool x n least sure: a pool of 1 leaves no choice but the near-copy.
    assert rank(probs, feats, 2, pool=1) == [0, 1]


@pytest.fixture
def colour_run(mislabelled_run):
    return mislabelled_run[0]


def test_cli_suggest_ranks_the_pool_and_names_what_it_skipped(colour_run) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlapp",
            "suggest",
            str(colour_run / "run"),
            str(colour_run / "unlabeled"),
            "--n",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [it["rank"] for it in doc["items"]] == [1, 2, 3, 4, 5]
    assert all(it["predicted"] in ("red", "green", "blue") for it in doc["items"])
    assert len({it["path"] for it in doc["items"]}) == 5 and doc["unlabeled"] == 12
    assert {s["path"].rsplit("/", 1)[-1] for s in doc["skipped"]} == {"broken.png", "notes.txt"}
    margin = [it["margin"] for it in doc["items"]]
    assert margin[0] == min(margin)  # the least sure first
    bad = subprocess.run(
        [sys.executable, "-m", "tlapp", "suggest", str(colour_run / "run"), str(colour_run / "nowhere")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("nowhere: no such file or folder")


def test_suggest_refuses_a_bad_n(colour_run) -> None:
    from tlapp.deploy.suggest import suggest

    with pytest.raises(DataError, match="--n must be at least 1, got 0"):
        suggest(colour_run / "run", colour_run / "unlabeled", n=0)


def test_the_wizard_suggests_and_copies_into_a_class_folder_keeping_the_source(colour_run, window, qtbot, tmp_path):
    assert window.open_run(colour_run / "run")
    data = make_color_dataset(tmp_path / "data", n=2)  # the project's data, here a copy: the shared run stays put
    window.state.update("data", path=str(data))
    ev = window.pages[5]
    panel = ev.label_next
    panel.start(str(colour_run / "unlabeled"), n=4)
    qtbot.waitUntil(lambda: panel.list.count() == 4, timeout=120000)
    assert "2 file(s) skipped" in panel.status.text()
    first = panel.list.item(0)
    source = first.data(256)  # Qt.UserRole: the file
    copied = panel.copy_to(first, "green")
    assert copied.parent == data / "green" and copied.is_file() and (colour_run / "unlabeled" / copied.name).is_file()
    assert source == str(colour_run / "unlabeled" / copied.name)
    assert "copied into 'green'" in panel.status.text() and panel.list.count() == 3
    again = panel.copy_to(panel.list.item(0), "green")  # a name already there is never overwritten
    assert again.parent == data / "green" and again != copied
