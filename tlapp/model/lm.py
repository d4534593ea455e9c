"""A causal LM's training step, evaluation and generation, on token ids (issue #11).

keras-hub's ``CausalLM`` is used without a preprocessor: tlapp tokenizes itself (see
``backbones.causal_lm``), and keras-hub 0.32's ``generate_preprocess`` would prepend a second
``<|im_start|>`` to a ChatML prompt. The step is one ``tf.function`` whose signature leaves batch
and length open, so every length bucket reuses one trace (on 2 CPUs a SmolLM2 trace costs ~25 s).
A generate function is compiled per :class:`Generator`: one compiled before LoRA was enabled
would silently ignore the adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tlapp.base.fsutil import atomic_path
from tlapp.base.tfenv import quiet_import, quiet_keras_hub

tf, keras = quiet_import()


def causal_lm(backbone: Any) -> Any:
    return quiet_keras_hub().models.Llama3CausalLM(backbone=backbone, preprocessor=None)


def perplexity(loss: float) -> float:
    """exp(mean next-token loss), capped so a diverged loss reads as a huge number, not an overflow."""
    return float(np.exp(min(loss, 50.0)))


def _masked_loss(model: Any, batch: dict[str, Any], training: bool, total: Any = None) -> tuple[Any, Any, Any]:
    """(weighted loss, correct weighted tokens, weighted tokens) of one batch. The loss is divided by
    ``total`` (the whole global batch's answer tokens, for a replica's share) or by this batch's own."""
    logits = model({"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}, training=training)
    logits = tf.cast(logits, tf.float32)
    w = batch["sample_weight"]
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=batch["labels"], logits=logits)
    total = tf.maximum(tf.reduce_sum(w), 1.0) if total is None else total
    hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), batch["labels"]), tf.float32)
    return tf.reduce_sum(ce * w) / total, tf.reduce_sum(hit * w), tf.reduce_sum(w)


_SPEC = {
    "token_ids": tf.TensorSpec([None, None], tf.int32),
    "padding_mask": tf.TensorSpec([None, None], tf.bool),
    "labels": tf.TensorSpec([None, None], tf.int32),
    "sample_weight": tf.TensorSpec([None, None], tf.float32),
}


def train_step(
    model: Any,
    optimizer: Any,
    strategy: Any = None,
) -> Callable[[dict[str, np.ndarray]], tuple[float, float, float]]:
    """One optimizer step on a batch from ``chat.bucketed_batches``: (loss, token accuracy, tokens).

    With a ``tf.distribute`` strategy of several replicas, each replica takes every R-th row of the
    global batch; its loss is divided by the global batch's answer tokens, so the gradients Keras sums
    across replicas are those of the whole batch (the same step as on one device, to float rounding).
    """
    variables = model.trainable_variables
    optimizer.build(variables)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        return _replicated_step(model, optimizer, strategy, variables)

    @tf.function(input_signature=[_SPEC], reduce_retracing=True)
    def step(batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            loss, hit, n = _masked_loss(model, batch, True)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, hit / tf.maximum(n, 1.0), n

    def run(batch: dict[str, np.ndarray]) -> tuple[float, float, float]:
        loss, acc, n = step(batch)
        return float(loss), float(acc), float(n)

    return run


def replica_rows(batch: dict[str, np.ndarray], replica: int, replicas: int) -> dict[str, np.ndarray]:
    """Rows ``replica::replicas`` of a batch; a replica left without rows gets one that weighs nothing."""
    part = {k: v[replica::replicas] for k, v in batch.items()}
    if len(part["token_ids"]):
        return part
    filler = {k: np.zeros_like(v[:1]) for k, v in batch.items()}
    filler["padding_mask"][0, 0] = True  # one visible token keeps attention finite; its weight is 0
    return filler


def _replicated_step(model: Any, optimizer: Any, strategy: Any, variables: list[Any]) -> Callable[..., Any]:
    replicas = strategy.num_replicas_in_sync

    def on_replica(batch: dict[str, Any], total: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            loss, hit, n = _masked_loss(model, batch, True, total)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, hit, n

    @tf.function(reduce_retracing=True)
    def step(batch: Any, total: Any) -> tuple[Any, Any, Any]:
        loss, hit, n = strategy.run(on_replica, args=(batch, total))
        s = tf.distribute.ReduceOp.SUM
        return strategy.reduce(s, loss, None), strategy.reduce(s, hit, None), strategy.reduce(s, n, None)

    def run(batch: dict[str, np.ndarray]) -> tuple[float, float, float]:
        total = np.float32(max(float(batch["sample_weight"].sum()), 1.0))
        dist = strategy.experimental_distribute_values_from_function(
            lambda ctx: replica_rows(batch, ctx.replica_id_in_sync_group, replicas)
        )
        loss, hit, n = step(dist, tf.constant(total, tf.float32))
        return float(loss), float(hit) / max(float(n), 1.0), float(n)

    return run


def evaluator(model: Any) -> Callable[[list[dict[str, np.ndarray]]], dict[str, float]]:
    """Loss, token accuracy and perplexity over batches, weighted by answer tokens."""

    @tf.function(input_signature=[_SPEC], reduce_retracing=True)
    def one(batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        loss, hit, n = _masked_loss(model, batch, False)
        return loss * n, hit, n

    def run(batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        s = h = n = 0.0
        for b in batches:
            a, c, k = one(b)
            s, h, n = s + float(a), h + float(c), n + float(k)
        loss = s / max(n, 1.0)
        return {"loss": loss, "token_accuracy": h / max(n, 1.0), "perplexity": perplexity(loss)}

    return run


@dataclass
class Generator:
    """Answers for prompts given as token ids; greedy when ``temperature`` is 0."""

    backbone: Any
    end_id: int
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        kh = quiet_keras_hub()
        self.model = causal_lm(self.backbone)
        sampler = (
            "greedy"
            if self.temperature <= 0
            else kh.samplers.RandomSampler(temperature=self.temperature, seed=self.seed)
        )
        self.model.compile(sampler=sampler)

    def __call__(self, prompts: Sequence[Sequence[int]], max_new: int = 64) -> list[list[int]]:
        if not prompts:
            return []
        longest = max(len(p) for p in prompts)
        length = longest + max_new
        ids = np.zeros((len(prompts), length), np.int32)
        mask = np.zeros((len(prompts), length), bool)
        for r, p in enumerate(prompts):
            ids[r, : len(p)], mask[r, : len(p)] = p, True
        out = self.model.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=[self.end_id])
        toks, keep = np.asarray(out["token_ids"]), np.asarray(out["padding_mask"])
        answers = []
        for r, p in enumerate(prompts):
            new = [int(t) for t in toks[r, len(p) :][keep[r, len(p) :]]]
            if self.end_id in new:
                new = new[: new.index(self.end_id)]
            answers.append(new)
        return answers


class Trainables:
    """The variables a phase trains, saved and loaded by path (an adapter file is a few MB where
    the whole model is 540): duck-types ``save_weights``/``load_weights`` for the checkpoint module."""

    def __init__(self, variables: Sequence[Any], attrs: Optional[dict[str, Any]] = None) -> None:
        self.variables, self.attrs = list(variables), dict(attrs or {})

    def save_weights(self, path: str | Path) -> None:
        import h5py

        with atomic_path(Path(path), suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as f:
                for k, v in self.attrs.items():
                    f.attrs[k] = v
                for v in self.variables:
                    f.create_dataset(v.path, data=np.asarray(v))

    def load_weights(self, path: str | Path) -> None:
        import h5py

        with h5py.File(path, "r") as f:
            missing = [v.path for v in self.variables if v.path not in f]
            if missing:
                raise ValueError(f"{path}: no weights for {missing[0]} ({len(missing)} missing)")
            for v in self.variables:
                v.assign(f[v.path][()])

    def values(self) -> list[np.ndarray]:
        return [np.array(v) for v in self.variables]

    def assign(self, values: Sequence[np.ndarray]) -> None:
        for v, a in zip(self.variables, values):
            v.assign(a)
