"""Training as a plain function: ``train(project, run_dir, on_event, should_stop)``.

Knows nothing about Qt or terminals: progress leaves as events, cancellation
arrives through ``should_stop()`` (checked every batch). A run is phases: a
frozen phase trains the head on cached embeddings (one forward pass), a
fine-tune phase trains the top blocks at a lower LR with BatchNorm kept
frozen; the best epoch's weights are kept, evaluated, exported and verified.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.backbones.freeze import apply_plan, block_order, block_summary, layer_table, param_counts, planned_table
from tlapp.base.errors import Cancelled, TlappError, TrainingError, os_error_line
from tlapp.base.fsutil import atomic_path
from tlapp.base.paths import store_dir
from tlapp.base.tfenv import quiet_import, visible_gpus
from tlapp.config import Phase, Project, TaskType, load_project
from tlapp.data.duplicates import leaked_images
from tlapp.data.examples import Example, ScanReport
from tlapp.data.labels import LabelEncoder
from tlapp.data.pipelines import array_batches, image_dataset, plan_cache, text_dataset
from tlapp.data.sources import scan_project
from tlapp.data.split import Splits, cross_split_duplicates, split_examples
from tlapp.deploy.export import FreshVerifier
from tlapp.events import (
    BACKBONE_CHOICE,
    DATA_CACHE,
    EMBEDDINGS,
    PHASE_END,
    RESUME,
    RUN_END,
    SCAN,
    WARNING,
    EventLog,
    EventSink,
)
from tlapp.model.head import Assembled, loss_and_metrics
from tlapp.model.image_model import build_model
from tlapp.model.optim import block_multipliers, make_optimizer
from tlapp.model.tasks import monitor
from tlapp.model.text_model import build_text_model, token_batches
from tlapp.presets import choices_of, phases_of
from tlapp.rundir import RunDir, absolute_data_path
from tlapp.training import checkpoint as ckpt
from tlapp.training import choice, cut_cache, embcache, lifecycle, strategy
from tlapp.training.augment import augmented
from tlapp.training.callbacks import EventCallback
from tlapp.training.devices import describe_device, devices, tensor_cores
from tlapp.training.dpo import DpoRun
from tlapp.training.estimate import (
    candidate_project,
    cut_why_not,
    examples_used,
    measured_speed,
    plan_choice,
    record_speed,
)
from tlapp.training.estimate import speed as estimate_speed
from tlapp.training.finish import finish_run
from tlapp.training.lifecycle import RunResult
from tlapp.training.recipe import run_recipe
from tlapp.training.sft import SftRun

tf, keras = quiet_import()
# fit() warns that shuffle=True is ignored for tf.data input; our datasets shuffle themselves.
warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed.*")


class Run:
    """One training run: data, model, phases, best-weights bookkeeping, reports.

    Built and driven by :func:`train`; public so that tools can drive a run step
    by step (``prepare_data``, ``build``, ``run_phase``, ``finish``).
    """

    def __init__(
        self,
        project: Project,
        run_dir: RunDir,
        log: EventLog,
        should_stop: Optional[Callable[[], bool]] = None,
        project_file: Optional[Path] = None,
        shared: Optional[RunDir] = None,
    ) -> None:
        self.project, self.run_dir, self.log = project, run_dir, log
        # Where a resume reads the split and checkpoint: the run folder itself, except for a multi-worker
        # run's other workers, which write to a scratch folder and read the chief's.
        self.shared = shared or run_dir
        self.placement: Optional[strategy.Placement] = None
        self.should_stop, self.project_file = should_stop, project_file
        self.started = time.time()  # this session's start: a resumed run counts its own time
        self.best: dict[str, Any] = {}
        self.verifier: Optional[FreshVerifier] = None  # the export check's process, started with the run
        self.best_weights: Optional[list[np.ndarray]] = None
        self.best_saved: dict[str, Any] = {}  # the best whose weights file is on disk (what checkpoints record)
        self._best_unsaved = False
        self.history: list[dict[str, Any]] = []
        self.report: ScanReport = ScanReport("", "", project.task.type.value)
        self.splits: Splits = Splits([], [], [], project.data.seed)
        self.classes: list[str] = []
        self.encoder: LabelEncoder = LabelEncoder(project.task.type, [])
        self.asm: Optional[Assembled] = None
        self.recipe: dict[str, Any] = {}
        self.phases: list[Phase] = []  # the plan that trains: train.phases, or the preset's proposal
        self.use_class_weights = True  # a recipe turns them off when cross-validation says they hurt
        self.embed_rate: Optional[float] = None  # examples/s of the last computed embedding pass
        self.last_reused = 0  # vectors of the last embedding pass that came from the cache
        self.choice: list[dict[str, Any]] = []  # backbone.choose_from's candidates and their scores
        self.choice_reason = ""  # and why the winner won
        self.evaluation: Optional[dict[str, Any]] = None  # set by a recipe that evaluated without a val pass
        self._cached_phase: Optional[int] = None
        self._cut: Optional[tuple[cut_cache.Cut, np.ndarray, Optional[np.ndarray], np.ndarray]] = None
        self._prospect: dict[bool, cut_cache.Cut] = {}  # a fine-tune's cut that the embedding pass (by flip) crosses
        self._kept: dict[bool, cut_cache.Kept] = {}  # its activations from that pass (by flip)
        self._cache_told: set[str] = set()  # splits whose cache plan was announced
        self._base_saved = False

    @property
    def model(self) -> Assembled:
        if self.asm is None:
            raise TlappError("the model is not built yet (call build() first)")
        return self.asm

    # ---- data and model ---------------------------------------------------
    def prepare_data(self, resume: bool) -> None:
        p = self.project
        self.report = scan_project(
            p, self.project_file, self.progress("scanning {total:,} files", "files"), should_stop=self.should_stop
        )
        used = (
            examples_used(self.report.counts, p.data.max_per_class)
            if p.task.type.is_single_label
            else len(self.report.examples)
        )
        self.log.emit(
            SCAN,
            source=self.report.source,
            counts=self.report.counts,
            n_good=len(self.report.examples),
            used=used,
            max_per_class=p.data.max_per_class,
            bad=[asdict(b) for b in self.report.bad],
            ignored=len(self.report.ignored),
            warnings=self.report.warnings,
            class_weights=self.report.class_weights,
        )
        for w in self.report.warnings:
            self.log.emit(WARNING, message=w)
        self.run_dir.scan.write_text(json.dumps(self.report.as_dict(), indent=2))
        saved = self.shared.read_json(self.shared.split) if resume else None
        if saved:
            mk = lambda rows: [Example(*r) for r in rows]  # noqa: E731
            self.splits = Splits(mk(saved["train"]), mk(saved["val"]), mk(saved["test"]), saved["seed"])
        else:
            self.splits = split_examples(
                self.report.examples,
                p.task.type,
                p.data.val_fraction,
                p.data.test_fraction,
                p.data.seed,
                p.data.max_per_class,
            )
            self.run_dir.split.write_text(json.dumps(self.splits.as_dict(), indent=1))
        for split, n in leaked_images(self.splits, self.report.fingerprints).items():
            self.log.emit(
                WARNING,
                message=f"{n} {'validation' if split == 'val' else 'test'} image(s) have an exact "
                f"or near duplicate in training: that split's accuracy is optimistic "
                "(the scan report's duplicates list them)",
            )
        dup = cross_split_duplicates(self.splits)
        if dup:
            self.log.emit(
                WARNING,
                message=f"{dup} text(s) appear in more than one split with different labels; "
                "validation accuracy is slightly optimistic for them",
            )
        self.classes = self.report.classes if p.task.type != TaskType.regression else []
        self.encoder = LabelEncoder(p.task.type, self.classes)

    def build(self) -> Assembled:
        p = self.project
        builder = build_text_model if p.task.type.is_text else build_model
        self.asm = builder(p, len(self.classes))
        return self.asm

    def input_ds(self, examples: list[Example], shuffle: bool, split: str, with_labels: bool = True) -> Any:
        """Images or texts, batched, in ``examples`` order unless shuffled.

        ``split`` names the disk cache: each pipeline needs its own (train, val, and the
        label-less evaluation pass over val), or one would read the other's elements.
        """
        p = self.project
        if p.task.type.is_text:
            return text_dataset(
                examples, self.encoder, p.train.batch_size, shuffle=shuffle, seed=p.train.seed, with_labels=with_labels
            )
        size = self.model.backbone.size
        if split == "eval":  # one pass over validation: caching it again would only cost memory
            mode = "none"
        else:
            plan = plan_cache(len(examples), size, p.data.cache, p.data.cache_budget)
            if split not in self._cache_told:
                self._cache_told.add(split)
                self.log.emit(DATA_CACHE, split=split, mode=plan.mode, why=plan.why)
            mode = plan.mode
        plan = self.placement.plan if self.placement else None
        return image_dataset(
            examples,
            self.encoder,
            size,
            p.train.batch_size,
            shuffle=shuffle,
            seed=p.train.seed,
            cache=mode,
            cache_file=self.run_dir.cache / split,
            with_labels=with_labels,
            shard=(plan.workers, plan.worker) if plan and split != "eval" else (1, 0),
        )

    def progress(self, stage: str, unit: str = "") -> Callable[[int, int], None]:
        """A ``(done, total)`` callback for one long step (see :func:`tlapp.training.lifecycle.progress`)."""
        return lifecycle.progress(self.log, stage, unit)

    def class_weight(self) -> Optional[dict[int, float]]:
        if (
            self.project.train.class_weights != "auto"
            or not self.project.task.type.is_single_label
            or not self.use_class_weights
        ):
            return None
        return {self.encoder.index[c]: w for c, w in self.report.class_weights.items() if c in self.encoder.index}

    def embeddings(self, examples: list[Example], flip: bool = False, fresh: bool = False) -> np.ndarray:
        """Pooled backbone vectors, each computed once per example + backbone (:func:`embcache.rows`).

        ``flip=True``: of the horizontally mirrored images (an augmentation the head can learn
        from without another pass per epoch). ``fresh=True``: computed now and not cached (a
        fine-tuned backbone's vectors, which no cache key tells from the original's). The pass's
        speed is kept in ``embed_rate``.
        """
        asm, p = self.model, self.project
        ident = embcache.identity(asm, p, flip)
        bs = p.train.batch_size
        unit = "texts" if p.task.type.is_text else "images"
        big = len(examples) * asm.feature_dim * 4 > embcache.MEMMAP_BYTES

        def compute(todo: list[Example]) -> np.ndarray:
            rows = self.progress(f"embedding {len(todo)} {unit}" + (" (mirrored)" if flip else ""), unit)
            cut = None if fresh else self._prospect.get(flip)
            forward, kept = self.forward(asm.features), None
            if cut is not None:
                forward, kept = cut_cache.keeping(self.forward(cut.lower), self.forward(cut.embed), len(todo))
            arr = embcache.pass_over(
                asm,
                p,
                todo,
                self.encoder,
                bs,
                forward,
                lambda i, _n: rows(min(i * bs, len(todo)), len(todo)),
                self.should_stop,
                flip,
                self.run_dir.cache / f"embeddings-{embcache.cache_key(todo, ident)}.npy" if big else None,
            )()
            if kept is not None:
                self._kept[flip] = cut_cache.Kept(cut.layer, [embcache.example_key(e) for e in todo], kept())
            return arr

        # The model store's row store (shared with `tlapp compare` and earlier runs), unless the matrix is
        # large (then it lives in this run's scratch file); data.cache: none computes every time.
        store = None if big else store_dir("cache", "embeddings")
        t0 = time.time()
        if fresh or p.data.cache == "none":
            arr, reused = compute(examples), 0
        else:
            arr, reused = embcache.rows(examples, ident, store, compute)
        hit, self.last_reused = reused == len(examples), reused
        if not reused and not fresh:  # a partial pass's rate is dominated by loading and warm-up: not a speed
            self.embed_rate = len(examples) / max(time.time() - t0, 1e-6)
            record_speed(p, self.embed_rate)
        self.log.emit(
            EMBEDDINGS,
            n=len(examples),
            dim=int(arr.shape[-1]) if arr.size else 0,
            cached=hit,
            reused=reused,
            flip=flip,
            seconds=round(time.time() - t0, 2),
        )
        return arr

    def forward(self, model: Any) -> Callable[[Any], Any]:
        """A batch through ``model`` in inference mode, once per batch (not once per replica).

        ``predict_on_batch`` of a model built under a strategy hands the whole batch to every
        replica and concatenates their answers (2 replicas: twice the rows); a plain call on the
        replicated variables computes each row once.
        """
        if self.placement is None or not self.placement.distributed:
            return model.predict_on_batch
        return tf.function(lambda x: model(x, training=False))

    # ---- phases ------------------------------------------------------------
    def _phase_data(self, phase: Phase, cached: bool) -> tuple[Any, Any, Any]:
        """(model to fit, train batches, validation batches) for a phase."""
        p, asm = self.project, self.model
        train_ex, val_ex, bs = self.splits.train, self.splits.val, p.train.batch_size
        if cached:
            both = self.embeddings(train_ex + val_ex)  # one pass: one trace, full batches
            n = len(train_ex)
            train_ds = array_batches(both[:n], self.encoder.encode_all(train_ex), bs, shuffle=True, seed=p.train.seed)
            val_ds = array_batches(both[n:], self.encoder.encode_all(val_ex), bs) if val_ex else None
            return asm.head, train_ds, val_ds
        if p.task.type.is_text:  # same layers, fed length-trimmed token batches
            train_ds = token_batches(asm, train_ex, self.encoder, bs, shuffle=True, seed=p.train.seed)
            return asm.token_model, train_ds, token_batches(asm, val_ex, self.encoder, bs) if val_ex else None
        train_ds = augmented(self.input_ds(train_ex, shuffle=True, split="train"), phase.augment)
        return asm.model, train_ds, self.input_ds(val_ex, shuffle=False, split="val") if val_ex else None

    def announce_phase(
        self, i: int, phase: Phase, start_epoch: int, cached: bool, table: Optional[list[Any]] = None, **extra: Any
    ) -> list[Any]:
        """Apply the phase's freeze plan (unless ``table`` is its result) and say what trains (PHASE_START)."""
        asm = self.model
        table = table if table is not None else apply_plan(asm.backbone.model, asm.backbone.entry, phase.freeze)
        tr, non = param_counts(asm.model)
        lifecycle.phase_start(self.log, i, phase, start_epoch, tr, non, cached, block_summary(table), **extra)
        return table

    def _cut_for(self, phase: Phase, table: list[Any]) -> tuple[Optional[cut_cache.Cut], str]:
        """The fine-tune's cut (see :mod:`cut_cache`) when training on cached activations is exact and fits."""
        if self.project.task.type.is_text:
            return None, ""
        if why := cut_why_not(phase):
            return None, why
        if self.placement is not None and self.placement.distributed:
            return None, "several devices train"
        cut, why = cut_cache.find_cut(self.model, table)
        n = len(self.splits.train) + len(self.splits.val)
        if cut is not None and not cut_cache.fits(cut, n, phase.augment.flip):
            return None, f"the activations of {n} images would not fit {cut_cache.BUDGET_BYTES >> 20} MiB"
        return cut, why

    def keep_activations(self, phase: Phase) -> None:
        """Have the embedding passes that follow keep the activations at ``phase``'s cut (when it has one that
        fits): a fine-tune that may follow then starts without its own pass below the cut."""
        asm = self.model
        table = planned_table(layer_table(asm.backbone.model, asm.backbone.entry), phase.freeze)
        cut = self._cut_for(phase, table)[0] if any(r.trainable for r in table) else None
        self._prospect = {} if cut is None else {False: cut, **({True: cut} if phase.augment.flip else {})}

    def _activations(self, cut: cut_cache.Cut, examples: list[Example], flip: bool) -> np.ndarray:
        """The frozen bottom's pass over ``examples`` (mirrored when ``flip``), with a progress bar; none when
        the embedding pass kept them (:meth:`keep_activations`)."""
        kept = self._kept.get(flip)
        if kept is not None and (x := kept.take(cut.layer, [embcache.example_key(e) for e in examples])) is not None:
            return x
        n, bs = len(examples), self.project.train.batch_size
        rows = self.progress(f"activations below {cut.layer} of {n} images" + (" (mirrored)" if flip else ""), "images")
        done = lambda i, _n: rows(min(i * bs, n), n)  # noqa: E731
        forward = self.forward(cut.lower)
        return embcache.pass_over(
            self.model, self.project, examples, self.encoder, bs, forward, done, self.should_stop, flip
        )()

    def _cut_data(self, cut: cut_cache.Cut, phase: Phase) -> tuple[Any, Any, Any]:
        """(model to fit, train batches, validation batches) on the activations at ``cut``, computed once."""
        p, bs = self.project, self.project.train.batch_size
        train_ex, val_ex = self.splits.train, self.splits.val
        x = self._activations(cut, train_ex, False)
        xf = self._activations(cut, train_ex, True) if phase.augment.flip else None
        xv = self._activations(cut, val_ex, False) if val_ex else x[:0]
        self._cut = (cut, x, xf, xv)  # kept for refit_on_all
        train_ds = array_batches(x, self.encoder.encode_all(train_ex), bs, shuffle=True, seed=p.train.seed, mirrored=xf)
        val_ds = array_batches(xv, self.encoder.encode_all(val_ex), bs) if val_ex else None
        return cut.target, train_ds, val_ds

    def can_refit(self) -> bool:
        """Whether the last phase trained on cached activations (so training it again on all the data is cheap)."""
        return self._cut is not None and len(self.splits.val) > 0

    def val_outputs(self) -> np.ndarray:
        """The current model's outputs on the validation split, from the cached activations."""
        assert self._cut is not None
        cut, _, _, xv = self._cut
        return np.asarray(cut.target.predict(xv, batch_size=self.project.train.batch_size, verbose=0))

    def refit_on_all(self, index: int, phase: Phase, epochs: int) -> None:
        """Phase ``phase`` again, from the weights the model holds now, on train+validation for ``epochs``
        epochs (see ``recipe._refit_epochs``), on the activations the first run cached: the final model sees
        all the data, as a refit head does. Its epochs have nothing to be judged on, so the last one is kept."""
        assert self._cut is not None
        p, bs = self.project, self.project.train.batch_size
        cut, x, xf, xv = self._cut
        examples = self.splits.train + self.splits.val
        if xf is not None:
            xf = np.concatenate([xf, self._activations(cut, self.splits.val, True)])
        refit = phase.model_copy(update={"name": f"{phase.name} (all data)", "epochs": epochs})
        table = self.announce_phase(index, refit, 0, False, cut_at=cut.layer, refit_of=phase.name)
        steps = math.ceil(len(examples) / bs)
        loss, metrics = loss_and_metrics(p.task.type)
        opt = self.optimizer(phase, steps, table, False)
        cut.target.compile(optimizer=opt, loss=loss, metrics=metrics)
        y = self.encoder.encode_all(examples)
        ds = array_batches(np.concatenate([x, xv]), y, bs, shuffle=True, seed=p.train.seed, mirrored=xf)

        def done(e: int, logs: dict[str, float]) -> None:
            self.history.append({"phase": index, "phase_name": refit.name, "epoch": e + 1, **logs})
            self.write_history()

        cb = EventCallback(self.log, index, refit.name, epochs, steps, bs, self.should_stop, done, phase.learning_rate)
        cut.target.fit(
            ds.repeat(),
            epochs=epochs,
            steps_per_epoch=steps,
            class_weight=self.class_weight(),
            verbose=0,
            callbacks=[cb],
        )
        self.best = {**self.best, "phase": index, "phase_name": refit.name, "epoch": epochs, "refit": True}
        self.best_weights = self.model.model.get_weights()
        self.save_best_weights()
        self.log.emit(PHASE_END, index=index, name=refit.name)

    def run_phase(self, i: int, phase: Phase, start_epoch: int, restore: bool) -> None:
        p, asm = self.project, self.model
        table = apply_plan(asm.backbone.model, asm.backbone.entry, phase.freeze)
        trainable_backbone = any(r.trainable for r in table)
        cached = phase.use_embedding_cache and not trainable_backbone and not phase.augment.enabled
        cut, why = self._cut_for(phase, table) if trainable_backbone else (None, "")
        self._cut = None
        self._cached_phase, self._base_saved = (i if cached else None), False
        where = {"cut_at": cut.layer} if cut else {"cut_why_not": why} if why else {}
        self.announce_phase(i, phase, start_epoch, cached, table, **where)
        if phase.epochs <= start_epoch:
            self.log.emit(PHASE_END, index=i, name=phase.name, skipped=True)
            return
        target, train_ds, val_ds = self._cut_data(cut, phase) if cut else self._phase_data(phase, cached)
        steps = phase.steps_per_epoch or math.ceil(len(self.splits.train) / p.train.batch_size)
        train_ds = train_ds.repeat()  # exactly `steps` batches per epoch, whatever the source's cardinality
        loss, metrics = loss_and_metrics(p.task.type)
        opt = self.optimizer(phase, steps, table, cached)
        target.compile(optimizer=opt, loss=loss, metrics=metrics)  # recompile after changing trainable
        if restore:
            ckpt.restore_optimizer(self.shared.last_checkpoint, opt, target.trainable_variables)
        cbs: list[Any] = [
            EventCallback(
                self.log,
                i,
                phase.name,
                phase.epochs,
                steps,
                p.train.batch_size,
                self.should_stop,
                lambda e, logs: self.epoch_done(i, phase, e, logs, opt),
                learning_rate=phase.learning_rate,
            )
        ]
        if phase.early_stopping and (val_ds is not None or not phase.early_stopping.metric.startswith("val_")):
            es = phase.early_stopping
            cbs.append(keras.callbacks.EarlyStopping(monitor=es.metric, patience=es.patience, mode=es.mode))
        cbs.append(
            keras.callbacks.TensorBoard(
                log_dir=str(self.run_dir.logs / f"phase{i}_{phase.name}"), write_graph=False, profile_batch=0
            )
        )
        strategy.fit_on_workers(target, self.placement)
        try:
            target.fit(
                train_ds,
                validation_data=val_ds,
                epochs=phase.epochs,
                initial_epoch=start_epoch,
                steps_per_epoch=steps,
                class_weight=self.class_weight(),
                verbose=0,
                callbacks=cbs,
            )
        finally:
            self.flush_best(i, phase, opt)  # also when cancelled: the checkpoint must name weights on disk
        self.log.emit(PHASE_END, index=i, name=phase.name)

    def optimizer(self, phase: Phase, steps: int, table: list[Any], cached: bool) -> Any:
        mult = None
        if phase.discriminative_lr and not cached:
            by_block: dict[str, list[Any]] = {}
            layers = {layer.name: layer for layer in self.model.backbone.model.layers}
            for r in table:
                if r.trainable:
                    by_block.setdefault(r.block, []).extend(layers[r.name].trainable_weights)
            mult = block_multipliers(by_block, block_order(table), phase.discriminative_lr)
        return make_optimizer(phase, steps, mult)

    def epoch_done(self, i: int, phase: Phase, epoch: int, logs: dict[str, float], opt: Any) -> None:
        self.history.append({"phase": i, "phase_name": phase.name, "epoch": epoch + 1, **logs})
        self.write_history()
        metric, mode = monitor(self.project.task.type)
        if metric not in logs:
            metric, mode = "loss", "min"
        value = logs.get(metric)
        # Ties on accuracy are broken by the loss, so a plateau does not pin the first epoch.
        key = (
            (value if mode == "max" else -value, -logs.get("val_loss", logs.get("loss", 0.0)))
            if value is not None
            else None
        )
        if key is not None and (not self.best or key > tuple(self.best["key"])):
            self.best = {
                "value": value,
                "metric": metric,
                "phase": i,
                "phase_name": phase.name,
                "epoch": epoch + 1,
                "key": list(key),
            }
            self.best_weights = self.model.model.get_weights()
            if self._cached_phase == i:
                # A head on cached embeddings improves nearly every epoch in a fraction of a second; writing
                # the whole model each time cost 0.26 s an epoch (most of the phase). Written at phase end.
                self._best_unsaved = True
            else:
                self.save_best_weights()
        self.checkpoint(i, phase, epoch + 1, opt)

    def checkpoint(self, i: int, phase: Phase, epochs_done: int, opt: Any) -> None:
        """The resumable state. Its "best" is always one whose weights file is on disk."""
        cached = self._cached_phase == i
        ckpt.save_checkpoint(
            self.run_dir.last_checkpoint,
            self.model.model,
            opt,
            {
                "phase": i,
                "epoch_done": epochs_done,
                "phase_epochs": phase.epochs,
                "best": self.best_saved,
                "history": self.history,
            },
            head=self.model.head if cached else None,
            reuse_base=cached and self._base_saved,
        )
        self._base_saved = cached

    def save_best_weights(self) -> None:
        """The best epoch's weights on disk (atomically), so a resumed run can still restore them."""
        current = self.model.model.get_weights() if self._best_unsaved else None
        if current is not None and self.best_weights is not None:
            self.model.model.set_weights(self.best_weights)
        try:
            with atomic_path(self.run_dir.best_weights, suffix=".weights.h5") as tmp:
                self.model.model.save_weights(tmp)
        finally:
            if current is not None:
                self.model.model.set_weights(current)
        self.best_saved, self._best_unsaved = dict(self.best), False

    def flush_best(self, i: int, phase: Phase, opt: Any) -> None:
        """End of a cached phase (or its cancel): write the best weights it deferred, then a checkpoint
        that names them."""
        if not self._best_unsaved:
            return
        self.save_best_weights()
        done = [h["epoch"] for h in self.history if h["phase"] == i]
        if done:
            self.checkpoint(i, phase, done[-1], opt)

    def write_history(self) -> None:
        lifecycle.write_history(self.run_dir.history, self.history)

    # ---- whole run ---------------------------------------------------------
    def run(self, resume: bool) -> RunResult:
        p = self.project
        # The export check's own process imports TensorFlow (about 10 s of one core) while this one
        # trains, at a lower priority so it takes what training leaves; the export then waits for no import.
        chief = self.shared is self.run_dir
        self.verifier = FreshVerifier.start(nice=10) if p.export.formats and p.export.verify and chief else None
        try:
            return self._run(resume)
        finally:
            if self.verifier is not None:
                self.verifier.cancel()

    def _run(self, resume: bool) -> RunResult:
        p = self.project
        # First: a multi-worker strategy must exist before TensorFlow runs any op in this process.
        self.placement = place = strategy.make(p.train.strategy, p.train.devices, p.train.device, p.train.batch_size)
        keras.utils.set_random_seed(p.train.seed)
        if p.train.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.set_precision()
        runs_on = describe_device(devices(), p.train.device)
        lifecycle.run_start(
            self.log, self.run_dir, p, resume, runs_on, keras.mixed_precision.global_policy().name, place
        )
        with place.scope():
            self.prepare_data(resume)
            self.build()
            self.show_plan()
            if choices_of(p):
                self.choose_backbone(resume)
            p = self.project
            if p.train.preset != "custom" or self.phases[0].solver == "exact":
                if resume:  # a recipe re-decides from the data; its embeddings come back from the cache
                    self.log.emit(
                        RESUME,
                        phase=0,
                        epoch=1,
                        restart=True,
                        message=(
                            "resuming a preset run starts it again: the head is solved again from the cached "
                            "embeddings and the fine-tune, if it runs, starts from its first epoch"
                        ),
                    )
                run_recipe(self)
            else:
                start_phase, start_epoch, restore = self.restore_checkpoint() if resume else (0, 0, False)
                for i, phase in enumerate(self.phases):
                    if i >= start_phase:
                        self.run_phase(i, phase, start_epoch if i == start_phase else 0, restore and i == start_phase)
                self.keep_best()
            if not place.distributed:
                return self.finish()  # still on the device train.device chose
        self.unwrap()
        if not place.plan.chief:
            return lifecycle.worker_done(self.log, self.shared, place.plan.worker, self.classes)
        return self.finish()

    def show_plan(self) -> None:
        """The plan, before anything trains: its phases, expected times and the fine-tune decision (PLAN)."""
        self.phases = phases_of(self.project, len(self.splits.train))
        b = self.model.backbone
        rate = measured_speed(self.project)
        lifecycle.show_plan(
            self.log,
            self.project,
            len(self.splits.train),
            len(self.splits.val),
            rate or estimate_speed(self.project, b.entry.params_m, b.size)[0],
            rate is not None,
            len(self.classes),
        )

    def choose_backbone(self, resume: bool) -> None:
        """``backbone.choose_from``: score the candidates and make the winner this run's backbone (BACKBONE_CHOICE).
        A resumed run keeps the choice it made (its checkpoint holds the winner's weights)."""
        p = self.project
        saved = self.shared.read_json(self.shared.backbone_choice) if resume else None
        if saved:
            self.project = candidate_project(p, saved["chosen"])
            self.choice, self.choice_reason = saved["candidates"], saved.get("reason", "")
            if self.model.backbone.entry.name != saved["chosen"]:
                self.build()
            return
        t0 = time.time()
        cands = plan_choice(p, len(self.splits.train), len(self.splits.val))
        for c in cands:
            if not c.runs:
                self.log.emit(WARNING, message=f"backbone.choose_from: {c.name} left out: {c.why}")
        won, why = choice.choose(self, cands)
        self.choice, self.choice_reason = [c.as_dict() for c in cands], why
        doc = {
            "chosen": won.name,
            "reason": why,
            "examples": len(self.splits.train) + len(self.splits.val),  # what the scores were measured on
            "candidates": self.choice,
            "seconds": round(time.time() - t0, 1),
        }
        with atomic_path(self.run_dir.backbone_choice) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))
        self.run_dir.write_resolved_config(self.project)  # the run's config names what trains: the winner
        self.log.emit(BACKBONE_CHOICE, **doc)

    def unwrap(self) -> None:
        """The trained weights in a model built outside the strategy, for evaluation and export.

        A model built under a strategy computes through it: on several workers its predict would wait
        for the others, and its SavedModel would carry replicated variables. The exported model is
        the same plain model a one-device run exports.
        """
        weights = self.model.model.get_weights()
        self.build()
        self.model.model.set_weights(weights)

    def restore_checkpoint(self) -> tuple[int, int, bool]:
        """(phase, epoch, restore optimizer) to continue from the last sound checkpoint."""
        if self.shared is self.run_dir:  # it may repair the folder: the chief's job alone
            warning = ckpt.choose(self.run_dir.checkpoints)
            if warning:
                self.log.emit(WARNING, message=warning)
        state = ckpt.read_state(self.shared.last_checkpoint)
        if not state:
            return 0, 0, False
        ckpt.restore_weights(self.shared.last_checkpoint, self.model.model, self.model.head)
        self.best, self.history = state.get("best", {}), state.get("history", [])
        self.best_saved = dict(self.best)
        phase, epoch, restore = state["phase"], state["epoch_done"], True
        if epoch >= state["phase_epochs"]:
            phase, epoch, restore = phase + 1, 0, False
        self.log.emit(RESUME, phase=phase, epoch=epoch + 1)
        return phase, epoch, restore

    def set_precision(self) -> None:
        """mixed_float16 only where it pays (a GPU with tensor cores); the head's output layer stays float32."""
        setting = self.project.train.mixed_precision
        gpus = visible_gpus()
        if setting == "auto":
            want = bool(gpus) and tensor_cores(gpus[0])
        else:
            want = bool(setting)
            if want and not gpus:
                self.log.emit(WARNING, message="mixed precision needs a GPU; training in float32 on the CPU")
                want = False
        keras.mixed_precision.set_global_policy("mixed_float16" if want else "float32")

    def keep_best(self) -> None:
        """Roll back to the best epoch when later epochs were worse (from memory, or from disk after a resume)."""
        if not self.project.train.keep_best or not self.best or not self.history:
            return
        last = self.history[-1]
        if (last["phase"], last["epoch"]) == (self.best["phase"], self.best["epoch"]):
            return
        if self.best_weights is not None:
            self.model.model.set_weights(self.best_weights)
        elif self.shared.best_weights.is_file():
            self.model.model.load_weights(self.shared.best_weights)
        else:
            self.log.emit(WARNING, message="the best epoch's weights were not found; the last weights are exported")
            return
        self.best["restored"] = True
        self.log.emit(
            WARNING,
            message=(
                f"{self.best['metric']} was best at phase {self.best['phase_name']!r} epoch {self.best['epoch']} "
                f"({self.best['value']:.4f}); later epochs were worse, so those best weights are kept and exported"
            ),
        )

    def finish(self) -> RunResult:
        # a fine-tune's cached activations (up to 1 GiB) are not kept through the export
        self._cut, self._kept, self._prospect = None, {}, {}
        return finish_run(self)


def _plain_error(e: BaseException, project: Project) -> BaseException:
    """Out of memory and a full or read-only disk become one line that says what to do."""
    bs = project.train.batch_size
    if isinstance(e, MemoryError) or type(e).__name__ == "ResourceExhaustedError":
        return TrainingError(
            f"out of memory at batch size {bs}: set train.batch_size to {max(bs // 2, 1)} "
            "(or a smaller backbone.image_size) and resume or start again; the last checkpoint "
            "is kept"
        )
    if isinstance(e, OSError) and not isinstance(e, TlappError):
        return TrainingError(
            f"{os_error_line(e)} — free some space or choose a writable folder, then resume; "
            "files already written are intact"
        )
    return e


def train(
    project: Optional[Project],
    run_dir: str | Path,
    on_event: Optional[EventSink] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    *,
    project_file: Optional[Path] = None,
    resume: bool = False,
) -> RunResult:
    """Train, evaluate and export one project into ``run_dir``.

    Example::

        result = train(load_project("p.yaml"), "runs/a", on_event=print)

    With ``resume=True`` the project is read from the run's own ``config.yaml``
    (pass ``None``). Raises :class:`Cancelled` (checkpoint kept) when
    ``should_stop()`` turns true.
    """
    rd = RunDir(Path(run_dir).resolve())
    if project is not None:
        phases_of(project, 0)  # a plan setting that cannot apply fails here, before a run folder exists
    worker = _other_worker(project, rd, resume)
    if worker is not None:  # trains beside the chief and writes nothing to the run folder
        scratch = RunDir(tempfile.mkdtemp(prefix=f"tlapp-worker{worker}-"))
        try:
            with scratch.lock():
                return _train_locked(scratch, project, on_event, should_stop, project_file, resume, shared=rd)
        finally:
            shutil.rmtree(scratch.root, ignore_errors=True)
    try:
        rd.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TlappError(f"{rd.root}: cannot create the run folder ({e.strerror or e})") from None
    with rd.lock():
        return _train_locked(rd, project, on_event, should_stop, project_file, resume)


def _other_worker(project: Optional[Project], rd: RunDir, resume: bool) -> Optional[int]:
    """This process's worker number when it is a multi-worker run's non-chief worker, else None."""
    if project is None and resume and rd.config.is_file():
        project = load_project(rd.config)
    if project is None or project.train.strategy != "multi_worker":
        return None
    plan = strategy.plan("multi_worker")
    return None if plan.chief else plan.worker


def _train_locked(
    rd: RunDir,
    project: Optional[Project],
    on_event: Optional[EventSink],
    should_stop: Optional[Callable[[], bool]],
    project_file: Optional[Path],
    resume: bool,
    shared: Optional[RunDir] = None,
) -> RunResult:
    src = shared or rd
    if resume:
        if not src.has_checkpoint():
            raise TlappError(f"{src.root}: no checkpoint to resume from")
        project = load_project(src.config)
        if shared is not None:
            rd.write_resolved_config(project)
    elif project is None:
        raise TlappError("train: a project is needed unless resume=True")
    else:
        project = absolute_data_path(project, project_file)
        rd.write_resolved_config(project)
    log = EventLog(rd.events, on_event)
    task = project.task.type
    run: Run | SftRun = (
        DpoRun(project, rd, log, should_stop, shared=shared)
        if task is TaskType.dpo
        else SftRun(project, rd, log, should_stop, shared=shared)
        if task.is_generative
        else Run(project, rd, log, should_stop, project_file, shared=shared)
    )
    rd.write_status("running")
    try:
        return run.run(resume)
    except Cancelled as e:
        rd.write_status("cancelled", str(e))
        log.emit(
            RUN_END,
            status="cancelled",
            message=str(e),
            resume=f"tlapp train {rd.config} --resume {rd.root}" if rd.has_checkpoint() else None,
        )
        raise
    except Exception as e:
        err = _plain_error(e, project)
        message = str(err) if isinstance(err, TlappError) else repr(err)
        rd.write_status("failed", message)
        log.emit(RUN_END, status="failed", message=message)
        if err is e:
            raise
        raise err from e
    finally:
        log.close()
