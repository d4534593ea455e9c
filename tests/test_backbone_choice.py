"""backbone.choose_from (preset best): the run scores each candidate by the cross-validated linear head on its
embeddings, trains and exports the winner on the vectors it already has, and the plan shows the choice and
its cost before Start; a candidate past the time budget is left out, and says why."""

from __future__ import annotations

import json

import pytest

from tlapp.base.errors import ConfigError
from tlapp.config import project_from_dict
from tlapp.presets import EMBEDDED_IMAGE, choices_of
from tlapp.training.choice import pick
from tlapp.training.estimate import Candidate, plan_choice
from tlapp.training.plan import make_plan, plan_lines

from conftest import tiny_project_dict


def _project(data, **backbone):
    d = tiny_project_dict(data)
    d["backbone"] = {"name": "efficientnet_lite0", "image_size": 64, **backbone}
    d["train"] = {"batch_size": 8, "preset": "best", "finetune": "never"}
    d["export"] = {"formats": []}
    return d


def test_best_proposes_the_embedded_backbones_only_where_nothing_else_was_set(color_data):
    def proj(preset: str, **backbone):
        d = tiny_project_dict(color_data) | {"backbone": {"name": "efficientnet_lite0", **backbone}}
        d["train"] = {"preset": preset}
        return project_from_dict(d)

    assert choices_of(proj("best")) == list(EMBEDDED_IMAGE)  # the default backbone under best: a choice
    assert choices_of(proj("balanced")) == []
    assert choices_of(proj("best", name="mobilenet_v2")) == []  # a backbone the person picked trains
    assert choices_of(proj("best", choose_from=["efficientnet_lite0"])) == []  # one name: no choice
    two = ["efficientnet_lite0", "efficientnet_lite2"]
    assert choices_of(proj("balanced", choose_from=two)) == two  # written out: any preset chooses
    with pytest.raises(ConfigError, match="compares pretrained backbones"):
        project_from_dict(_project(color_data, weights="none", choose_from=two))
    with pytest.raises(ConfigError, match="'mobilenet_v2' is not among backbone.choose_from"):
        project_from_dict(_project(color_data, name="mobilenet_v2", choose_from=["efficientnet_lite0"]))
    with pytest.raises(ConfigError, match="choose_from is for image tasks"):
        project_from_dict(
            {
                "task": {"type": "text_classification"},
                "data": {"path": "x.csv", "source": "csv"},
                "backbone": {"name": "efficientnet_lite0", "choose_from": two},
            }
        )


def test_candidates_take_their_own_size_and_weights_unless_the_person_set_a_size(color_data):
    from tlapp.training.estimate import candidate_project

    d = _project(color_data, image_size=224, options={"x": 1}, choose_from=["efficientnet_lite0", "efficientnet_lite2"])
    wizard = project_from_dict(d)  # the wizard writes Lite0's own size: not a choice of size
    lite2 = candidate_project(wizard, "efficientnet_lite2").backbone
    assert (lite2.image_size, lite2.weights, lite2.options) == (None, "imagenet", {})
    assert candidate_project(wizard, "efficientnet_lite0") is wizard
    d["backbone"]["image_size"] = 160  # a size the person chose applies to every candidate
    assert candidate_project(project_from_dict(d), "efficientnet_lite2").backbone.image_size == 160


def test_the_plan_prices_each_candidate_and_leaves_out_what_the_budget_cannot_pay(color_data):
    p = project_from_dict(_project(color_data, choose_from=["efficientnet_lite0", "efficientnet_lite2"]))
    lines = "\n".join(plan_lines(make_plan(p, 20, 10, 40.0, False)))
    assert "chosen before training among efficientnet_lite0@64" in lines and "efficientnet_lite2@64" in lines
    tight = p.model_copy(update={"train": p.train.model_copy(update={"time_budget_s": 0.01})})
    cands = plan_choice(tight, 20, 10)
    assert cands[0].runs and not cands[1].runs and "budget" in cands[1].why
    assert "efficientnet_lite2 left out" in "\n".join(plan_lines(make_plan(tight, 20, 10, 40.0, False)))


def test_the_run_trains_the_winner_on_the_vectors_it_scored(color_data, tmp_path):
    from tlapp.training import embcache
    from tlapp.training.run import train

    embcache.clear()
    p = project_from_dict(_project(color_data, choose_from=["efficientnet_lite0", "efficientnet_lite1"]))
    events = []
    assert train(p, tmp_path / "run", events.append).status == "completed"
    choice = next(e.data for e in events if e.type == "backbone_choice")
    saved = json.loads((tmp_path / "run" / "backbone_choice.json").read_text())
    ranked = sorted(saved["candidates"], key=lambda c: (-c["score"], c["loss"]))
    won, why = pick([Candidate(**c) for c in saved["candidates"]], saved["examples"], True)  # the rule, again
    assert saved["chosen"] == choice["chosen"] == won.name and saved["reason"] == why and len(ranked) == 2
    assert saved["chosen"] in (ranked[0]["name"], saved["candidates"][0]["name"])
    emb = [e.data for e in events if e.type == "embeddings" and not e.data["flip"]]
    assert [e["cached"] for e in emb] == [False, False, True]  # two candidates, then the winner's again
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())["backbone"]
    assert card["name"] == saved["chosen"] and card["chosen_from"] == saved["candidates"]
    assert card["chosen_why"] == why  # the card says why the winner won, in the rule's own words
    assert "Chosen before training" in (md := (tmp_path / "run" / "model_card.md").read_text()) and why in md


def test_the_wizard_preset_times_count_the_choice_and_leave_out_a_ruled_out_fine_tune(color_data):
    """The preset labels' times are each preset's own plan: best embeds with Lite1 and Lite2 too, and a
    fine-tune the priors rule out (images at about 10 per class) is not in balanced's time."""
    from tlapp.presets import with_preset
    from tlapp.training.plan import make_plan

    d = tiny_project_dict(color_data) | {"backbone": {"name": "efficientnet_lite0"}}
    p = project_from_dict(d)
    plans = {name: make_plan(with_preset(p, name, 80), 80, 20, 40.0, True, classes=8) for name in ("balanced", "best")}
    assert plans["best"].total_low_s > plans["balanced"].total_low_s + 1
    assert plans["balanced"].decision.finetune is False and plans["balanced"].decision.prior == "sign10"
    assert plans["balanced"].total_high_s == plans["balanced"].total_low_s


def test_the_top_candidate_wins_only_by_more_than_one_standard_error():
    """sign30's numbers: Lite2's CV lead over Lite0 was within noise, so Lite0 (earlier, cheaper) trains; a lead
    beyond one standard error wins; regression has no binomial error, so the ranking alone decides."""

    def cands(*scores):
        names = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
        return [Candidate(n, 224, 1.0, True, score=s, loss=1 - s) for n, s in zip(names, scores)]

    won, why = pick(cands(0.867, 0.86, 0.88), 300, True)
    assert won.name == "efficientnet_lite0" and "within one standard error (0.019 on 300 examples)" in why
    won, why = pick(cands(0.80, 0.86, 0.88), 300, True)
    assert won.name == "efficientnet_lite2" and "more than one standard error" in why
    assert pick(cands(0.867, 0.86, 0.88), 300, False)[0].name == "efficientnet_lite2"
    # sign100 under `best`: Lite0 and Lite1 tied at 0.926 - not "more than one standard error above the others"
    won, why = pick(cands(0.926, 0.926, 0.906), 1000, True)
    assert won.name == "efficientnet_lite0" and "more than one standard error" not in why
    assert "efficientnet_lite1 within one standard error (0.008)" in why and "lite2" not in why
