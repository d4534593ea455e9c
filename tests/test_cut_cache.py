"""A top-blocks fine-tune on cached activations is the fine-tune through the whole model, only cheaper."""

from __future__ import annotations

import numpy as np

from tlapp.config import FreezePlan, project_from_dict

from conftest import lite0_pth, tiny_project_dict


def _assembled(color_data, backbone: dict | None = None):
    from tlapp.model.image_model import build_model

    d = tiny_project_dict(color_data)
    if backbone:
        d["backbone"] = backbone
    return build_model(project_from_dict(d), 3)


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _cut(asm, plan: FreezePlan):
    from tlapp.backbones.freeze import apply_plan
    from tlapp.training.cut_cache import find_cut

    table = apply_plan(asm.backbone.model, asm.backbone.entry, plan)
    return find_cut(asm, table)


def test_the_top_on_activations_is_the_whole_model_and_trains_its_layers(color_data):
    asm = _assembled(color_data)
    cut, why = _cut(asm, FreezePlan(mode="top_blocks", blocks=1))
    assert cut is not None and why == "" and cut.layer == "block3_conv"
    x = _images(6, 40)  # another size than the backbone's: the model's own Resizing runs below the cut
    for imgs in (x, x[:, :, ::-1]):
        whole = asm.model.predict_on_batch(imgs)
        np.testing.assert_allclose(cut.target.predict_on_batch(cut.lower.predict_on_batch(imgs)), whole, atol=1e-5)
    # the same layer objects: a step on the activations moves the full model the same way
    before = asm.model.predict_on_batch(x)
    import keras

    cut.target.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    act = cut.lower.predict_on_batch(x)
    cut.target.fit(act, np.array([0, 1, 2, 0, 1, 2]), epochs=3, verbose=0)
    after = asm.model.predict_on_batch(x)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(cut.target.predict_on_batch(act), after, atol=1e-5)


def test_no_cut_where_it_would_not_be_exact(color_data):
    asm = _assembled(color_data)
    for plan in (FreezePlan(mode="none"), FreezePlan(mode="patterns", patterns=["^stem_conv$", "^block3_conv$"])):
        cut, why = _cut(asm, plan)  # the first layer trains: nothing below it to cache
        assert cut is None and "nothing below it is frozen" in why


def test_each_epoch_shows_each_row_once_mirrored_or_not():
    from tlapp.data.pipelines import array_batches

    x = np.arange(40, dtype="float32").reshape(20, 2)
    xf = -x  # "mirrored": negated, so each row says which copy it came from
    ds = array_batches(x, np.arange(20), 8, shuffle=True, seed=3, mirrored=xf)
    it = ds.repeat().as_numpy_iterator()  # as fit reads it: one iterator, 3 batches an epoch
    epochs = [[next(it) for _ in range(3)] for _ in range(2)]
    flipped = []
    for ep in epochs:
        rows = np.concatenate([b[0] for b in ep])
        labels = np.concatenate([b[1] for b in ep])
        assert sorted(labels) == list(range(20))
        np.testing.assert_array_equal(np.abs(rows), x[labels])  # row i (or its mirror) carries label i
        flipped.append(tuple(rows[:, 1] < 0))
    assert 0 < sum(flipped[0]) < 20 and flipped[0] != flipped[1]  # a fresh draw every epoch


def test_efficientnet_lite0_cut_below_its_top_two_blocks_matches_the_whole_model(color_data):
    lite0_pth()
    asm = _assembled(color_data, {"name": "efficientnet_lite0"})
    cut, _ = _cut(asm, FreezePlan(mode="top_blocks", blocks=2))
    assert cut is not None and cut.layer == "block6a_expand_conv" and cut.shape == (14, 14, 112)
    x = _images(4, 224, seed=1)
    np.testing.assert_allclose(
        cut.target.predict_on_batch(cut.lower.predict_on_batch(x)), asm.model.predict_on_batch(x), atol=1e-5
    )


def test_a_run_says_why_a_fine_tune_goes_through_the_whole_model(color_data, tmp_path):
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    d["train"]["phases"][1]["augment"] = {"flip": True, "rotation": 0.1}
    d["export"] = {"formats": []}
    events = []
    train(project_from_dict(d), tmp_path / "run", events.append)
    starts = [e.data for e in events if e.type == "phase_start"]
    assert "cut_at" not in starts[1] and "rotation" in starts[1]["cut_why_not"]
    d["train"]["phases"][1]["augment"] = {"flip": True}
    events.clear()
    train(project_from_dict(d), tmp_path / "run2", events.append)
    starts = [e.data for e in events if e.type == "phase_start"]
    assert starts[1]["cut_at"] == "block3_conv"


def test_the_embedding_pass_keeps_the_activations_below_the_cut(color_data):
    """Through ``lower`` then ``embed`` the pass gives the head's vectors, and what it keeps is the bottom's
    pass (train and validation are views of one matrix, a padded last batch cut off)."""
    from tlapp.training.cut_cache import Kept, keeping

    asm = _assembled(color_data)
    cut, _ = _cut(asm, FreezePlan(mode="top_blocks", blocks=1))
    x = _images(5, 32, seed=2)
    forward, kept = keeping(cut.lower.predict_on_batch, cut.embed.predict_on_batch, 5)
    pooled = [forward(x[:4]), forward(np.concatenate([x[4:], np.zeros_like(x[:3])]))]  # padded to 4
    np.testing.assert_allclose(np.concatenate(pooled)[:5], asm.features.predict_on_batch(x), atol=1e-5)
    acts = kept()
    assert acts.shape == (5, *cut.shape)
    np.testing.assert_allclose(acts, cut.lower.predict_on_batch(x), atol=1e-5)
    k = Kept(cut.layer, list("abcde"), acts)
    assert np.shares_memory(k.take(cut.layer, ["c", "d", "e"]), acts)
    np.testing.assert_array_equal(k.take(cut.layer, ["e", "a"]), acts[[4, 0]])
    assert k.take(cut.layer, ["a", "z"]) is None and k.take("elsewhere", ["a"]) is None


def test_a_fine_tune_after_a_solved_head_reuses_the_embedding_pass(color_data, tmp_path):
    """No pass below the cut of its own: the activations came with the head's vectors. A head trained by
    epochs (its embedding pass kept nothing: no fine-tune decision is taken before it) makes its own."""
    from tlapp.training import embcache
    from tlapp.training.run import train

    d = tiny_project_dict(color_data, finetune="always")
    d["train"]["phases"][1]["augment"] = {"flip": True}
    d["export"] = {"formats": []}
    for head, own_pass in (({"name": "head", "solver": "exact"}, False), (d["train"]["phases"][0], True)):
        d["train"]["phases"][0] = head
        embcache.clear()
        events = []
        train(project_from_dict(d), tmp_path / str(own_pass), events.append)
        stages = {str(e.data.get("stage", "")) for e in events if e.type == "progress"}
        assert any(s.startswith("embedding") for s in stages)
        assert any(s.startswith("activations below block3_conv") for s in stages) == own_pass
        assert [e.data.get("cut_at") for e in events if e.type == "phase_start"][1] == "block3_conv"


def test_a_fine_tune_after_a_solved_head_is_priced_without_its_own_pass(color_data):
    """The plan's price follows the run: after a solved head the pass below the cut costs nothing more, except
    the mirrored images' when the head had no mirrored candidates (``train.mirror: never``)."""
    from tlapp.config import Phase
    from tlapp.training.estimate import finetune_seconds, phase_seconds
    from tlapp.training.plan import make_plan

    d = tiny_project_dict(color_data)
    ft = {"name": "finetune", "epochs": 6, "freeze": {"mode": "top_blocks", "blocks": 2}, "augment": {"flip": True}}
    d["train"]["phases"] = [{"name": "head", "solver": "exact"}, ft]
    p, phase = project_from_dict(d), Phase(**ft)
    own = phase_seconds(p, phase, 240, 60, 30.0, refit=True)
    assert own - phase_seconds(p, phase, 240, 60, 30.0, refit=True, fused=True) == 20.0  # 600 images at 30/s
    assert finetune_seconds(p, [phase], 240, 60, 30.0, fused=True) == own - 20.0
    assert make_plan(p, 240, 60, 30.0, True).phases[1].expected_s == own - 20.0
    d["train"]["mirror"] = "never"
    unmirrored = project_from_dict(d)
    assert phase_seconds(unmirrored, phase, 240, 60, 30.0, True, fused=True) == own - 10.0
    d["train"]["phases"][0] = {"name": "head", "epochs": 2}  # a head by epochs: no pass to reuse
    assert make_plan(project_from_dict(d), 240, 60, 30.0, True).phases[1].expected_s == own


def test_building_a_fine_tunes_training_step_is_priced_and_allowed_for(color_data, monkeypatch):
    """The first epoch of a phase builds its training step (seconds that no per-example speed predicts): the
    plan prices it, once per fit, and the preset's budget allows for it; a budget the person set is theirs."""
    from tlapp.config import Phase
    from tlapp.training import estimate
    from tlapp.training.plan import decide

    d = tiny_project_dict(color_data)
    ft = {"name": "finetune", "epochs": 6, "freeze": {"mode": "top_blocks", "blocks": 2}, "augment": {"flip": True}}
    d["train"]["phases"] = [{"name": "head", "solver": "exact"}, ft]
    p, phase = project_from_dict(d), Phase(**ft)
    priced = [estimate.phase_seconds(p, phase, 240, 60, 30.0, refit) for refit in (False, True)]
    budget = estimate.budget_s(p, 240, 60, 30.0, [phase])
    monkeypatch.setitem(estimate.SETUP_S, "image", 0.0)
    assert [a - estimate.phase_seconds(p, phase, 240, 60, 30.0, r) for a, r in zip(priced, (False, True))] == [
        4.0,
        8.0,  # the refit on all the data builds its step again
    ]
    assert budget - estimate.budget_s(p, 240, 60, 30.0, [phase]) == 8.0
    monkeypatch.undo()
    assert decide(p, [phase], 240, 60, 30.0, 0.5).budget_s == budget
    d["train"]["time_budget_s"] = 12.0
    assert decide(project_from_dict(d), [phase], 240, 60, 30.0, 0.5).budget_s == 12.0
