import json

import pytest
import yaml

from tlapp.base.errors import ConfigError
from tlapp.cli.main import main
from tlapp.config import SCHEMA_VERSION, apply_overrides, load_project, project_from_dict, project_to_yaml, save_project


def run_cli(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    o = capsys.readouterr()
    return code, o.out, o.err


def test_defaults_propose_head_then_finetune():
    from tlapp.presets import phases_of

    p = project_from_dict({"data": {"path": "x"}})
    assert p.schema_version == SCHEMA_VERSION
    assert p.train.phases == [] and p.train.preset == "balanced"  # the preset proposes the plan
    phases = phases_of(p, 100)
    assert [ph.name for ph in phases] == ["head", "finetune"] and phases[0].solver == "exact"
    assert phases[0].freeze.mode == "all" and phases[1].freeze.mode == "top_blocks"
    assert [
        ph.name for ph in phases_of(p.model_copy(update={"train": p.train.model_copy(update={"preset": "fast"})}), 100)
    ] == ["head"]
    assert p.backbone.name == "efficientnet_lite0"


@pytest.mark.parametrize(
    "d, needle",
    [
        ({"data": {"path": "x"}, "trian": {}}, "trian: unknown key"),
        ({"data": {"path": "x", "val_fraction": 1.5}}, "data.val_fraction"),
        ({"data": {"path": "x"}, "train": {"batch_size": 0}}, "train.batch_size"),
        ({"data": {"source": "csv"}}, "data.path is required"),
        (
            {"data": {"path": "x"}, "train": {"phases": [{"freeze": {"mode": "top_blocks"}}]}},
            "freeze.blocks is required",
        ),
        (
            {"data": {"path": "x"}, "train": {"phases": [{"freeze": {"mode": "patterns", "patterns": ["("]}}]}},
            "bad regex",
        ),
        ({"schema_version": 99, "data": {"path": "x"}}, "unsupported schema_version 99"),
    ],
)
def test_errors_name_field_and_value(d, needle):
    with pytest.raises(ConfigError) as e:
        project_from_dict(d, "p.yaml")
    msg = str(e.value)
    assert needle in msg and msg.startswith("p.yaml: ") and "\n" not in msg


def test_bad_value_is_quoted():
    with pytest.raises(ConfigError, match=r"train.batch_size: .* \(got -3\)"):
        project_from_dict({"data": {"path": "x"}, "train": {"batch_size": -3}})


def test_yaml_round_trip_and_overrides(tmp_path):
    p = project_from_dict({"data": {"path": "imgs"}, "backbone": {"options": {"alpha": 0.35}}})
    f = tmp_path / "p.yaml"
    save_project(p, f)
    assert load_project(f) == p
    with pytest.raises(ConfigError, match="train.phases is empty: the preset proposes"):
        apply_overrides(p, ["train.phases.1.epochs=7"])
    from tlapp.presets import with_proposed_phases

    q = apply_overrides(
        with_proposed_phases(p, 100), ["train.phases.1.epochs=7", "backbone.name=mobilenet_v2", "head.hidden=[64, 32]"]
    )
    assert q.train.phases[1].epochs == 7 and q.backbone.name == "mobilenet_v2" and q.head.hidden == [64, 32]
    with pytest.raises(ConfigError, match="no such field 'trian'"):
        apply_overrides(p, ["trian.x=1"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        apply_overrides(p, ["train.batch_size=zero"])


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_project(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_project(bad)


def test_cli_init_schema_render(tmp_path, capsys, color_data):
    pf = tmp_path / "proj.yaml"
    code, out, _ = run_cli(
        ["init", str(pf), "--data", str(color_data), "--backbone", "mobilenet_v2", "--image-size", "96"], capsys
    )
    assert code == 0 and pf.is_file()
    p = load_project(pf)
    assert p.backbone.name == "mobilenet_v2" and p.backbone.image_size == 96 and p.data.source == "folder"
    code, _, err = run_cli(["init", str(pf), "--data", str(color_data)], capsys)
    assert code == 2 and "already exists" in err
    code, out, _ = run_cli(["schema"], capsys)
    assert json.loads(out)["properties"]["schema_version"]
    code, out, _ = run_cli(["render-config", str(pf)], capsys)
    d = yaml.safe_load(out)
    assert d["train"]["phases"][1]["freeze"]["mode"] == "top_blocks" and d["export"]["verify"] is True
    code, _, err = run_cli(["init", str(tmp_path / "q.yaml"), "--data", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in err


def test_project_yaml_has_version_first():
    text = project_to_yaml(project_from_dict({"data": {"path": "x"}}))
    assert text.splitlines()[0] == f"schema_version: {SCHEMA_VERSION}"
