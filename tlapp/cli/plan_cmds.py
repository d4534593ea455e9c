"""``tlapp plan``: the phases that will train, what each trains, its expected time, and the fine-tune
decision — before anything runs — and the one way the CLI applies ``--set`` to a project's plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import typer

from tlapp.cli.app import app, dump, out
from tlapp.config import Project, apply_overrides, load_project, resolve_data_path, save_project
from tlapp.presets import with_head, with_preset, with_proposed_phases


def _report(project: Project, project_file: Path) -> Any:
    """The data as the run will see it (a scan of images/texts, or of prompt/response pairs)."""
    if project.task.type.is_generative:
        from tlapp.data.preferences import scan_lm_file

        path = resolve_data_path(project, project_file) or Path(project.data.path or "")
        return scan_lm_file(path, project.task.type)
    from tlapp.data.sources import scan_project

    return scan_project(project, project_file)


def project_with_overrides(project_file: Path, overrides: list[str], report: Any = None) -> Project:
    """The project file with ``--set`` applied, as the wizard would apply the same changes:

    - ``train.preset=best`` on phases that are the old preset's untouched proposal proposes best's;
    - a file whose plan the preset proposes gets that proposal written out first when an override names
      ``train.phases``, so ``--set train.phases.1.epochs=10`` changes the fine-tune that runs;
    - ``head.hidden=[64]`` turns a proposed exact head into the proposed gradient one (as the Head step).
    """

    def key(o: str) -> str:
        return o.split("=", 1)[0].strip()

    phase_sets = [o for o in overrides if key(o).startswith("train.phases")]
    preset_sets = [o for o in overrides if key(o) == "train.preset"]
    others = [o for o in overrides if o not in phase_sets and o not in preset_sets]
    proj = apply_overrides(load_project(project_file), others)
    n_train = 0
    if proj.task.type.is_generative and (phase_sets or preset_sets):  # a language model's epochs follow the data
        from tlapp.training.plan import split_sizes

        n_train = split_sizes(proj, report or _report(proj, project_file))[0]
    for o in preset_sets:
        proj = with_preset(proj, str(apply_overrides(proj, [o]).train.preset), n_train)
    if phase_sets:
        proj = with_proposed_phases(proj, n_train)
    return apply_overrides(with_head(proj), phase_sets)


def backbone_trainables(project: Project, phases: list[Any]) -> list[dict[str, Any]]:
    """Per phase: backbone parameters that train, and the blocks (builds the backbone without weights)."""
    from tlapp.backbones.build import build_any_backbone
    from tlapp.backbones.freeze import apply_plan, block_summary

    if project.task.type.is_generative:
        return [{} for _ in phases]
    built = build_any_backbone(project.backbone.model_copy(update={"weights": "none"}))
    rows = []
    for ph in phases:
        table = apply_plan(built.model, built.entry, ph.freeze)
        rows.append(
            {
                "backbone_trainable_params": sum(r.params for r in table if r.trainable),
                "backbone_params": sum(r.params for r in table),
                "trainable_blocks": [b["block"] for b in block_summary(table) if b["trainable_params"]],
            }
        )
    return rows


@app.command()
def plan(
    project: Path,
    set_: List[str] = typer.Option([], "--set", help="dotted.key=value override (repeatable)"),
    as_json: bool = typer.Option(False, "--json"),
    write: bool = typer.Option(
        False, "--write", help="Write the plan's phases (with --set applied) into the project file, to edit them there."
    ),
) -> None:
    """Show what will train: each phase, what it trains, its expected time, and the fine-tune decision."""
    from tlapp.config import Phase
    from tlapp.training.plan import plan_for, plan_lines

    proj = project_with_overrides(project, set_)
    report = _report(proj, project)  # the data as the overrides describe it
    p = plan_for(proj, report)
    counts = backbone_trainables(proj, [Phase.model_validate(r.phase) for r in p.phases])
    if write:
        save_project(with_proposed_phases(proj, p.n_train), project)
    if as_json:
        d = p.as_dict()
        for row, c in zip(d["phases"], counts):
            row.update(c)
        dump(d)
        return
    lines = plan_lines(p)
    for i, c in enumerate(counts):
        if c:
            blocks = ", ".join(c["trainable_blocks"]) or "none"
            lines[1 + i] += (
                f"\n       backbone: {c['backbone_trainable_params']:,} of {c['backbone_params']:,} "
                f"params train (blocks: {blocks})"
            )
    out.print("\n".join(lines), highlight=False, markup=False)
    if write:
        out.print(f"wrote the plan's phases into {project}", highlight=False)
