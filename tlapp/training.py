"""Training as a plain function: ``train(project, run_dir, on_event, should_stop)``.

Knows nothing about Qt or terminals: progress leaves as events, cancellation
arrives through ``should_stop()`` (checked every batch). The default recipe is
two phases: head on a frozen backbone (on cached embeddings when possible),
then a fine-tune of the top blocks at a lower LR with BatchNorm kept frozen.
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import checkpoint as ckpt
from .assemble import Assembled, build_model
from .config import Phase, Project, TaskType, load_project
from .data import LabelEncoder, Splits, image_dataset, scan_project, split_examples
from .errors import Cancelled, TlappError
from .events import PHASE_END, PHASE_START, RUN_END, RUN_START, SCAN, WARNING, EventLog, EventSink
from .freeze import apply_plan, block_order, block_summary, param_counts
from .rundir import absolute_data_path, write_resolved_config, write_status
from .scan import Example, ScanReport
from .tfenv import quiet_import

tf, keras = quiet_import()
# fit() warns that shuffle=True is ignored for tf.data input; our datasets shuffle themselves.
warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed.*")


@dataclass
class RunResult:
    run_dir: str
    status: str
    classes: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    export: Optional[dict[str, Any]] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def loss_and_metrics(task: TaskType) -> tuple[Any, list[Any], str, str]:
    """(loss, metrics, monitor, mode) for a task."""
    if task == TaskType.regression:
        return "mse", ["mae"], "val_loss", "min"
    if task.is_multi_label:
        return "binary_crossentropy", [keras.metrics.BinaryAccuracy(name="accuracy")], "val_loss", "min"
    return "sparse_categorical_crossentropy", ["accuracy"], "val_accuracy", "max"


class _Run:
    def __init__(self, project: Project, run_dir: Path, log: EventLog, should_stop: Optional[Callable[[], bool]],
                 project_file: Optional[Path]) -> None:
        self.project, self.run_dir, self.log = project, run_dir, log
        self.should_stop, self.project_file = should_stop, project_file
        self.ck_dir = run_dir / "checkpoints" / "last"
        self.best: dict[str, Any] = {}
        self.best_weights: Optional[list[np.ndarray]] = None
        self.history: list[dict[str, Any]] = []
        self._cached_phase: Optional[int] = None
        self._base_saved = False

    # ---- data -------------------------------------------------------------
    def prepare_data(self, resume: bool) -> None:
        p = self.project
        self.report: ScanReport = scan_project(p, self.project_file)
        self.log.emit(SCAN, source=self.report.source, counts=self.report.counts, n_good=len(self.report.examples),
                      bad=[asdict(b) for b in self.report.bad], ignored=len(self.report.ignored),
                      warnings=self.report.warnings, class_weights=self.report.class_weights)
        for w in self.report.warnings:
            self.log.emit(WARNING, message=w)
        (self.run_dir / "scan.json").write_text(json.dumps(self.report.as_dict(), indent=2))
        split_file = self.run_dir / "split.json"
        if resume and split_file.is_file():
            d = json.loads(split_file.read_text())
            mk = lambda rows: [Example(*r) for r in rows]  # noqa: E731
            self.splits = Splits(mk(d["train"]), mk(d["val"]), mk(d["test"]), d["seed"])
        else:
            self.splits = split_examples(self.report.examples, p.task.type, p.data.val_fraction,
                                         p.data.test_fraction, p.data.seed, p.data.max_per_class)
            split_file.write_text(json.dumps(self.splits.as_dict(), indent=1))
        from .data import cross_split_duplicates

        dup = cross_split_duplicates(self.splits)
        if dup:
            self.log.emit(WARNING, message=f"{dup} text(s) appear in more than one split with different labels; "
                                           "validation accuracy is slightly optimistic for them")
        self.classes = self.report.classes if p.task.type != TaskType.regression else []
        self.encoder = LabelEncoder(p.task.type, self.classes)

    def input_ds(self, examples: list[Example], shuffle: bool, with_labels: bool = True) -> Any:
        """Images or texts, batched, in ``examples`` order unless shuffled."""
        p = self.project
        if p.task.type.is_text:
            from .text_model import text_dataset

            return text_dataset(examples, self.encoder, p.train.batch_size, shuffle=shuffle, seed=p.train.seed,
                                with_labels=with_labels)
        return image_dataset(examples, self.encoder, self.asm.backbone.size, p.train.batch_size, shuffle=shuffle,
                             seed=p.train.seed, cache=p.data.cache, cache_dir=self.run_dir / "cache",
                             with_labels=with_labels)

    def class_weight(self) -> Optional[dict[int, float]]:
        if self.project.train.class_weights != "auto" or not self.project.task.type.is_single_label:
            return None
        return {self.encoder.index[c]: w for c, w in self.report.class_weights.items() if c in self.encoder.index}

    # ---- embeddings --------------------------------------------------------
    def embeddings(self, examples: list[Example]) -> np.ndarray:
        from . import embcache
        from .paths import store_dir

        b = self.asm.backbone
        ident = {"backbone": b.entry.name, "weights": b.weights_source, "size": b.size,
                 "task": self.project.task.type.value, "pooling": self.project.head.pooling,
                 "options": self.project.backbone.options}
        key = embcache.cache_key(examples, ident)
        bs = self.project.train.batch_size
        mode = self.project.data.cache
        if self.project.task.type.is_text:
            from .text_model import text_embeddings

            compute = lambda: text_embeddings(self.asm, examples, bs, self.should_stop)  # noqa: E731
        else:
            # One pass: caching the decoded images would only cost memory.
            ds = image_dataset(examples, self.encoder, self.asm.backbone.size, bs, cache="none", with_labels=False)
            compute = lambda: embcache.compute(self.asm.features, ds, math.ceil(len(examples) / bs),  # noqa: E731
                                               should_stop=self.should_stop)
        arr, hit = embcache.get_or_compute(
            key, mode, store_dir("cache", "embeddings") if mode == "disk" else Path("."), compute)
        self.log.emit("embeddings", n=len(examples), dim=int(arr.shape[-1]) if arr.size else 0, cached=hit)
        return arr

    # ---- phases ------------------------------------------------------------
    def run_phase(self, i: int, phase: Phase, start_epoch: int, restore: bool) -> None:
        p, asm = self.project, self.asm
        table = apply_plan(asm.backbone.model, asm.backbone.entry, phase.freeze)
        trainable_backbone = any(r.trainable for r in table)
        cached = phase.use_embedding_cache and not trainable_backbone and not phase.augment.enabled
        target = asm.head if cached else asm.model
        self._cached_phase, self._base_saved = (i if cached else None), False
        tr, non = param_counts(asm.model)
        self.log.emit(PHASE_START, index=i, name=phase.name, epochs=phase.epochs, start_epoch=start_epoch,
                      trainable_params=tr, non_trainable_params=non, embedding_cache=cached,
                      blocks=block_summary(table), learning_rate=phase.learning_rate)
        if phase.epochs <= start_epoch:
            self.log.emit(PHASE_END, index=i, name=phase.name, skipped=True)
            return
        train_ex, val_ex = self.splits.train, self.splits.val
        if cached:
            both = self.embeddings(train_ex + val_ex)  # one pass: one trace, full batches
            xtr, xva = both[:len(train_ex)], both[len(train_ex):]
            ytr = self.encoder.encode_all(train_ex)
            train_ds = tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(len(xtr), seed=p.train.seed)
            train_ds = train_ds.batch(p.train.batch_size)
            val_ds = tf.data.Dataset.from_tensor_slices((xva, self.encoder.encode_all(val_ex))).batch(
                p.train.batch_size) if val_ex else None
        elif p.task.type.is_text:
            from .text_model import token_batches

            target = asm.token_model  # type: ignore[attr-defined]  # same layers, fed length-trimmed tokens
            bs, seed = p.train.batch_size, p.train.seed
            train_ds = token_batches(asm, train_ex, self.encoder, bs, shuffle=True, seed=seed)
            val_ds = token_batches(asm, val_ex, self.encoder, bs) if val_ex else None
        else:
            train_ds = self.augmented(self.input_ds(train_ex, shuffle=True), phase)
            val_ds = self.input_ds(val_ex, shuffle=False) if val_ex else None
        steps = phase.steps_per_epoch or math.ceil(len(train_ex) / p.train.batch_size)
        train_ds = train_ds.repeat()  # exactly `steps` batches per epoch, whatever the source's cardinality
        loss, metrics, _, _ = loss_and_metrics(p.task.type)
        opt = self.optimizer(phase, steps, table, cached)
        target.compile(optimizer=opt, loss=loss, metrics=metrics)  # recompile after changing trainable
        if restore:
            ckpt.restore_optimizer(self.ck_dir, opt, target.trainable_variables)
        from .callbacks import EventCallback

        cbs: list[Any] = [EventCallback(self.log, i, phase.name, phase.epochs, steps, p.train.batch_size,
                                        self.should_stop, lambda e, logs: self.epoch_done(i, phase, e, logs, opt))]
        if phase.early_stopping and (val_ds is not None or not phase.early_stopping.metric.startswith("val_")):
            es = phase.early_stopping
            cbs.append(keras.callbacks.EarlyStopping(monitor=es.metric, patience=es.patience, mode=es.mode))
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(self.run_dir / "logs" / f"phase{i}_{phase.name}"),
                                               write_graph=False, profile_batch=0))
        target.fit(train_ds, validation_data=val_ds, epochs=phase.epochs, initial_epoch=start_epoch,
                   steps_per_epoch=steps, class_weight=self.class_weight(), verbose=0, callbacks=cbs)
        self.log.emit(PHASE_END, index=i, name=phase.name)

    def optimizer(self, phase: Phase, steps: int, table: list[Any], cached: bool) -> Any:
        from .optim import block_multipliers, make_optimizer

        mult = None
        if phase.discriminative_lr and not cached:
            by_block: dict[str, list[Any]] = {}
            layers = {l.name: l for l in self.asm.backbone.model.layers}
            for r in table:
                if r.trainable:
                    by_block.setdefault(r.block, []).extend(layers[r.name].trainable_weights)
            mult = block_multipliers(by_block, block_order(table), phase.discriminative_lr)
        return make_optimizer(phase, steps, mult)

    def augmented(self, ds: Any, phase: Phase) -> Any:
        a = phase.augment
        if not a.enabled:
            return ds
        layers = []
        if a.flip:
            layers.append(keras.layers.RandomFlip("horizontal"))
        if a.rotation:
            layers.append(keras.layers.RandomRotation(a.rotation))
        if a.zoom:
            layers.append(keras.layers.RandomZoom(a.zoom))
        if a.contrast:
            layers.append(keras.layers.RandomContrast(a.contrast, value_range=(0, 255)))
        aug = keras.Sequential(layers, name="augment")
        return ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)

    def epoch_done(self, i: int, phase: Phase, epoch: int, logs: dict[str, float], opt: Any) -> None:
        row = {"phase": i, "phase_name": phase.name, "epoch": epoch + 1, **logs}
        self.history.append(row)
        self.write_history()
        _, _, monitor, mode = loss_and_metrics(self.project.task.type)
        if monitor not in logs:
            monitor, mode = "loss", "min"
        value = logs.get(monitor)
        # Ties on accuracy are broken by the loss, so a plateau does not pin the first epoch.
        key = (value if mode == "max" else -value, -logs.get("val_loss", logs.get("loss", 0.0))) \
            if value is not None else None
        better = key is not None and (not self.best or key > tuple(self.best["key"]))
        if better:
            self.best = {"value": value, "metric": monitor, "phase": i, "phase_name": phase.name, "epoch": epoch + 1,
                         "key": list(key)}
            self.best_weights = self.asm.model.get_weights()
        cached = self._cached_phase == i
        ckpt.save_checkpoint(self.ck_dir, self.asm.model, opt, {
            "phase": i, "epoch_done": epoch + 1, "phase_epochs": phase.epochs, "best": self.best,
            "history": self.history}, head=self.asm.head if cached else None, reuse_base=cached and self._base_saved)
        self._base_saved = cached

    def write_history(self) -> None:
        keys: list[str] = []
        for r in self.history:
            keys += [k for k in r if k not in keys]
        with open(self.run_dir / "history.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)

    # ---- whole run ---------------------------------------------------------
    def run(self, resume: bool) -> RunResult:
        p = self.project
        keras.utils.set_random_seed(p.train.seed)
        self.set_precision()
        self.log.emit(RUN_START, run_dir=str(self.run_dir), project=p.name, backbone=p.backbone.name,
                      phases=[ph.name for ph in p.train.phases], resume=resume)
        self.prepare_data(resume)
        if p.task.type.is_text:
            from .text_model import build_text_model

            self.asm: Assembled = build_text_model(p, len(self.classes))
        else:
            self.asm = build_model(p, len(self.classes))
        start_phase, start_epoch, restore = 0, 0, False
        state = ckpt.read_state(self.ck_dir) if resume else None
        if state:
            ckpt.restore_weights(self.ck_dir, self.asm.model, self.asm.head)
            self.best, self.history = state.get("best", {}), state.get("history", [])
            start_phase, start_epoch, restore = state["phase"], state["epoch_done"], True
            if start_epoch >= state["phase_epochs"]:
                start_phase, start_epoch, restore = start_phase + 1, 0, False
            self.log.emit("resume", phase=start_phase, epoch=start_epoch + 1)
        for i, phase in enumerate(p.train.phases):
            if i < start_phase:
                continue
            self.run_phase(i, phase, start_epoch if i == start_phase else 0, restore and i == start_phase)
        self.keep_best()
        return self.finish()

    def set_precision(self) -> None:
        """mixed_float16 only where it pays (a GPU); the head's output layer stays float32."""
        want = self.project.train.mixed_precision
        if want and not tf.config.list_physical_devices("GPU"):
            self.log.emit(WARNING, message="mixed precision needs a GPU; training in float32 on the CPU")
            want = False
        keras.mixed_precision.set_global_policy("mixed_float16" if want else "float32")

    def keep_best(self) -> None:
        if not self.project.train.keep_best or not self.best or not self.history:
            return
        last = self.history[-1]
        if (last["phase"], last["epoch"]) != (self.best["phase"], self.best["epoch"]):
            if self.best_weights is None and (self.run_dir / "checkpoints" / "best.weights.h5").is_file():
                self.asm.model.load_weights(self.run_dir / "checkpoints" / "best.weights.h5")
            elif self.best_weights is not None:
                self.asm.model.set_weights(self.best_weights)
            self.best["restored"] = True
            self.log.emit(WARNING, message=(
                f"{self.best['metric']} was best at phase {self.best['phase_name']!r} epoch {self.best['epoch']} "
                f"({self.best['value']:.4f}); later epochs were worse, so those best weights are kept and exported"))

    def finish(self) -> RunResult:
        from .evaluate import evaluate_examples
        from .export import export_run
        from .rundir import write_metrics, write_model_card

        ev = evaluate_examples(self.asm.model, self.splits.val, self.encoder,
                               self.input_ds(self.splits.val, shuffle=False, with_labels=False)) \
            if self.splits.val else {}
        (self.run_dir / "evaluation.json").write_text(json.dumps(ev, indent=1, default=float))
        export_info = export_run(self) if self.project.export.formats else None
        metrics = write_metrics(self, ev, export_info)
        write_model_card(self, metrics, export_info)
        write_status(self.run_dir, "completed")
        self.log.emit(RUN_END, status="completed", metrics=metrics.get("final", {}),
                      export=(export_info or {}).get("dir"), verified=(export_info or {}).get("verified"))
        return RunResult(str(self.run_dir), "completed", self.classes, metrics, export_info)


def train(project: Project, run_dir: str | Path, on_event: Optional[EventSink] = None,
          should_stop: Optional[Callable[[], bool]] = None, *, project_file: Optional[Path] = None,
          resume: bool = False) -> RunResult:
    """Train, evaluate and export one project into ``run_dir``.

    Example::

        result = train(load_project("p.yaml"), "runs/a", on_event=print)

    Raises :class:`Cancelled` (checkpoint kept) when ``should_stop()`` turns true.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        cfg = run_dir / "config.yaml"
        if not (run_dir / "checkpoints" / "last" / "state.json").is_file():
            raise TlappError(f"{run_dir}: no checkpoint to resume from")
        project = load_project(cfg)
    else:
        project = absolute_data_path(project, project_file)
        write_resolved_config(project, run_dir)
    log = EventLog(run_dir / "events.jsonl", on_event)
    run = _Run(project, run_dir, log, should_stop, project_file)
    write_status(run_dir, "running")
    try:
        return run.run(resume)
    except Cancelled as e:
        write_status(run_dir, "cancelled", str(e))
        log.emit(RUN_END, status="cancelled", message=str(e), resume=f"tlapp train --resume {run_dir}")
        raise
    except TlappError as e:
        write_status(run_dir, "failed", str(e))
        log.emit(RUN_END, status="failed", message=str(e))
        raise
    except Exception as e:
        write_status(run_dir, "failed", repr(e))
        log.emit(RUN_END, status="failed", message=repr(e))
        raise
    finally:
        log.close()
