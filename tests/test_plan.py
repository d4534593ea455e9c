"""The person's plan is what trains: the default preset end to end (fine-tune taken, skipped, dropped),
ticks from the file and from --set, settings that cannot apply, and the plan shown before Start."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tlapp.base.errors import ConfigError
from tlapp.config import TaskType, project_from_dict
from tlapp.presets import (
    finetune_freeze,
    phases_of,
    with_finetune_choice,
    with_finetune_freeze,
    with_preset,
    with_proposed_phases,
)

from conftest import make_color_dataset, tiny_project_dict


def _preset(data: Path, **train) -> dict:
    d = tiny_project_dict(data)
    d["train"] = {"batch_size": 8, "preset": "balanced", **train}  # no phases: the preset proposes them
    d["export"] = {"formats": ["keras"], "verify": False}
    return d


def _trainable_blocks(event_data: dict) -> list[str]:
    return [b["block"] for b in event_data["blocks"] if b["trainable_params"]]


@pytest.fixture(scope="module")
def noisy_data(tmp_path_factory) -> Path:
    """Colours with labels that do not follow them: the head is near chance, so the auto rule fine-tunes."""
    root = tmp_path_factory.mktemp("noisy") / "data"
    make_color_dataset(root, n=70, size=32)
    rng = np.random.default_rng(3)
    files = sorted(root.rglob("*.png"))
    for i, f in enumerate(rng.permutation(files)):  # move each image to a class chosen by position, not colour
        target = root / ("red", "green", "blue")[i % 3] / f"x{i:03d}.png"
        f.rename(target)
    return root


def _events(data: dict, run_dir: Path):
    from tlapp.training.run import train

    events = []
    result = train(project_from_dict(data), run_dir, events.append)
    return result, events


def test_default_preset_fine_tune_taken_by_the_validation_rule(noisy_data, tmp_path, monkeypatch):
    """The rule for tasks no benchmark measured (here: image priors removed): the fine-tune runs when the
    head leaves error the validation split can tell from noise."""
    from tlapp.training import plan as plan_mod

    monkeypatch.setattr(plan_mod, "PRIORS", ())
    d = _preset(noisy_data)
    d["data"]["val_fraction"] = 0.3
    result, events = _events(d, tmp_path / "run")
    plan = next(e.data for e in events if e.type == "plan")
    assert plan["decision"]["finetune"] is None and "runs if the head scores below" in plan["decision"]["reason"]
    decision = next(e.data for e in events if e.type == "recipe_decision")
    assert decision["finetune"]["finetune"] is True, decision["summary"]
    starts = [e.data for e in events if e.type == "phase_start"]
    assert [s["name"] for s in starts] == ["head", "finetune"]
    assert _trainable_blocks(starts[0]) == [] and _trainable_blocks(starts[1]) == ["block2", "block3"]
    assert starts[0]["trainable_params"] > 0  # the head's own parameters, not 0
    history = (tmp_path / "run" / "history.csv").read_text()
    assert ",cv," in history and ",solver," in history and "finetune" in history
    assert isinstance(result.metrics["recipe"]["finetune_kept"], bool)


def test_default_preset_fine_tune_skipped_and_the_head_solve_is_charted(color_data, tmp_path):
    result, events = _events(_preset(color_data), tmp_path / "run")
    decision = next(e.data for e in events if e.type == "recipe_decision")
    # 10 colour squares per class: the nearest image prior (sign10) lost 8 points to the head alone
    assert decision["finetune"]["finetune"] is False and decision["finetune"]["prior"] == "sign10"
    assert "benchmarks/recipe.py" in decision["finetune"]["reason"]
    plan = next(e.data for e in events if e.type == "plan")
    assert plan["decision"]["finetune"] is False  # known before Start: the plan and the run agree
    assert [e.data["name"] for e in events if e.type == "phase_start"] == ["head"]
    cv = [e.data for e in events if e.type == "epoch_end" and e.data.get("stage") == "cv"]
    steps = [e.data for e in events if e.type == "solver_step"]
    assert len(cv) == cv[0]["epochs"] >= 7 and all("val_accuracy" in c["metrics"] for c in cv)
    assert len(steps) > 1 and steps[-1]["iteration"] > steps[0]["iteration"]
    rows = list(csv_rows(tmp_path / "run" / "history.csv"))
    # history.csv holds every point the charts drew: each CV candidate and each solver point sent
    assert sum(r["stage"] == "cv" for r in rows) == len(cv) and sum(r["stage"] == "solver" for r in rows) == len(steps)
    assert result.metrics["phases"][0]["epochs"] == 1  # chart points are not epochs
    assert result.metrics["evaluation"]["method"] == "cross-validation"


def csv_rows(path: Path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def test_a_fine_tune_that_makes_things_worse_is_dropped_and_the_head_is_exported(color_data, tmp_path, monkeypatch):
    """Run on a prior's word after a head that already scores 1.0 on validation, with a learning rate far
    too high (0.1; 0.2 trips the divergence guard): validation vetoes the fine-tune, so the head on the original backbone is what the run exports
    (its backbone weights are the untouched ones)."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.model.image_model import build_model
    from tlapp.training import plan as plan_mod

    monkeypatch.setattr(plan_mod, "PRIORS", (plan_mod.Prior("image", 10, 0.05, "pretend"),))
    monkeypatch.setattr(plan_mod, "SATURATED", 1.01)  # the head's perfect score leaves nothing, on its own word
    d = _preset(color_data)
    d["train"]["phases"] = [
        {"name": "head", "solver": "exact"},
        {
            "name": "finetune",
            "epochs": 2,
            "learning_rate": 0.1,
            "freeze": {"mode": "none"},
            "use_embedding_cache": False,
        },
    ]
    result, _ = _events(d, tmp_path / "run")
    recipe = result.metrics["recipe"]
    assert recipe["finetune"]["finetune"] is True and recipe["finetune_kept"] is False
    assert recipe["finetune_gain"] < 0 and "worse by more than noise" in recipe["summary"], recipe["finetune_gain"]
    assert result.metrics["best"]["phase_name"] == "head"
    _, keras = quiet_import()
    project = project_from_dict(d)
    keras.utils.set_random_seed(project.train.seed)  # the same initial backbone the run built
    fresh = build_model(project, 3)
    exported = keras.models.load_model(tmp_path / "run" / "export" / "model.keras", compile=False)
    kernel = next(w for w in exported.weights if "block3_conv" in w.path).numpy()
    original = next(w for w in fresh.model.weights if "block3_conv" in w.path).numpy()
    np.testing.assert_array_equal(kernel, original)


def _write(tmp_path: Path, d: dict) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(d))
    return f


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from test_config import run_cli

    code, out, err = run_cli(args, capsys)
    return code, out + err


def test_ticks_from_the_file_and_from_set_are_what_trains(color_data, tmp_path, capsys):
    d = _preset(color_data, finetune="always")
    d["export"] = {"formats": []}
    d["train"]["phases"] = [
        {"name": "head", "solver": "exact"},
        {
            "name": "finetune",
            "epochs": 1,
            "learning_rate": 1e-4,
            "steps_per_epoch": 2,
            "freeze": {"mode": "top_blocks", "blocks": 1},
            "use_embedding_cache": False,
        },
    ]
    f = _write(tmp_path, d)
    for run, extra, want in (
        ("file", [], ["block3"]),
        ("set", ["--set", "train.phases.1.freeze.blocks=2"], ["block2", "block3"]),
    ):
        code, text = _cli(["train", str(f), "--out", str(tmp_path / run), *extra], capsys)
        assert code == 0, text
        events = [json.loads(x) for x in (tmp_path / run / "events.jsonl").read_text().splitlines()]
        ft = [e["data"] for e in events if e["type"] == "phase_start" and e["data"]["name"] == "finetune"][0]
        assert _trainable_blocks(ft) == want
        card = json.loads((tmp_path / run / "model_card.json").read_text())
        assert _trainable_blocks(card["training"]["phases"][1]) == want
        assert card["training"]["planned_phases"][1]["freeze"]["blocks"] == len(want)
        assert "plan (preset balanced" in text and "fine-tune: yes" in text  # the plan comes first


def test_settings_that_cannot_apply_are_one_line_errors(color_data, tmp_path, capsys):
    f = _write(tmp_path, _preset(color_data))
    code, text = _cli(["plan", str(f), "--set", "train.phases.0.epochs=10"], capsys)
    assert code == 2 and "train.phases.0.epochs" in text and "solver: exact" in text
    assert text.strip().count("\n") == 0
    d = _preset(color_data)
    d["train"]["phases"] = [{"name": "my head", "solver": "exact"}]  # the person's own exact head
    code, text = _cli(
        ["train", str(_write(tmp_path, d)), "--set", "head.hidden=[16]", "--out", str(tmp_path / "never")], capsys
    )
    assert code == 2 and "train.phases.0.solver" in text and "head.hidden" in text
    assert not (tmp_path / "never").exists()  # refused before a run folder was made
    from tlapp.cli.plan_cmds import project_with_overrides

    proposed = project_with_overrides(
        _write(tmp_path, _preset(color_data)), ["head.hidden=[16]", "train.phases.1.epochs=2"]
    )
    assert proposed.train.phases[0].solver == "gradient"  # the proposal follows the head, as on the Head step
    with pytest.raises(ConfigError, match="train.phases.0.freeze.mode"):
        phases_of(
            project_from_dict(
                {
                    "data": {"path": "x"},
                    "train": {"preset": "balanced", "phases": [{"name": "ft", "freeze": {"mode": "none"}}]},
                }
            ),
            10,
        )


def test_plan_shows_phases_times_and_the_decision(color_data, tmp_path, capsys):
    f = _write(tmp_path, _preset(color_data))
    code, text = _cli(["plan", str(f), "--set", "train.phases.1.epochs=5", "--json"], capsys)
    assert code == 0, text
    plan = json.loads(text)
    assert [p["name"] for p in plan["phases"]] == ["head", "finetune"] and plan["phases"][1]["phase"]["epochs"] == 5
    assert plan["phases"][1]["backbone_trainable_params"] > 0 == plan["phases"][0]["backbone_trainable_params"]
    assert plan["decision"]["finetune"] in (False, None) and "train.finetune: always" in plan["decision"]["reason"]
    code, text = _cli(["plan", str(f), "--set", "train.finetune=never"], capsys)
    assert code == 0 and "fine-tune: no — fine-tune turned off (train.finetune: never)" in text


def test_preset_proposals_and_the_layers_step_rules():
    p = project_from_dict({"data": {"path": "x"}})
    filled = with_proposed_phases(p, 100)
    assert [ph.name for ph in filled.train.phases] == ["head", "finetune"]
    best = with_preset(filled, "best", 100)  # an untouched proposal follows the preset
    assert best.train.phases[1].epochs == 12 == 2 * filled.train.phases[1].epochs  # images: twice the text epochs
    from tlapp.config import FreezePlan

    ticked = with_finetune_freeze(best, FreezePlan(mode="top_blocks", blocks=1))
    assert with_preset(ticked, "balanced").train.phases[1].freeze.blocks == 1  # the person's edit stays
    head_only = with_finetune_freeze(ticked, FreezePlan(mode="all"))  # untick everything: no fine-tune...
    assert head_only.train.finetune == "never" and finetune_freeze(head_only).mode == "all"
    assert head_only.train.phases[1] == ticked.train.phases[1]  # ...but its epochs and LR are kept
    again = with_finetune_freeze(head_only, FreezePlan(mode="top_blocks", blocks=2))
    assert again.train.finetune == "auto" and again.train.phases[1].freeze.blocks == 2
    forced = with_finetune_choice(with_preset(p, "fast"), "always")
    assert forced.train.finetune == "always" and len(phases_of(forced, 10)) == 2
    lm = project_from_dict(
        {
            "task": {"type": "sft"},
            "data": {"source": "pairs", "path": "x.jsonl"},
            "backbone": {"name": "smollm2_135m_instruct"},
            "train": {
                "preset": "balanced",
                "phases": [{"name": "sft", "freeze": {"mode": "lora", "rank": 4, "targets": ["query"]}}],
            },
        }
    )
    assert lm.task.type == TaskType.sft
    got = phases_of(lm, 20)[0].freeze  # LoRA settings from the Layers step are what trains under a preset
    assert (got.rank, got.targets) == (4, ["query"])
