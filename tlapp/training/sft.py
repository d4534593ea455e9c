"""Supervised fine-tuning of a causal language model on prompt -> response pairs (task ``sft``, issue #11).

The same contract as every run (``train(project, run_dir, on_event, should_stop)`` dispatches
here): events out, cancel in, a checkpoint per epoch, resume, the best epoch kept, an export
checked in a fresh process. What differs from a classifier:

- examples are ChatML conversations; the loss counts only the answer and its end token;
- batches are grouped by length (``chat.bucketed_batches``) and the step is traced once for all
  lengths (``model.lm.train_step``);
- the default freeze is LoRA (rank 8 on query and value); ``top_blocks`` trains the last N
  transformer layers instead. A checkpoint holds only what trains (an adapter is a few MB);
- validation is loss, token accuracy and perplexity on held-out pairs, and the run ends with
  the base model's and the tuned model's answers to those prompts, side by side.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from tlapp.backbones.causal_lm import LanguageModel, build_language_model
from tlapp.backbones.freeze import apply_plan, block_summary, param_counts
from tlapp.base.errors import Cancelled, DataError, TlappError, WeightsError
from tlapp.config import Phase, Project
from tlapp.data.pairs import Pair, PairsReport, pair_split_sizes, scan_pairs
from tlapp.events import (
    PHASE_END,
    RESUME,
    SCAN,
    WARNING,
    EventLog,
)
from tlapp.model import chat
from tlapp.model.lm import Generator, Trainables, causal_lm, evaluator, perplexity, train_step
from tlapp.model.optim import make_optimizer
from tlapp.presets import phases_of
from tlapp.rundir import RunDir
from tlapp.training import checkpoint as ckpt
from tlapp.training import lifecycle
from tlapp.training.callbacks import EventCallback
from tlapp.training.devices import describe_device, devices
from tlapp.training.estimate import speed as estimate_speed
from tlapp.training.lifecycle import RunResult
from tlapp.training.sft_finish import finish_sft

SAMPLE_PROMPTS = 5  # validation prompts answered before and after training
SAMPLE_TOKENS = 48
# An epoch of a thousand pairs takes minutes on a CPU: within an epoch a checkpoint is also written this
# often, and when the run is cancelled, so a resume loses at most this much work (not the epoch).
CHECKPOINT_EVERY_S = 300.0


@dataclass
class PairSplit:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "train": [p.line for p in self.train],
            "val": [p.line for p in self.val],
            "test": [p.line for p in self.test],
        }


def split_pairs(pairs: list[Pair], val_fraction: float, test_fraction: float, seed: int) -> PairSplit:
    """A seeded shuffle; validation gets at least one pair when asked for and there are 4 or more."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val, n_test = pair_split_sizes(len(pairs), val_fraction, test_fraction)
    pick = [pairs[i] for i in order]
    return PairSplit(pick[n_val + n_test :], pick[:n_val], pick[n_val : n_val + n_test], seed)


@dataclass
class SftRun:
    project: Project
    run_dir: RunDir
    log: EventLog
    should_stop: Optional[Callable[[], bool]] = None
    lm: Optional[LanguageModel] = None
    report: Optional[PairsReport] = None
    split: Optional[PairSplit] = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    best_values: Optional[list[np.ndarray]] = None
    step_seconds: list[float] = field(default_factory=list)
    step_log: list[dict[str, Any]] = field(default_factory=list)  # each step's figures (history.csv)
    phases: list[Phase] = field(default_factory=list)
    # A multi-worker run's other workers write to a scratch folder and read the chief's split and checkpoint.
    shared: Optional[RunDir] = None
    placement: Any = None

    started: float = field(default_factory=time.time)
    encoded: dict[int, chat.Encoded] = field(default_factory=dict)  # by line: tokenized once, in prepare()
    _stages: dict[str, Callable[[int, int], None]] = field(default_factory=dict)  # progress per stage

    @property
    def src(self) -> RunDir:
        return self.shared or self.run_dir

    # ---- data ---------------------------------------------------------------
    NOUN = "pair"  # what one example is called in messages

    def read_data(self) -> Any:
        return scan_pairs(self.project.data.path or "")

    def encode_data(self, lm: LanguageModel) -> tuple[list[Any], dict[str, Any]]:
        """Each example's encoding (None where it does not fit) aligned with the scan, and the token report."""
        truncate = self.project.data.too_long == "truncate"
        assert self.report is not None
        enc = chat.encode_all(self.report.pairs, lm.tokenizer, lm.max_len, truncate, lm.system)
        return enc, chat.token_report(enc, self.report.pairs, lm.max_len)

    def prepare(self, resume: bool) -> None:
        p, noun = self.project, self.NOUN
        self.report = self.read_data()
        self.report.require_usable(2)
        lm = self.load_model()
        enc, tokens = self.encode_data(lm)
        self.encoded = {pair.line: e for pair, e in zip(self.report.pairs, enc) if e is not None}
        dropped = [pair.line for pair, e in zip(self.report.pairs, enc) if e is None]
        scan = {**self.report.as_dict(), "tokens": tokens, "dropped_lines": dropped}
        self.run_dir.scan.write_text(json.dumps(scan, indent=2))
        bad = [{"path": f"line {b['line']}", "reason": b["reason"]} for b in self.report.problems]
        self.log.emit(
            SCAN,
            source=self.report.source,
            counts={f"{noun}s": len(self.report.pairs)},
            n_good=len(self.report.pairs),
            used=len(self.report.pairs) - len(dropped),
            bad=bad,
            ignored=sum(len(d) - 1 for d in self.report.duplicates),
            warnings=[],
            class_weights={},
            pairs=True,
            tokens=tokens,
        )
        if self.report.duplicates:
            self.log.emit(
                WARNING,
                message=f"{len(self.report.duplicates)} {noun}(s) repeated (lines "
                f"{', '.join('/'.join(map(str, d)) for d in self.report.duplicates[:5])}); each is used once",
            )
        if tokens["over_limit_lines"]:
            what = "truncated (oldest prompt tokens first)" if p.data.too_long == "truncate" else "dropped"
            self.log.emit(
                WARNING,
                message=f"{len(tokens['over_limit_lines'])} {noun}(s) are longer than "
                f"{lm.max_len} tokens and were {what}: lines "
                f"{', '.join(map(str, tokens['over_limit_lines'][:10]))} (backbone.sequence_length)",
            )
        keep = [pair for pair, e in zip(self.report.pairs, enc) if e is not None]
        if len(keep) < 2:
            raise DataError(
                f"{self.report.source}: {len(keep)} {noun}(s) fit in {lm.max_len} tokens; raise "
                "backbone.sequence_length or set data.too_long: truncate"
            )
        self.make_split(keep, resume)

    def make_split(self, keep: list[Any], resume: bool) -> None:
        """The seeded split of the usable examples, or on resume the one the run saved."""
        p = self.project
        saved = self.src.read_json(self.src.split) if resume else None
        if saved:
            by_line = {pair.line: pair for pair in keep}
            pick = lambda lines: [by_line[i] for i in lines if i in by_line]  # noqa: E731
            self.split = PairSplit(pick(saved["train"]), pick(saved["val"]), pick(saved["test"]), saved["seed"])
        else:
            self.split = split_pairs(keep, p.data.val_fraction, p.data.test_fraction, p.data.seed)
            self.run_dir.split.write_text(json.dumps(self.split.as_dict(), indent=1))

    def load_model(self) -> LanguageModel:
        p = self.project
        self.stage(f"loading the language model {p.backbone.name}")
        self.lm = build_language_model(p.backbone)
        self.stage(f"loading the language model {p.backbone.name}", done=True)
        if not self.lm.pretrained and not self.lm.entry.test_only:
            raise WeightsError(
                f"backbone.weights: 'none' would fine-tune a randomly initialised {self.lm.entry.name}; "
                "use 'pretrained' or a model folder"
            )
        return self.lm

    def stage(self, what: str, done: bool = False, total: int = 1, count: int = 0) -> None:
        """A step that is not an epoch, for the progress bar (the first training step's graph tracing, the
        base model's answers, the export): through the one home of progress events."""
        if what not in self._stages:
            self._stages[what] = lifecycle.progress(self.log, what)
        self._stages[what](total if done else count, total)

    def batches(self, pairs: list[Pair], seed: int) -> list[dict[str, np.ndarray]]:
        """Length-bucketed batches of ``pairs`` (only pairs that fit, as the scan decided), shuffled by ``seed``."""
        items = [self.encoded[pair.line] for pair in pairs if pair.line in self.encoded]
        return chat.bucketed_batches(items, self.project.train.batch_size, self.model_lm.tokenizer.pad_id, seed)

    @property
    def model_lm(self) -> LanguageModel:
        if self.lm is None:
            raise TlappError("the language model is not loaded yet (call prepare() first)")
        return self.lm

    def prompts(self, pairs: list[Pair]) -> list[list[int]]:
        tok, lm = self.model_lm.tokenizer, self.model_lm
        return [chat.prompt_ids(pair.messages, tok.encode, tok.start_id, tok.end_id, lm.system) for pair in pairs]

    def answers(self, pairs: list[Pair], who: str) -> list[str]:
        tok = self.model_lm.tokenizer
        what = f"answering {len(pairs)} held-out prompt(s) with the {who} model"
        self.stage(what, total=len(pairs))
        gen = Generator(self.model_lm.backbone, tok.end_id)
        out = [tok.decode(a).strip() for a in gen(self.prompts(pairs), SAMPLE_TOKENS)]
        self.stage(what, done=True, total=len(pairs))
        return out

    def sample_pairs(self) -> list[Pair]:
        s = self.split
        assert s is not None
        return (s.val or s.train)[:SAMPLE_PROMPTS]

    # ---- training -----------------------------------------------------------
    def run(self, resume: bool) -> RunResult:
        from tlapp.base.tfenv import quiet_import
        from tlapp.training import strategy

        _, keras = quiet_import()
        p = self.project
        # First: a multi-worker strategy must exist before TensorFlow runs any op in this process.
        self.placement = place = strategy.make(p.train.strategy, p.train.devices, p.train.device, p.train.batch_size)
        keras.utils.set_random_seed(p.train.seed)
        keras.mixed_precision.set_global_policy("float32")
        lifecycle.run_start(
            self.log, self.run_dir, p, resume, describe_device(devices(), p.train.device), "float32", place
        )
        chief = place.plan.chief
        with place.scope():  # variables (the model's, the adapters', the optimizer's) live on its devices
            self.prepare(resume)
        self.phases = phases = phases_of(p, len(self.split.train) if self.split else 0)
        n_train, n_val = (len(self.split.train), len(self.split.val)) if self.split else (0, 0)
        lifecycle.show_plan(
            self.log,
            p,
            n_train,
            n_val,
            *estimate_speed(p, self.model_lm.entry.params_m, p.backbone.sequence_length or 128),
        )
        before_file = self.src.root / "samples_before.json"
        before = self.src.read_json(before_file)
        if before is None and chief:  # the base model's answers, before anything trains; outside the scope:
            before = self.answers(self.sample_pairs(), "base")  # variables made there are made on every worker
            before_file.write_text(json.dumps(before, indent=1))
        with place.scope():
            start_phase, start_epoch, state = 0, 0, None
            if resume:
                if self.shared is None:  # it may repair the folder: the chief's job alone
                    warning = ckpt.choose(self.run_dir.checkpoints)
                    if warning:
                        self.log.emit(WARNING, message=warning)
                state = ckpt.read_state(self.src.last_checkpoint)
            for i, phase in enumerate(phases):
                if state and i < state["phase"]:
                    apply_plan(self.model_lm.backbone, self.model_lm.entry, phase.freeze)  # adapters before restore
                    continue
                if state and i == state["phase"]:
                    start_phase, start_epoch = i, state["epoch_done"]
                self.run_phase(i, phase, start_epoch if i == start_phase else 0, state if i == start_phase else None)
            self.keep_best(phases)
        if not chief:
            return lifecycle.worker_done(self.log, self.src, place.plan.worker, [])
        return self.finish(before or [])

    # ---- what one step trains and reports (a preference run overrides these) ----
    METRICS = ("loss", "token_accuracy")

    def make_step(self, model: Any, opt: Any, strategy: Any) -> Callable[[dict[str, np.ndarray]], Any]:
        """batch -> ({metric: batch mean}, weight): the SFT step weighs its means by answer tokens."""
        step = train_step(model, opt, strategy)

        def run(batch: dict[str, np.ndarray]) -> tuple[dict[str, float], float]:
            loss, acc, n = step(batch)
            return {"loss": loss, "token_accuracy": acc}, n

        return run

    def make_evaluator(self, model: Any) -> Callable[[list[dict[str, np.ndarray]]], dict[str, float]]:
        return evaluator(model)

    def derived(self, logs: dict[str, float]) -> dict[str, float]:
        """What is shown and logged from a step's or an epoch's means (SFT adds perplexity)."""
        return {**logs, "perplexity": perplexity(logs["loss"])}

    def sums(self, saved: Any) -> dict[str, float]:
        """Running sums of an epoch's metrics: zero, or what a mid-epoch checkpoint saved."""
        if isinstance(saved, list):  # checkpoints before 2026-12: [loss, token accuracy, tokens]
            saved = {"loss": saved[0], "token_accuracy": saved[1], "_n": saved[2]}
        zero = dict.fromkeys((*self.METRICS, "_n"), 0.0)
        return {**zero, **(saved or {})}

    def finish(self, before: list[str]) -> RunResult:
        return finish_sft(self, before)

    def preference_before(self, pairs: list[Any]) -> Any:
        return None  # a preference run's figure; SFT has none

    def run_phase(self, i: int, phase: Phase, start_epoch: int, state: Optional[dict[str, Any]]) -> None:
        lm, p = self.model_lm, self.project
        table = apply_plan(lm.backbone, lm.entry, phase.freeze)
        model = causal_lm(lm.backbone)
        trainables = Trainables(model.trainable_variables)
        tr, non = param_counts(lm.backbone)
        if not tr:
            raise TlappError(
                f"train.phases.{i}.freeze: nothing trains (mode {phase.freeze.mode!r}); use lora or top_blocks"
            )
        train_pairs = self.split.train if self.split else []
        n_batches = len(self.batches(train_pairs, 0))
        steps = min(phase.steps_per_epoch or n_batches, n_batches)
        lifecycle.phase_start(
            self.log,
            i,
            phase,
            start_epoch,
            tr,
            non,
            False,
            block_summary(table),
            freeze=phase.freeze.model_dump(mode="json"),
        )
        opt = make_optimizer(phase, steps)
        place = self.placement
        step = self.make_step(model, opt, place.strategy if place is not None and place.distributed else None)
        if state:
            trainables.load_weights(self.src.last_checkpoint / "model.weights.h5")
            ckpt.restore_optimizer(self.src.last_checkpoint, opt, model.trainable_variables)
            self.history, self.best = state.get("history", []), state.get("best", {})
            self.step_log = state.get("step_log", [])
            if self.src.best_weights.is_file() and self.best:
                keep = trainables.values()
                trainables.load_weights(self.src.best_weights)
                self.best_values = trainables.values()
                trainables.assign(keep)
            self.log.emit(RESUME, phase=i, epoch=start_epoch + 1, step=int(state.get("step_done", 0)) + 1)
        evaluate = self.make_evaluator(model)
        val = self.batches(self.split.val, 0) if self.split and self.split.val else []
        cb = EventCallback(
            self.log,
            i,
            phase.name,
            phase.epochs,
            steps,
            p.train.batch_size,
            self.should_stop,
            lambda e, logs: None,
            learning_rate=phase.learning_rate,
        )
        es, wait = phase.early_stopping, 0
        # A checkpoint written mid-epoch says how many of that epoch's batches are done, and their sums.
        skip = int(state.get("step_done", 0)) if state else 0
        partial = self.sums(state.get("partial") if state and skip else None)
        saved_at = time.time()

        def save(epoch: int, step_done: int, sums: dict[str, float]) -> None:
            ckpt.save_checkpoint(
                self.run_dir.last_checkpoint,
                trainables,
                opt,
                {
                    "phase": i,
                    "epoch_done": epoch,
                    "step_done": step_done,
                    "partial": sums,
                    "phase_epochs": phase.epochs,
                    "best": self.best,
                    "history": self.history,
                    "step_log": self.step_log,
                },
            )

        for epoch in range(start_epoch, phase.epochs):
            cb.on_epoch_begin(epoch)
            sums = dict(partial) if epoch == start_epoch else self.sums(None)
            for b, batch in enumerate(self.batches(train_pairs, p.train.seed + epoch)[:steps]):
                if epoch == start_epoch and b < skip:
                    continue  # done before the interruption (the batches are the same: same seed, same epoch)
                if not self.step_seconds:
                    self.stage("preparing the first training step (tracing the model graph, once per run)")
                t0 = time.time()
                values, k = step(batch)
                self.step_seconds.append(time.time() - t0)
                for key, v in values.items():
                    sums[key] += v * k
                sums["_n"] += k
                self.step_log.append(
                    {
                        "stage": "step",
                        "phase": i,
                        "epoch": epoch + 1,
                        "step": len(self.step_log) - len(self.history) + 1,
                    }
                    | self.derived(values)
                )
                cb.batch_size = batch["token_ids"].shape[0]  # pairs/s counts this batch, not the nominal size
                try:
                    cb.on_train_batch_end(b, self.derived(values))
                except Cancelled:
                    save(epoch, b + 1, sums)  # this step is applied: keep it
                    raise
                if time.time() - saved_at >= CHECKPOINT_EVERY_S and b + 1 < steps:
                    save(epoch, b + 1, sums)
                    saved_at = time.time()
            logs = self.derived({k: v / max(sums["_n"], 1.0) for k, v in sums.items() if k != "_n"})
            if val:
                logs.update({f"val_{k}": v for k, v in evaluate(val).items()})
            cb.on_epoch_end(epoch, logs)
            improved = self.epoch_done(i, phase, epoch, logs, trainables)
            save(epoch + 1, 0, self.sums(None))
            saved_at = time.time()
            wait = 0 if improved else wait + 1
            if es and val and wait >= max(es.patience, 1):
                self.log.emit(
                    WARNING,
                    message=f"val_loss has not improved for {wait} epoch(s): phase "
                    f"{phase.name!r} stops early at epoch {epoch + 1}",
                )
                break
        self.log.emit(PHASE_END, index=i, name=phase.name)

    def epoch_done(self, i: int, phase: Phase, epoch: int, logs: dict[str, float], trainables: Trainables) -> bool:
        self.history.append({"phase": i, "phase_name": phase.name, "epoch": epoch + 1, **logs})
        # history.csv: every step's figures, then each epoch's (with the held-out ones), as the charts show them
        self.step_log.append({"stage": "epoch", **self.history[-1]})
        lifecycle.write_history(self.run_dir.history, self.step_log)
        metric = "val_loss" if "val_loss" in logs else "loss"
        value = logs[metric]
        if self.best and value >= self.best["value"]:
            return False
        self.best = {"value": value, "metric": metric, "phase": i, "phase_name": phase.name, "epoch": epoch + 1}
        self.best_values = trainables.values()
        trainables.save_weights(self.run_dir.best_weights)
        return True

    def keep_best(self, phases: list[Phase]) -> None:
        """Back to the best epoch's trainable weights when later epochs were worse (the last phase's)."""
        if not self.project.train.keep_best or not self.best or not self.history or self.best_values is None:
            return
        last = self.history[-1]
        if (last["phase"], last["epoch"]) == (self.best["phase"], self.best["epoch"]):
            return
        if self.best["phase"] != last["phase"]:
            return  # an earlier phase's weights are a different set of variables
        model = causal_lm(self.model_lm.backbone)
        Trainables(model.trainable_variables).assign(self.best_values)
        self.best["restored"] = True
        self.log.emit(
            WARNING,
            message=(
                f"{self.best['metric']} was best at phase {self.best['phase_name']!r} epoch {self.best['epoch']} "
                f"({self.best['value']:.4f}); later epochs were worse, so those weights are kept and exported"
            ),
        )
