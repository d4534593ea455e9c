"""The end of a run: evaluate, export (verified in a fresh process), write metrics and the model card.

The fresh-process verifier was started with the run (:meth:`tlapp.training.run.Run.run`), so its
TensorFlow import is done by now; it checks each export file while the next is written.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional, Protocol

import numpy as np

from tlapp.backbones.freeze import block_summary, layer_table
from tlapp.base.errors import ExportError
from tlapp.data.pipelines import image_dataset
from tlapp.deploy.evaluate import evaluate_examples
from tlapp.deploy.export import ExportParts, FreshVerifier, backbone_config, export_model
from tlapp.deploy.html_report import write_html
from tlapp.deploy.plots import write_plots
from tlapp.deploy.tflite import representative_images
from tlapp.events import EXPORT, VERIFY
from tlapp.model.image_model import mirror_averaged
from tlapp.training.lifecycle import RunResult, completed
from tlapp.training.reports import RunRecord, write_metrics, write_model_card


class Run(Protocol):
    """What finishing reads of a trained run (:class:`tlapp.training.run.Run` provides it; this module never
    imports it, so the run calls its finish and nothing calls back up)."""

    project: Any
    run_dir: Any
    log: Any
    report: Any
    splits: Any
    encoder: Any
    classes: list[str]
    history: list[dict[str, Any]]
    best: dict[str, Any]
    recipe: dict[str, Any]
    evaluation: Optional[dict[str, Any]]
    phases: list[Any]
    started: float
    verifier: Optional[FreshVerifier]  # started with the run when it exports with a check (it also cancels it)
    should_stop: Optional[Callable[[], bool]]

    @property
    def model(self) -> Any: ...
    def input_ds(self, examples: list[Any], shuffle: bool, split: str, with_labels: bool = True) -> Any: ...
    def progress(self, stage: str, unit: str = "") -> Callable[[int, int], None]: ...


def parity_samples(run: Run) -> Optional[np.ndarray]:
    """A few validation inputs (raw pixels or strings) for the fresh-process export check."""
    pool = run.splits.val or run.splits.train
    n = min(run.project.export.verify_samples, len(pool))
    if not n:
        return None
    if run.project.task.type.is_text:
        return np.array([e.text or "" for e in pool[:n]], dtype=object)
    ds = image_dataset(pool[:n], run.encoder, run.model.backbone.size, n, with_labels=False, cache="none")
    return next(iter(ds)).numpy()


def evaluate_split(run: Run, examples: list[Any], name: str) -> Optional[dict[str, Any]]:
    """The trained model's report on one held-out split (None when the split is empty)."""
    if not examples:
        return None
    rows = run.progress(f"evaluating {len(examples):,} {name} examples", "examples")
    rep = evaluate_examples(
        run.model.model,
        examples,
        run.encoder,
        run.input_ds(examples, shuffle=False, split="eval", with_labels=False),
        lambda done: rows(done, len(examples)),
        run.should_stop,
    )
    return {**rep, "split": {"validation": "val"}.get(name, name), "n": len(examples)}


def export_run(
    run: Run, verifier: Optional[FreshVerifier] = None, while_checking: Optional[Callable[[], None]] = None
) -> Optional[dict[str, Any]]:
    """The run's export, its check, and ``while_checking`` in the check's wait; the export report follows
    in the background once the run has completed (:mod:`tlapp.deploy.report`)."""
    p, asm = run.project, run.model
    if not p.export.formats:
        return None
    text = p.task.type.is_text
    parts = ExportParts(
        asm.model,
        p.task.type.value,
        run.classes,
        asm.backbone.size,
        p.backbone.name,
        token_model=asm.token_model,
        preprocessor=asm.backbone.preprocessor if text else None,
        backbone_config=backbone_config(asm.backbone.model) if text else None,
        representative=representative_images([e.path for e in run.splits.train], asm.backbone.size, seed=p.train.seed)
        if "tflite_int8" in p.export.formats and not text
        else None,
        validation_seen=bool(run.recipe.get("refit")),
    )
    info = export_model(
        parts,
        run.run_dir.export,
        list(p.export.formats),
        parity_samples(run),
        verify=p.export.verify,
        verifier=verifier,
        progress=run.progress(f"exporting {', '.join(p.export.formats)} and checking"),
        should_stop=run.should_stop,
        report_later=True,
        while_checking=while_checking,
    )
    run.log.emit(EXPORT, **{k: v for k, v in info.items() if k != "verify"})
    if info.get("verify"):
        run.log.emit(VERIFY, **info["verify"])
        if not info["verify"]["ok"]:
            raise ExportError(f"export parity check failed: {info['verify']['summary']}")
    return info


def record(run: Run) -> RunRecord:
    b = run.model.backbone
    return RunRecord(
        run.project,
        run.run_dir,
        run.report,
        run.splits,
        run.classes,
        run.history,
        run.best,
        b.entry,
        b.weights_source,
        b.size,
        block_summary(layer_table(b.model, b.entry)),
        run.recipe,
        time.time() - run.started,
        run.phases,
        run.choice,
        run.choice_reason,
    )


def finish_run(run: Run) -> RunResult:
    if run.recipe.get("mirror_average"):  # what cross-validation scored is what is evaluated and exported
        run.model.model = mirror_averaged(run.model.model, run.model.backbone.size)
    held_out: dict[str, Any] = {}

    def evaluate() -> None:
        """The held-out reports and plots: run while the export's checker finishes (they need no export)."""
        t0 = time.time()
        ev = run.evaluation
        if ev is None:
            ev = evaluate_split(run, run.splits.val, "validation") or {}
        run.run_dir.evaluation.write_text(json.dumps(ev, indent=1, default=float))
        test_ev = evaluate_split(run, run.splits.test, "test")  # once, at the very end: never used to choose
        if test_ev is not None:
            run.run_dir.evaluation_test.write_text(json.dumps(test_ev, indent=1, default=float))
        write_plots(run.run_dir, {"val": ev, "test": test_ev})
        held_out.update(val=ev, test=test_ev, seconds=round(time.time() - t0, 2))

    export_info = export_run(run, run.verifier, evaluate)  # the run's own checker; the run cancels it
    if not held_out:
        evaluate()
    if export_info:
        export_info["seconds"]["evaluate"] = held_out["seconds"]
    ev, test_ev = held_out["val"], held_out["test"]
    rec = record(run)
    metrics = write_metrics(rec, ev, export_info, test_ev)
    write_model_card(rec, metrics, export_info)
    write_html(run.run_dir, f"{run.project.name}: evaluation", ev, test_ev, run.run_dir.model_card.read_text())
    for f in run.run_dir.cache.glob("embeddings-*.npy"):  # memory-mapped scratch of a large set, not a result
        try:
            f.unlink()
        except OSError:  # still mapped on Windows; the next run's folder is another one anyway
            pass
    return completed(run.run_dir, run.log, run.classes, metrics, export_info, metrics.get("final", {}))
