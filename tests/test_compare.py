"""`tlapp compare`: the backbone leaderboard (issue #9)."""

from __future__ import annotations

import json

import pytest

from tlapp.base.errors import BackboneError, ConfigError
from tlapp.config import project_from_dict
from tlapp.training import compare

from conftest import shared, tiny_project_dict


def test_specs_parse_with_size_and_options():
    p = project_from_dict(tiny_project_dict("."))
    b = compare.parse_spec("mobilenet_v2@128:alpha=0.35", p)
    assert (b.name, b.image_size, b.options, b.weights) == ("mobilenet_v2", 128, {"alpha": 0.35}, "imagenet")
    with pytest.raises(BackboneError, match="mobilenet_v9"):
        compare.parse_spec("mobilenet_v9", p)
    with pytest.raises(ConfigError, match="options are key=value"):
        compare.parse_spec("mobilenet_v2:alpha", p)


def test_leaderboard_ranks_scores_skips_and_caches(color_data, tmp_path):
    d = tiny_project_dict(color_data)
    p = project_from_dict(d)
    specs = ["tiny_cnn@32", "tiny_cnn@16", "mobilenet_v2@96:alpha=0.35"]
    rows = compare.compare(p, specs, per_class=8)
    scored = [r for r in rows if not r.skipped]
    assert [r.backbone for r in scored] and {r.backbone for r in scored} == {"tiny_cnn@32", "tiny_cnn@16"}
    assert rows[-1].backbone.startswith("mobilenet_v2") and "no weights" in rows[-1].skipped  # offline here
    assert scored[0].score >= scored[1].score and all(r.n == 24 and r.folds >= 2 for r in scored)
    assert all(r.ms_per_image and r.ms_per_image > 0 for r in scored)
    again = compare.compare(p, specs[:2], per_class=8)
    assert all(r.cached for r in again) and [r.score for r in again] == [r.score for r in scored]


@pytest.mark.slow
def test_compare_three_real_backbones_on_sign_language_digits(tmp_path, capsys):
    from test_config import run_cli

    data = shared("data", "sign_language_digits", "Dataset")
    for w in ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128_no_top.h5", "mobilenet_2_5_224_tf_no_top.h5"):
        code, _, err = run_cli(["weights", "import", str(shared("weights", w))], capsys)
        assert code == 0, err
    proj = tmp_path / "p.yaml"
    proj.write_text(json.dumps({"name": "digits", "data": {"path": str(data), "seed": 3}}))
    code, out, err = run_cli(
        [
            "compare",
            str(proj),
            "--per-class",
            "30",
            "--json",
            "--backbones",
            "efficientnet_lite0@160,mobilenet_v2@128:alpha=0.35,mobilenet@224:alpha=0.25",
        ],
        capsys,
    )
    assert code == 0, err
    rows = json.loads(out)
    print("\nbackbone leaderboard, sign-language digits (30/class):")
    for r in rows:
        print(
            f"  {r['rank']}. {r['backbone']}: CV accuracy {r['score']:.4f}, {r['params_m']:.1f} M params, "
            f"{r['ms_per_image']:.0f} ms/img, {r['seconds']:.0f} s"
        )
    assert [r["rank"] for r in rows] == [1, 2, 3] and all(r["score"] > 0.5 for r in rows)
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]


def test_training_reuses_what_compare_embedded(color_data, tmp_path):
    """The leaderboard and training share one row store: a run after `tlapp compare` on a sample embeds
    only the examples the sample lacked, and the next run (that run stored them) none."""
    import shutil

    from tlapp.base.paths import store_dir
    from tlapp.training import embcache
    from tlapp.training.run import train

    embcache.clear()
    shutil.rmtree(store_dir("cache", "compare"), ignore_errors=True)  # a saved score would skip the pass
    d = tiny_project_dict(color_data)
    d["backbone"] = {"name": "efficientnet_lite0", "weights": "imagenet", "image_size": 64}
    d["train"]["phases"] = [{"name": "head", "epochs": 1, "freeze": {"mode": "all"}}]
    d["export"] = {"formats": [], "verify": False}
    p = project_from_dict(d)

    def embedded(run: str) -> dict:
        embcache._MEMORY.clear()  # as a new process: only the model store's rows remain
        events = []
        assert train(p, tmp_path / run, events.append).status == "completed"
        return next(e.data for e in events if e.type == "embeddings" and not e.data["flip"])

    compare.compare(p, ["efficientnet_lite0@64"], per_class=4)  # 12 of the 30 photos
    part = embedded("after_sample")
    assert 0 < part["reused"] < part["n"] and not part["cached"]
    again = embedded("again")  # the first run added the rest
    assert again["cached"] and again["reused"] == again["n"] == part["n"]
