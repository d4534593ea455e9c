"""The wizard as a first-time user meets it: the start page and its actions
(drop a folder, try the example, open a finished run), empty states, progress
with cancel, the backbone table and the result card."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import PySide6  # noqa: E402,F401  (a dependency of tlapp: missing, the tests fail, never skip)
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from conftest import make_color_dataset  # noqa: E402
from gui_fakes import FakeTrainer  # noqa: E402


def drop(widget, path: Path) -> None:
    """What Qt delivers when a file manager drops ``path`` on ``widget``."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    ev = QDropEvent(
        QPointF(QPoint(20, 20)),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    widget.dropEvent(ev)


def wait_scan(qtbot, w) -> None:
    page = w.pages[0]
    qtbot.waitUntil(lambda: w.state.scan_report is not None and not page.scanning(), timeout=60000)


def test_start_page_first_and_empty_states_everywhere(start_window):
    w = start_window
    assert w.on_welcome() and w.windowTitle() == "tlapp"
    assert w.welcome.recent_box.is_empty() and "appear here" in w.welcome.recent_box.message.text()
    assert set(w.welcome.buttons) == {"new_image", "new_text", "new_lm", "new_dpo", "example"}
    w.show_wizard()
    data = w.pages[0]
    assert data.path.text() == "" and data.path.placeholderText()  # no "." in the path field
    for box in (data.chart_box, data.thumbs_box, data.bad_box):
        assert box.is_empty() and box.message.text()
    assert not data.split_form.isRowVisible(data.text_cols_row)  # no bare "Text columns" label for images
    assert not w.next() and "Choose your data first" in w.problem.text()
    for page in w.pages:  # every step says what it does
        assert len(page.intro) > 60, page.title
    w.go(4, check=False)
    assert w.training.charts_box.is_empty() and "Press Start" in w.training.charts_box.message.text()
    w.go(5, check=False)
    ev = w.pages[5]
    assert ev.matrix_box.is_empty() and ev.images_box.is_empty() and "train a model" in ev.summary.text()
    w.go(6, check=False)
    assert not w.pages[6].drop.isEnabled() and "No export yet" in w.pages[6].parity.text()
    w.go(3, check=False)
    assert w.pages[3].classes_box.is_empty()


def test_drop_a_folder_on_the_start_page_starts_an_image_project(start_window, qtbot, tmp_path):
    data = make_color_dataset(tmp_path / "colors", n=6)
    drop(start_window, data)
    assert not start_window.on_welcome() and start_window.current == 0
    wait_scan(qtbot, start_window)
    p = start_window.state.project
    assert p.task.type.value == "image_classification" and Path(p.data.path) == data.resolve()
    assert len(start_window.state.scan_report.examples) == 18
    assert start_window.pages[0].chart_box.currentIndex() == 1  # the chart shows, not its empty state
    assert "Next" in start_window.pages[0].summary.text()
    assert start_window.windowTitle().startswith("tlapp — colors")


def test_drop_a_csv_on_the_data_step_switches_to_text(window, qtbot, tmp_path):
    from test_text import write_sms_csv

    csv = write_sms_csv(tmp_path / "sms.csv")
    drop(window.pages[0], csv)
    wait_scan(qtbot, window)
    assert window.state.project.task.type.is_text and window.pages[0].is_text()
    assert window.pages[0].split_form.isRowVisible(window.pages[0].text_cols_row)


def test_try_the_example_quick(start_window, qtbot):
    assert start_window.try_example(quick=True)
    wait_scan(qtbot, start_window)
    rep = start_window.state.scan_report
    assert len(rep.classes) == 10 and len(rep.examples) == 300
    assert start_window.state.path is not None and start_window.state.path.is_file()
    assert "Example loaded" in start_window.statusBar().currentMessage()
    assert start_window.next(), start_window.problem.text()  # on to the backbone, like a user


def test_open_a_finished_run_goes_to_evaluate_without_training(start_window, qtbot, trained_run, tmp_path):
    run = tmp_path / "tiny-20260101-000000"
    shutil.copytree(trained_run[2], run)
    w = start_window
    assert w.open_run(run)
    assert w.current == 5 and not w.on_welcome()
    assert "run tiny-20260101-000000" in w.windowTitle() and "tiny" in w.windowTitle()
    ev = w.pages[5]
    assert ev.matrix.rowCount() == 3 and "accuracy" in ev.summary.text().lower()
    assert w.next(), w.problem.text()  # Export, without any scan or retraining
    assert w.pages[6].drop.isEnabled() and "Fresh-process check" in w.pages[6].parity.text()
    w.go(4, check=False)
    assert w.training.card.isVisible() and "tlapp predict" in w.training.card.copy_command()
    plan = w.training.plan_view.text.text()  # beside the replayed curves, the plan that run followed
    assert "Scan the data" not in plan and "Expected time" in plan, plan
    ran = w.training.plan_view.run_plan["preset"]  # the preset labels speak of that run, too
    assert f"This run followed preset '{ran}'" in w.training.preset_note.text()
    claims = [n for n, rb in w.training.presets.items() if "this run: planned" in rb.text()]
    assert claims == ([ran] if ran in w.training.presets else [])  # that run's phases as written: no preset claims it
    charts = w.training.charts  # replayed: three epochs, their validation points and the batches between
    assert len(charts.loss.ex) == len(charts.loss.vx) == 3 and charts.epoch_points() > 6
    assert "epoch" in w.training.log.toPlainText()
    # It is remembered, with its result, on the start page.
    w.show_welcome()
    entries = w.recent_entries()
    assert entries[0].path == str(run) and "accuracy" in entries[0].detail
    # A folder that is not a run: one clear error, nothing changes.
    errors = []
    import gui.main_window as mw

    orig = mw.show_error
    mw.show_error = lambda parent, msg, details="": errors.append(msg)
    try:
        assert not w.open_run(tmp_path)
    finally:
        mw.show_error = orig
    assert "not a tlapp run folder" in errors[0]


def test_recent_list_survives_missing_files_and_corrupt_settings(qtbot, tmp_path, trained_run):
    from gui.main_window import MainWindow

    ini = tmp_path / "s.ini"
    s = QSettings(str(ini), QSettings.Format.IniFormat)
    s.setValue("recent", [str(tmp_path / "gone.yaml"), str(trained_run[2]), 42])
    s.setValue("geometry", "not bytes at all")
    s.setValue("splitters/trainingSplit", 7)
    s.sync()
    w = MainWindow(trainer_factory=FakeTrainer, settings=QSettings(str(ini), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    assert w.recent() == [str(trained_run[2])]
    assert "Removed 2 recent item" in w.statusBar().currentMessage()  # the missing file and the non-path
    assert w.welcome.recent.count() == 1


def test_scan_shows_progress_and_can_be_cancelled(window, qtbot, tmp_path, monkeypatch):
    import gui.pages.data_page as dp_mod
    from tlapp.base.errors import Cancelled

    def slow_scan(project, pfile, progress=None, should_stop=None):
        for i in range(1, 10_000):
            progress(i, 10_000)
            if should_stop():
                raise Cancelled(f"{project.data.path}: scan cancelled after {i:,} of 10,000 files")
            time.sleep(0.002)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(dp_mod, "scan_project_data", slow_scan)
    page = window.pages[0]
    page.path.setText(str(make_color_dataset(tmp_path / "c", n=2)))
    page.start_scan()
    qtbot.waitUntil(lambda: page.progress.value() > 50, timeout=10000)
    assert page.progress.isVisible() and "of 10,000 files" in page.progress.format()
    assert page.scan_btn.text() == "Cancel scan"
    page._scan_clicked()
    qtbot.waitUntil(lambda: not page.scanning(), timeout=10000)
    assert "Scan cancelled" in page.summary.text() and window.state.scan_report is None
    assert not page.progress.isVisible() and page.scan_btn.text() == "Scan"


def test_scan_runs_in_a_worker_thread_with_progress(window, qtbot, tmp_path):
    """The scan decodes on a worker thread and reports progress; its event-loop stalls are measured (not
    asserted) by benchmarks/run.py --only gui_stall."""
    from PySide6.QtCore import QThread

    data = make_color_dataset(tmp_path / "many", n=150, size=96)
    page = window.pages[0]
    seen = []
    page.path.setText(str(data))
    page.start_scan()
    worker = page.worker
    assert isinstance(worker, QThread) and worker is not QThread.currentThread()
    worker.progress.connect(lambda *a: seen.append(a))
    wait_scan(qtbot, window)
    assert len(window.state.scan_report.examples) == 450 and seen


def test_embedding_progress_bar_and_result_card(window, qtbot, color_data, trained_run):
    from test_gui import to_training

    FakeTrainer.source_run = trained_run[2]
    to_training(qtbot, window, color_data)
    tp = window.training
    tp.start()
    tp.on_event(
        {
            "type": "progress",
            "data": {
                "stage": "embedding 30 images",
                "done": 16,
                "total": 30,
                "unit": "images",
                "per_s": 40.0,
                "eta_s": 0.4,
                "last": False,
            },
        }
    )
    assert tp.step_progress.isVisible() and tp.step_progress.value() == 16
    assert "16 of 30" in tp.step_progress.format() and "images/s" in tp.step_progress.format()
    assert "left" in tp.step_progress.format() and tp.charts_box.is_empty()
    qtbot.waitUntil(lambda: tp.status_text == "completed", timeout=20000)
    FakeTrainer.source_run = None
    assert tp.card.isVisible() and not tp.step_progress.isVisible()
    text = tp.card.text.text()
    assert "Done" in text and "accuracy" in text.lower() and "Exported to" in text
    assert tp.card.copy_command().startswith("tlapp predict ")
    tp.card.eval_btn.click()
    assert window.current == 5


def test_backbone_table_ranks_by_accuracy_and_measures_speed(window, qtbot, color_data):
    from test_gui import scan_data

    scan_data(qtbot, window, color_data)
    assert window.next(), window.problem.text()
    bp = window.pages[1]
    headers = [bp.model.headerData(c, Qt.Orientation.Horizontal) for c in range(bp.model.columnCount())]
    assert "ImageNet top-1" in headers and any("(here)" in h for h in headers)
    rows = {bp.proxy.index(r, 1).data(): r for r in range(bp.proxy.rowCount())}
    star = [n for n, r in rows.items() if bp.proxy.index(r, 0).data() == "★"]
    assert star == [bp.recommended] and bp.recommended is not None
    order = [bp.proxy.index(r, 1).data() for r in range(bp.proxy.rowCount())]
    top1 = [bp.proxy.index(r, 3).data(Qt.ItemDataRole.UserRole) for r in range(bp.proxy.rowCount())]
    assert order[0] == bp.recommended  # the recommendation first, then the ranking by ImageNet accuracy
    assert top1[1:] == sorted(top1[1:], reverse=True) and len(set(top1[1:])) > 2
    assert bp.proxy.index(rows["mobilenet_v2"], 3).data() == "71.3%"
    assert "keras.io" in bp.proxy.index(rows["mobilenet_v2"], 3).data(Qt.ItemDataRole.ToolTipRole)
    bp.select("mobilenet_v2")
    assert "Licence" in bp.info.text() and "Keras Applications download" in bp.info.text()
    assert not bp.alpha.isHidden()
    bp.select("tiny_cnn")
    assert bp.alpha.isHidden()  # no alpha for this backbone: hidden, not an empty control
    bp.measure()
    # wait for what the person sees: the worker's result arrives as a queued signal after its thread ends
    qtbot.waitUntil(lambda: "ms per image" in bp.info.text(), timeout=60000)
    rows = {bp.proxy.index(r, 1).data(): r for r in range(bp.proxy.rowCount())}
    assert bp.proxy.index(rows["tiny_cnn"], 5).data() not in ("—", None)


def test_layout_is_remembered_and_keys_walk_the_steps(qtbot, tmp_path, color_data):
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QSplitter
    from test_gui import scan_data

    from gui.main_window import MainWindow

    ini = str(tmp_path / "s.ini")
    w = MainWindow(trainer_factory=FakeTrainer, settings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    w.show_wizard()
    split = w.findChild(QSplitter, "trainingSplit")
    split.setSizes([100, 500, 50])
    sizes = split.sizes()
    w.resize(1000, 700)
    scan_data(qtbot, w, color_data)
    w.activateWindow()
    QTest.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.AltModifier)  # Alt+N: next step
    assert w.current == 1, w.problem.text()
    QTest.keyClick(w, Qt.Key.Key_B, Qt.KeyboardModifier.AltModifier)  # Alt+B: back
    assert w.current == 0
    w.close()
    w2 = MainWindow(trainer_factory=FakeTrainer, settings=QSettings(ini, QSettings.Format.IniFormat))
    qtbot.addWidget(w2)
    assert w2.findChild(QSplitter, "trainingSplit").sizes() == sizes
    assert QSettings(ini, QSettings.Format.IniFormat).value("geometry") is not None  # (offscreen clamps sizes)
