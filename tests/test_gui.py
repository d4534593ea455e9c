"""The wizard, driven as a person would (offscreen), with a fake trainer for
wiring and the real child-process trainer for cancel / close / responsiveness."""

from __future__ import annotations

import json
import time
from pathlib import Path

import PySide6  # noqa: E402,F401  (a dependency of tlapp: missing, the tests fail, never skip)
import pytest
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from gui.workers import TrainingProcess  # noqa: E402

from conftest import tiny_project_dict  # noqa: E402
from gui_fakes import FakeTrainer  # noqa: E402


def scan_data(qtbot, w, path: Path) -> None:
    page = w.pages[0]
    page.path.setText(str(path))
    page.start_scan()
    qtbot.waitUntil(lambda: w.state.scan_report is not None and not page.worker.isRunning(), timeout=30000)


def to_training(qtbot, w, data: Path) -> None:
    scan_data(qtbot, w, data)
    assert w.next(), w.problem.text()
    w.pages[1].select("tiny_cnn")
    w.pages[1].size.setValue(32)
    w.pages[1].weights.setCurrentText("none")
    assert w.next(), w.problem.text()
    qtbot.waitUntil(lambda: bool(w.pages[2].table), timeout=30000)
    assert w.next(), w.problem.text()
    assert w.next(), w.problem.text()
    assert w.current == 4


def test_title_and_data_step_validation(window, qtbot, tmp_path):
    assert window.windowTitle().startswith("tlapp")
    assert not window.next() and "Choose your data first" in window.problem.text()
    from badfixtures import make_bad_dataset

    make_bad_dataset(tmp_path / "bad")
    scan_data(qtbot, window, tmp_path / "bad")
    assert window.pages[0].bad.rowCount() >= 6
    assert not window.next() and "empty" in window.problem.text()


def test_walkthrough_with_fake_trainer(window, qtbot, color_data, trained_run):
    FakeTrainer.source_run = trained_run[2]
    to_training(qtbot, window, color_data)
    tp = window.pages[4]
    assert not window.next() and "Train the model first" in window.problem.text()
    tp.start()
    qtbot.waitUntil(lambda: tp.status_text == "completed", timeout=20000)
    assert tp.charts.updates >= 30 and len(tp.charts.loss.ex) == 3 and len(tp.charts.loss.vx) == 3
    assert "epoch 3/3" in tp.log.toPlainText()
    assert window.next(), window.problem.text()
    ev = window.pages[5]
    assert ev.matrix.rowCount() == 3 and "on 9 validation examples" in ev.summary.text()  # the core headline
    assert "macro F1" in ev.summary.text()  # and the task's metrics, as tlapp evaluate words them
    ev.show_cell(0, 0)
    assert "True 'blue', predicted 'blue'" in ev.cell_label.text()
    assert window.next(), window.problem.text()
    ex = window.pages[6]
    assert "Fresh-process check" in ex.parity.text() and "passed" in ex.parity.text()
    ex.try_file(str(sorted((color_data / "red").iterdir())[0]))
    qtbot.waitUntil(lambda: "score" in ex.answer.text(), timeout=60000)
    assert ex.explain_btn.isVisible() and ex.explain_btn.isEnabled()
    ex.explain_last()  # Grad-CAM of the image just tried, through the core's explain_file
    qtbot.waitUntil(lambda: "Heat map for" in ex.answer.text(), timeout=60000)
    assert ex.explain_btn.isEnabled() and ex.drop.pixmap() is not None
    FakeTrainer.source_run = None


def test_head_and_backbone_validation(window, qtbot, color_data):
    scan_data(qtbot, window, color_data)
    assert window.next()
    window.pages[1].select("mobilenet_v2")
    window.pages[1].size.setValue(40)
    window.pages[1].alpha.setCurrentText("0.35")
    assert window.pages[1].validate() is None
    window.pages[1].select("nasnet_mobile")
    window.pages[1].size.setValue(200)
    assert "only supports [224]" in window.pages[1].validate()
    window.pages[1].select("tiny_cnn")
    window.pages[1].size.setValue(32)
    assert window.next()
    qtbot.waitUntil(lambda: bool(window.pages[2].table), timeout=30000)
    lp = window.pages[2]
    lp.blocks.setValue(1)
    assert "trainable of" in lp.counts.text()
    assert window.next()
    window.pages[3].hidden.setText("64, x")
    assert not window.next() and "not a comma-separated list" in window.problem.text()
    window.pages[3].hidden.setText("64")
    assert window.next()
    assert window.state.project.head.hidden == [64]
    assert window.state.project.train.phases[-1].freeze.blocks == 1


def test_save_load_round_trip_equals_cli_file(window, qtbot, tmp_path, color_data, capsys):
    from test_config import run_cli

    from tlapp.config import load_project, project_to_yaml

    cli_file = tmp_path / "cli.yaml"
    code, _, err = run_cli(
        ["init", str(cli_file), "--data", str(color_data), "--backbone", "tiny_cnn", "--image-size", "32"], capsys
    )
    assert code == 0, err
    assert window.open(cli_file)
    gui_file = tmp_path / "gui.yaml"
    assert window._save_to(gui_file)
    assert project_to_yaml(load_project(gui_file)) == project_to_yaml(load_project(cli_file))
    assert window.windowTitle() == "tlapp — gui.yaml"
    assert str(gui_file) in window.recent()
    assert window.copy_cli_command() == f"tlapp train {gui_file}"


def test_open_bad_project_shows_one_clear_error(window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("gui.main_window.show_error", lambda parent, msg, details="": shown.append(msg))
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: x}\ntrain: {batch_size: -1}\n")
    assert not window.open(bad)
    assert len(shown) == 1 and "train.batch_size" in shown[0] and "-1" in shown[0]


def test_fake_cancel_marks_run_cancelled(window, qtbot, color_data):
    to_training(qtbot, window, color_data)
    tp = window.pages[4]
    tp.trainer_factory = lambda: FakeTrainer(n_batches=10_000, interval_ms=20)
    tp.start()
    qtbot.waitUntil(lambda: tp.charts.updates > 3, timeout=5000)
    tp.cancel()
    qtbot.waitUntil(lambda: tp.status_text == "cancelled", timeout=5000)
    assert tp.start_btn.isEnabled() and not tp.cancel_btn.isEnabled()


# ---- the real trainer (child process) ----------------------------------------------------------
def _slow_tiny_project(color_data: Path, steps: int = 400) -> dict:
    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [
        {"name": "ft", "epochs": 3, "learning_rate": 0.001, "freeze": {"mode": "none"}, "steps_per_epoch": steps}
    ]
    d["export"] = {"formats": []}
    return d


def _start_real(window, qtbot, tmp_path, color_data):
    from tlapp.config import project_from_dict

    window.state.project = project_from_dict(_slow_tiny_project(color_data))
    tp = window.pages[4]
    tp.refresh()
    tp.new_run_dir = lambda: tmp_path / "run"
    tp.start()
    return tp


@pytest.mark.parametrize("start_window", [TrainingProcess], indirect=True)
def test_real_cancel_mid_epoch_keeps_checkpoint_and_resumes(window, qtbot, tmp_path, color_data):
    tp = _start_real(window, qtbot, tmp_path, color_data)
    seen = []
    tp.trainer.event.connect(seen.append)
    qtbot.waitUntil(
        lambda: (
            any(e["type"] == "epoch_end" for e in seen)
            and any(e["type"] == "batch_end" and e["data"]["epoch"] == 2 for e in seen)
        ),
        timeout=120000,
    )
    tp.cancel()
    qtbot.waitUntil(lambda: tp.status_text == "cancelled", timeout=60000)
    end = [e for e in seen if e["type"] == "run_end"][-1]["data"]
    assert end["status"] == "cancelled" and "epoch 2" in end["message"]
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "cancelled"
    assert json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())["epoch_done"] == 1
    assert tp.resume_btn.isEnabled()
    seen.clear()
    tp.resume_btn.click()
    tp.trainer.event.connect(seen.append)
    qtbot.waitUntil(lambda: tp.status_text != "running", timeout=180000)
    assert tp.status_text == "completed"
    assert [e["data"]["epoch"] for e in seen if e["type"] == "epoch_start"][0] == 2


@pytest.mark.parametrize("start_window", [TrainingProcess], indirect=True)
def test_close_while_training_asks_and_stops_cleanly(window, qtbot, tmp_path, color_data, monkeypatch):
    tp = _start_real(window, qtbot, tmp_path, color_data)
    qtbot.waitUntil(lambda: tp.charts.updates > 0, timeout=120000)
    asked = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a, **k: (asked.append(a[2]), QMessageBox.StandardButton.Yes)[1]
    )
    t0 = time.time()
    window.close()
    assert asked and "Training is running" in asked[0]
    assert not tp.trainer.is_running() and time.time() - t0 < 60
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "cancelled"


@pytest.mark.parametrize("start_window", [TrainingProcess], indirect=True)
def test_real_training_runs_in_a_child_process_and_its_events_reach_the_charts(window, qtbot, tmp_path, color_data):
    """The wizard trains in another process (so its event loop never waits on TensorFlow); how long the loop
    stalls is measured, not asserted, by benchmarks/run.py --only gui_stall."""
    import os

    tp = _start_real(window, qtbot, tmp_path, color_data)
    pid = tp.trainer._proc.pid
    assert pid is not None and pid != os.getpid() and tp.trainer._proc.is_alive()
    qtbot.waitUntil(lambda: tp.charts.updates > 20, timeout=120000)
    assert len(tp.charts.loss.bx) > 1  # per-batch points drawn from the child's events
    tp.cancel()
    qtbot.waitUntil(lambda: tp.status_text != "running", timeout=60000)


def test_text_wizard_steps(window, qtbot, tmp_path):
    from test_text import write_sms_csv

    csv = write_sms_csv(tmp_path / "sms.csv")
    dp = window.pages[0]
    dp.kind.setCurrentText("Text")
    scan_data(qtbot, window, csv)
    assert window.state.project.task.type.value == "text_classification"
    assert dp.samples.rowCount() == 48 and dp.samples.isVisible() and not dp.thumbs.isVisible()
    assert "tokens" in dp.lengths.title
    assert window.next(), window.problem.text()
    bp = window.pages[1]
    names = {bp.proxy.index(r, 1).data() for r in range(bp.proxy.rowCount())}
    assert "minilm_l6" in names and "mobilenet_v2" not in names
    assert bp.size_label.text() == "Sequence length"
    bp.select("tiny_bert")
    bp.size.setValue(16)
    bp.weights.setCurrentText("none")
    assert window.next(), window.problem.text()
    assert window.state.project.backbone.sequence_length == 16
    qtbot.waitUntil(lambda: bool(window.pages[2].table), timeout=30000)
    blocks = {r.block for r in window.pages[2].table}
    assert {"transformer_layer_0", "transformer_layer_1"} <= blocks
    assert window.next(), window.problem.text()
    assert window.pages[3].task.currentText() == "Single-label classification"
    assert window.next(), window.problem.text()
    assert window.state.project.task.type.value == "text_classification"


def test_training_step_offers_presets_with_times(window, qtbot, color_data):
    """Three presets with expected times once the data is scanned; the plan (phases, decision) before Start."""
    scan_data(qtbot, window, color_data)
    tp = window.pages[4]
    window.go(4)
    assert window.state.project.train.preset == "balanced" and tp.presets["balanced"].isChecked()
    assert "≈" in tp.presets["fast"].text() and "machine" in tp.preset_note.text()
    assert "Best — the head, then a longer fine-tune" in tp.presets["best"].text()
    assert tp.phases.isVisibleTo(tp) and tp.phases.rowCount() == 2  # the plan's phases, under a preset too
    assert tp.phases.item(0, 1).text() == "exact" and "fine-tune:" in tp.plan_view.text.text().lower()
    tp.presets["best"].setChecked(True)  # an untouched proposal follows the preset
    assert window.state.project.train.phases[1].epochs == 12 and tp.phases.item(1, 1).text() == "12"  # images: 2 x 6
    tp.presets["fast"].setChecked(True)
    assert window.state.project.train.preset == "fast" and tp.phases.rowCount() == 1
    assert "fine-tune: no" in tp.plan_view.text.text().lower() and tp.plan_view.anyway.isVisibleTo(tp)
    tp.plan_view.anyway.click()  # Fine-tune anyway: adds the fine-tune phase and forces it
    assert window.state.project.train.finetune == "always" and tp.phases.rowCount() == 2
    assert (
        "fine-tune: yes" in tp.plan_view.text.text().lower() and tp.plan_view.anyway.text() == "Let the preset decide"
    )
    tp.advanced.setChecked(True)
    assert window.state.project.train.preset == "custom"
    tp.advanced.setChecked(False)
    assert window.state.project.train.preset == "fast"


@pytest.mark.parametrize("start_window", [TrainingProcess], indirect=True)
def test_a_clicked_project_trains_for_real_as_its_plan_says(window, qtbot, tmp_path, color_data):
    """Ticks on Layers and "Fine-tune anyway" on Training, then Start: the child process trains exactly that
    project (the real trainer, not a fake), and the head stage draws curves, not one point."""
    to_training(qtbot, window, color_data)
    window.go(2)
    window.pages[2].blocks.setValue(1)  # the slider: train the top block only
    window.go(4)
    tp = window.pages[4]
    tp.plan_view.anyway.click()
    # Not a click: the export is not what this test is about, and it would add a fresh-process check.
    window.state.update("export", formats=[])
    tp.new_run_dir = lambda: tmp_path / "run"
    tp.start()
    qtbot.waitUntil(lambda: tp.status_text != "running", timeout=240000)
    assert tp.status_text == "completed", tp.log.toPlainText()[-2000:]
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    starts = {e["data"]["name"]: e["data"] for e in events if e["type"] == "phase_start"}
    assert [b["block"] for b in starts["finetune"]["blocks"] if b["trainable_params"]] == ["block3"]
    decision = next(e["data"] for e in events if e["type"] == "recipe_decision")
    assert decision["finetune"]["finetune"] is True and "train.finetune: always" in decision["finetune"]["reason"]
    from tlapp.config import load_project

    trained = load_project(tmp_path / "run" / "config.yaml")
    assert trained.train.phases == window.state.project.train.phases
    head_x = [x for x in tp.charts.loss.bx if x <= 2.0]  # the head stage: CV candidates, then the solver
    assert len(head_x) > 1 and len([x for x in tp.charts.loss.vx if x <= 1.0]) > 1
    assert len([x for x in tp.charts.metric.vx if x <= 1.0]) > 1


def test_backbone_leaderboard_ranks_and_a_click_chooses(window, qtbot, color_data):
    scan_data(qtbot, window, color_data)
    assert window.next(), window.problem.text()
    page = window.pages[1]
    page.candidates = lambda most=5: ["tiny_cnn@32", "tiny_cnn@16"]  # the two offline-able test networks
    page.compare()
    qtbot.waitUntil(lambda: page.board.isVisible() and page.compare_btn.isEnabled(), timeout=120000)
    assert page.board.rowCount() == 2 and "Best on your data" in page.info.text()
    page._board_clicked(1, 0)
    assert page.selected_name() == "tiny_cnn" and page.size.value() == page._board_rows[1].image_size


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_language_model_wizard_from_pairs_to_chat(window, qtbot, tmp_path):
    """Task sft in the wizard: pairs table, LoRA controls with the live count, the no-head note, the LM
    presets, then a finished run's before/after table and a chat answer from the exported model."""
    from test_sft import sft_dict, write_pairs

    from tlapp.backbones.freeze import lora_params
    from tlapp.config import project_from_dict
    from tlapp.training.run import train

    pairs = write_pairs(tmp_path / "pairs.jsonl")
    dp = window.pages[0]
    dp.kind.setCurrentText("Pairs (language model)")
    scan_data(qtbot, window, pairs)
    assert window.state.project.task.type.value == "sft" and window.state.project.data.source == "pairs"
    assert dp.samples.rowCount() == 8 and dp.samples.horizontalHeaderItem(0).text() == "Prompt"
    assert "8</b> usable prompt → response pairs" in dp.summary.text()
    assert window.next(), window.problem.text()
    bp = window.pages[1]
    names = {bp.proxy.index(r, 1).data() for r in range(bp.proxy.rowCount())}
    assert "smollm2_135m_instruct" in names and "minilm_l6" not in names
    bp.select("tiny_llama")
    bp.size.setValue(64)
    bp.weights.setCurrentText("none")
    assert window.next(), window.problem.text()
    lp = window.pages[2]
    qtbot.waitUntil(lambda: bool(lp.table), timeout=60000)
    assert lp.lora_box.isVisible() and lp.lora.isChecked() and set(lp.targets) >= {"query", "value", "key"}
    lp.rank.setValue(4)
    lp.targets["key"].setChecked(True)
    want = lora_params(lp.shapes, 4, ["query", "value", "key"])
    assert f"<b>{want:,}</b> trainable" in lp.counts.text()
    assert window.next(), window.problem.text()
    assert window.state.project.train.phases[-1].freeze.rank == 4
    assert window.pages[3].lm_note.isVisible() and "needs no head" in window.pages[3].lm_note.text()
    assert window.next(), window.problem.text()
    assert "LoRA rank 8" in window.training.presets["balanced"].text()

    run = tmp_path / "run"
    train(project_from_dict(sft_dict(pairs, epochs=1)), run)
    window.state.dirty = False
    assert window.open_run(run)
    ev = window.pages[5]
    assert ev.lm_view.isVisible() and ev.lm_view.table.rowCount() == 2
    assert "Validation perplexity" in ev.lm_view.summary.text()
    window.go(6, check=False)
    ex = window.pages[6]
    assert ex.chat.isVisible() and "Fresh-process check" in ex.parity.text()
    ex.chat.prompt.setText("What is the code word?")
    ex.chat.ask()
    qtbot.waitUntil(lambda: "Model:" in ex.chat.transcript.toPlainText(), timeout=120000)
    assert "You: What is the code word?" in ex.chat.transcript.toPlainText()


def test_preference_wizard_scans_triples_and_shows_the_dpo_charts(window, qtbot, tmp_path):
    """Task dpo in the wizard: the Preferences kind, a three-column sample table, every bad line named, and the
    Training step's second chart row (reward margin; chosen and rejected rewards)."""
    import json

    from test_dpo import write_triples

    bad = [json.dumps({"prompt": "Same?", "chosen": "Same.", "rejected": "Same."})]
    triples = write_triples(tmp_path / "style.jsonl", extra=bad)
    dp = window.pages[0]
    dp.kind.setCurrentText("Preferences (language model)")
    scan_data(qtbot, window, triples)
    assert window.state.project.task.type.value == "dpo" and window.state.project.data.source == "pairs"
    head = [dp.samples.horizontalHeaderItem(c).text() for c in range(dp.samples.columnCount())]
    assert head == ["Prompt", "Chosen", "Rejected"] and dp.samples.rowCount() == 10
    assert dp.samples.item(0, 1).text().startswith("Answer:") and dp.samples.item(0, 2).text().startswith("Well,")
    assert "10</b> usable prompt / chosen / rejected triples; 1 unusable" in dp.summary.text()
    assert dp.bad.item(0, 0).text() == "line 11" and "nothing to prefer" in dp.bad.item(0, 1).text()
    window.pages[1].select("tiny_llama")
    window.go(4, check=False)
    tp = window.training
    assert not tp.charts.margin.isHidden() and not tp.charts.rewards.isHidden()
    assert "reward accuracy" in tp.charts_box.default and "DPO" in tp.preset_note.text()


@pytest.mark.slow  # a tiny DPO run: CI runs it in its slow step
def test_a_finished_dpo_run_draws_four_curves_and_the_preference_line(window, qtbot, tmp_path):
    from test_dpo import dpo_dict, write_triples

    from tlapp.config import project_from_dict
    from tlapp.training.run import train

    run = tmp_path / "run"
    train(project_from_dict(dpo_dict(write_triples(tmp_path / "t.jsonl"), epochs=2, export={"formats": []})), run)
    window.state.dirty = False
    assert window.open_run(run)
    ev = window.pages[5]
    assert ev.lm_view.isVisible() and "Preference accuracy" in ev.lm_view.summary.text()
    assert ev.lm_view.table.horizontalHeaderItem(1).text() == "Preferred (your data)"
    window.go(4, check=False)  # the Training step draws the opened run's curves
    charts = window.training.charts
    assert not charts.rewards.isHidden() and len(charts.margin.ex) == 2 and len(charts.margin.vx) == 2
    assert len(charts.rewards.bx) == len(charts.rewards.other.bx) == 4  # chosen and rejected, every step
    assert charts.rewards.ey[-1] > charts.rewards.other.ey[-1]  # the chosen reward rose above the rejected
    assert charts.metric.key == "reward_accuracy" and len(charts.metric.vx) == 2
