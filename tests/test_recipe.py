"""The default recipe: presets in the schema, the fine-tune decision, CV selection and refit, the event."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlapp.base.errors import ConfigError
from tlapp.config import TaskType, project_from_dict
from tlapp.presets import FINETUNE, finetune_phase
from tlapp.training import linear_head as lh
from tlapp.training.plan import decide, score_threshold

from conftest import tiny_project_dict


def _preset_project(data, **train) -> dict:
    d = tiny_project_dict(data)
    d["train"] = {"batch_size": 8, **train}  # no phases: a preset
    return d


def test_preset_schema(tmp_path):
    assert project_from_dict({"data": {"path": "x"}}).train.preset == "balanced"
    written = project_from_dict({"data": {"path": "x"}, "train": {"phases": [{"name": "a"}]}})
    assert written.train.preset == "custom"  # files from before presets keep their phases
    with pytest.raises(ConfigError, match="train.preset"):
        project_from_dict({"data": {"path": "x"}, "train": {"preset": "fastest"}})
    with pytest.raises(ConfigError, match="train.time_budget_s"):
        project_from_dict({"data": {"path": "x"}, "train": {"time_budget_s": 0}})


def _decide(n_train: int, n_val: int, rate: float, score, preset: str = "balanced", **train):
    project = project_from_dict({"data": {"path": "x"}, "train": {"preset": preset, **train}})
    ft = [finetune_phase(TaskType.image_classification, "balanced", flip=True)]
    return decide(project, ft, n_train, n_val, rate, score)


def test_auto_decision_both_branches():
    yes = _decide(800, 200, 1000.0, 0.80)
    assert yes.finetune is True and "fits" in yes.reason
    assert _decide(800, 200, 1000.0, 0.995).finetune is False  # nothing left to find
    slow = _decide(800, 200, 5.0, 0.80)
    assert slow.finetune is False and "budget" in slow.reason and slow.estimate_s > slow.budget_s
    small_val = _decide(40, 10, 1000.0, 0.90)
    assert small_val.finetune is False and "noise" in small_val.reason
    assert _decide(800, 200, 1000.0, 0.8, preset="fast").finetune is False
    assert _decide(40, 10, 5.0, 0.9, finetune="always").finetune is True
    assert _decide(800, 200, 1000.0, 0.5, preset="best", finetune="never").finetune is False
    budget = _decide(800, 200, 1000.0, 0.8, time_budget_s=0.5)
    assert budget.budget_s == 0.5 and budget.finetune is False
    project = project_from_dict({"data": {"path": "x"}})
    assert decide(project, [], 800, 200, 1000.0, 0.5).finetune is False  # a plan without a fine-tune


def test_decision_before_start_is_the_runs_threshold():
    """Before Start the auto rule is a threshold; the run's decision on either side of it agrees."""
    before = _decide(800, 200, 1000.0, None)
    t = score_threshold(200)
    assert before.finetune is None and before.below == pytest.approx(t) and f"{t:.3f}" in before.reason
    assert _decide(800, 200, 1000.0, t - 0.01).finetune is True
    assert _decide(800, 200, 1000.0, t + 0.01).finetune is False
    assert FINETUNE["image"]["learning_rate"] == 3e-5


def test_cv_picks_regularisation_and_folded_head_matches():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.normal(0, 1, (90, 20)) + np.eye(3, 20)[y] * 3 + 50  # offset: standardisation must be folded in
    cv = lh.cross_validate(x, y, TaskType.image_classification, 3, folds=5)
    assert cv.l2 in lh.L2_GRID and cv.score > 0.9 and cv.oof.shape == (90, 3)
    assert len(cv.grid) == len(lh.L2_GRID)
    head = lh.fit_linear_head(x, y, TaskType.image_classification, 3, cv.l2)
    p = lh.predict(head, x, TaskType.image_classification)
    assert np.allclose(p.sum(1), 1) and (p.argmax(1) == y).mean() > 0.95
    # Augmented rows only ever train: with copies of fold-mates' rows the score cannot leak.
    aug = lh.cross_validate(x, y, TaskType.image_classification, 3, extra_x=x + 0.01, extra_of=np.arange(90))
    assert aug.oof.shape == (90, 3)


def test_regression_and_multilabel_heads():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 4.0
    head = lh.fit_linear_head(x, y, TaskType.regression, 1, 1e-4)
    assert lh.score(lh.predict(head, x, TaskType.regression), y, TaskType.regression) > 0.99
    ym = (x[:, :2] > 0).astype(np.float32)
    cv = lh.cross_validate(x, ym, TaskType.multi_label, 2, folds=3)
    assert cv.score > 0.85


@pytest.fixture(scope="module")
def refit_run(color_data, tmp_path_factory):
    from tlapp.training.run import train

    calls = []
    real = lh.fit_linear_head

    def spy(x, *a, **k):
        calls.append(len(x))
        return real(x, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr("tlapp.training.recipe.fit_linear_head", spy)
    events = []
    try:
        run_dir = tmp_path_factory.mktemp("recipe") / "run"
        result = train(project_from_dict(_preset_project(color_data, finetune="never")), run_dir, events.append)
    finally:
        mp.undo()
    return result, events, run_dir, calls


def test_refit_sees_train_and_validation(refit_run):
    result, events, run_dir, calls = refit_run
    m = result.metrics
    n_all = m["n_train"] + m["n_val"]
    mirrored = m["recipe"]["mirror_augmentation"]
    assert calls[-1] == n_all * (2 if mirrored else 1)  # the final head saw every example
    assert m["recipe"]["refit"] is True and m["recipe"]["cv"]["n"] == n_all
    ev = json.loads((run_dir / "evaluation.json").read_text())
    assert ev["method"] == "cross-validation" and len(ev["predictions"]) == n_all
    assert ev["accuracy"] == pytest.approx(m["recipe"]["cv"]["score"])
    card = (run_dir / "model_card.md").read_text()
    assert "Recipe: head: L2" in card and "Cross-validation of the head" in card, card


def test_recipe_decision_event(refit_run):
    _, events, _, _ = refit_run
    decisions = [e for e in events if e.type == "recipe_decision"]
    assert len(decisions) == 1
    d = decisions[0].data
    assert d["finetune"]["finetune"] is False and "train.finetune: never" in d["finetune"]["reason"]
    assert d["summary"].startswith("head: L2")
    from tlapp.events import describe

    assert describe("recipe_decision", d).startswith("recipe: head: L2")


def test_a_forced_finetune_is_kept_and_trained_again_on_all_the_data(color_data, tmp_path):
    """``train.finetune: always`` is what the person asked for: validation never drops the fine-tune for the
    head; on cached activations it then trains again on all the data, and the score says which model it is."""
    from tlapp.training.run import train

    events = []
    result = train(
        project_from_dict(_preset_project(color_data, finetune="always", preset="fast")),
        tmp_path / "run",
        events.append,
    )
    starts = [e.data for e in events if e.type == "phase_start"]
    # the top blocks train on cached activations, then again on all the data for the epochs validation chose
    assert [d["name"] for d in starts] == ["head", "finetune", "finetune (all data)"]
    assert starts[1]["cut_at"] and starts[2]["cut_at"] == starts[1]["cut_at"]
    recipe, m = result.metrics["recipe"], result.metrics
    assert recipe["finetune"]["finetune"] is True and recipe["finetune_kept"] is True and recipe["refit"] is True
    ends = [e.data for e in events if e.type == "epoch_end" and not e.data.get("stage")]
    first = [d for d in ends if d["phase"] == 1]
    again = [d for d in ends if d["phase_name"] == "finetune (all data)"]
    # 9 validation squares cannot choose among epochs: the refit trains as many as the first run did
    assert len(again) == len(first) and "val_loss" not in again[-1]["metrics"]  # nothing held out to judge
    assert m["best"]["phase_name"] == "finetune (all data)" and m["best"]["epoch"] == len(first)
    # the reported score is the first run's on validation, which the model then trained on: it says so
    assert m["evaluation"]["method"] == "validation" and "before it was trained again" in m["evaluation"]["note"]
    assert "within noise" not in recipe["summary"] and "trained again on all the data" in recipe["summary"]
    assert result.export["verified"] is True


def test_mirror_never_skips_the_mirrored_pass(color_data, tmp_path):
    from tlapp.training.run import train

    events = []
    d = _preset_project(color_data, finetune="never", mirror="never")
    d["export"] = {"formats": []}
    result = train(project_from_dict(d), tmp_path / "run", events.append)
    assert [e.data["flip"] for e in events if e.type == "embeddings"] == [False]
    assert result.metrics["recipe"]["mirror_augmentation"] is False


def test_the_priors_are_what_the_benchmark_measured():
    """PRIORS is the auto rule's evidence: it must be the gains benchmarks/finetune_priors.py wrote."""
    from pathlib import Path

    from tlapp.training.plan import PRIORS, Prior

    doc = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "finetune_priors.json").read_text())
    measured = tuple(Prior(r["modality"], r["per_class"], r["gain"], r["set"]) for r in doc["priors"])
    assert PRIORS == measured and {p.modality for p in PRIORS} == {"image", "text"}


def _prior_decide(monkeypatch, priors, n_train, n_val, score, classes=10, task="image_classification"):
    from tlapp.training import plan

    monkeypatch.setattr(plan, "PRIORS", priors)
    project = project_from_dict({"task": {"type": task}, "data": {"path": "x"}})
    ft = [finetune_phase(TaskType.image_classification, "balanced", flip=True)]
    return decide(project, ft, n_train, n_val, 1000.0, score, classes=classes)


def test_auto_rule_by_prior_runs_skips_and_saturates(monkeypatch):
    from tlapp.training.plan import SATURATED, Prior

    priors = (Prior("image", 10, -0.08, "small"), Prior("image", 100, 0.03, "large"), Prior("text", 100, 0.02, "t"))
    # 30 per class is nearer 10 than 100 on a log scale (3x vs 3.3x): the small set's loss decides
    no = _prior_decide(monkeypatch, priors, 240, 60, 0.85)
    assert no.finetune is False and no.prior == "small" and "-8.0 points" in no.reason
    assert "all the data trains the head" in no.reason
    # 100 per class: the large set's gain; a validation split of 200 need not prove it
    yes = _prior_decide(monkeypatch, priors, 800, 200, 0.95)
    assert yes.finetune is True and yes.prior == "large" and "+3.0 points" in yes.reason
    assert "kept unless validation" in yes.reason
    before = _prior_decide(monkeypatch, priors, 800, 200, None)
    assert before.finetune is None and before.below == SATURATED
    assert _prior_decide(monkeypatch, priors, 800, 200, 0.995).finetune is False  # nothing left to find
    # without class counts (or for a task no benchmark measured) the validation rule stands
    assert _prior_decide(monkeypatch, priors, 800, 200, 0.95, classes=0).prior is None
    reg = _prior_decide(monkeypatch, priors, 800, 200, None, task="regression")
    assert reg.prior is None


def test_a_prior_decided_finetune_is_kept_unless_validation_says_it_hurt(color_data, tmp_path, monkeypatch):
    from tlapp.training import plan
    from tlapp.training.run import train

    monkeypatch.setattr(plan, "PRIORS", (plan.Prior("image", 10, 0.05, "pretend"),))
    monkeypatch.setattr(plan, "SATURATED", 1.01)  # the colour squares are solved by the head alone
    result = train(project_from_dict(_preset_project(color_data)), tmp_path / "run", lambda e: None)
    recipe = result.metrics["recipe"]
    assert recipe["finetune"]["finetune"] is True and recipe["finetune"]["prior"] == "pretend"
    kept, gain = recipe["finetune_kept"], recipe["finetune_gain"]
    assert kept or gain < 0  # validation may only veto: a fine-tune that did not lose is kept
    assert result.metrics["best"]["phase_name"] == ("finetune (all data)" if kept else "head")
    if not kept:
        assert "worse by more than noise" in recipe["summary"]


def _two_views(rng, n_per: int = 40, d: int = 30, noise: float = 3.0):
    """Three classes seen through two noisy views of one signal (an image and its mirror image)."""
    y = np.repeat(np.arange(3), n_per)
    signal = np.eye(3, d)[y] * 2.0
    return y, signal + rng.normal(0, noise, (len(y), d)), signal + rng.normal(0, noise, (len(y), d))


def test_cv_averages_with_the_mirror_image_only_where_it_scores_better():
    rng = np.random.default_rng(0)
    task = TaskType.image_classification
    y, x, view = _two_views(rng)
    # The mirror is a second look at the same thing: averaging halves the noise, and CV sees it.
    cv = lh.cross_validate(x, y, task, 3, mirrored=view)
    assert cv.averaged and cv.score == max(r["score_averaged"] for r in cv.grid)
    assert cv.score > max(r["score"] for r in cv.grid)
    # The mirror looks like another class (a digit's mirror image): averaging would hurt, so it is refused.
    wrong = view[np.argsort((y + 1) % 3, kind="stable")]
    cv = lh.cross_validate(x, y, task, 3, mirrored=wrong)
    assert not cv.averaged and cv.score == max(r["score"] for r in cv.grid)
    assert cv.score > max(r["score_averaged"] for r in cv.grid)


def test_repeated_cv_scores_the_mean_of_its_fold_draws():
    rng = np.random.default_rng(1)
    task = TaskType.image_classification
    y, x, _ = _two_views(rng, n_per=20)
    one, other = (lh.cross_validate(x, y, task, 3, seed=s, grid=(0.01,)) for s in (5, 6))
    both = lh.cross_validate(x, y, task, 3, seed=5, grid=(0.01,), repeats=2)
    assert one.score != other.score  # the draw of folds alone moves the score ...
    assert both.score == pytest.approx((one.score + other.score) / 2)  # ... and repeats average it out
    assert both.oof == pytest.approx((one.oof + other.oof) / 2)  # still out of fold: each head never saw its row
    assert [lh.cv_repeats(n) for n in (100, 300, 600, 5000)] == [5, 2, 1, 1]


def test_a_mirror_averaged_model_is_exact_and_loads_without_tlapp_layers(tmp_path):
    import keras

    from tlapp.model.image_model import MIRROR_AVERAGE, mirror_averaged, single_pass

    inp = keras.Input((None, None, 3))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(keras.layers.Resizing(8, 8)(inp)))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="one")
    both = mirror_averaged(model, 8)
    img = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = (model.predict(img, verbose=0) + model.predict(img[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(both.predict(img, verbose=0), expected, atol=1e-6)
    assert single_pass(both) is model and single_pass(model) is model
    both.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # stock layers: no custom_objects, safe mode
    assert MIRROR_AVERAGE in [layer.name for layer in loaded.layers]
    np.testing.assert_allclose(loaded.predict(img, verbose=0), expected, atol=1e-6)


def test_a_run_whose_cv_chose_averaging_exports_and_checks_the_averaged_model(color_data, tmp_path, monkeypatch):
    """The wiring from the CV verdict to the exported model. The CV runs for real; only its verdict is
    forced, as solid colours look the same mirrored and could never make averaging win."""
    import keras

    from tlapp.model.image_model import MIRROR_AVERAGE
    from tlapp.training import recipe
    from tlapp.training.run import train

    real = recipe.cross_validate

    def averaging_wins(*args, **kwargs):
        cv = real(*args, **kwargs)
        cv.averaged = "mirrored" in kwargs  # offered the mirror images: say averaging won
        return cv

    monkeypatch.setattr(recipe, "cross_validate", averaging_wins)
    result = train(project_from_dict(_preset_project(color_data, finetune="never")), tmp_path / "run", lambda e: None)
    assert result.metrics["recipe"]["mirror_average"] is True
    assert "averaging each image with its mirror image helped" in result.metrics["recipe"]["summary"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["export"]["verified"] is True  # the fresh-process check passed on the averaged model
    exported = keras.saving.load_model(tmp_path / "run" / "export" / "model.keras")
    assert MIRROR_AVERAGE in [layer.name for layer in exported.layers]
