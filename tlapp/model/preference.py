"""Direct Preference Optimization on token ids (issue #24): log-probs, loss, step, evaluation.

A batch (:func:`tlapp.model.triples.preference_batches`) holds B triples as ``[B, 2, L]``; the
model sees them as ``2B`` sequences in one forward pass. A sequence's log-probability is the sum of
its answer tokens' log-probabilities (the prompt weighs 0, as in SFT).

The reference model is the starting model itself: its log-probabilities of every chosen and rejected
answer are computed once, before any adapter exists (LoRA's B matrices start at zero, so the policy
equals the reference at step 0), and travel with each batch in ``reference``. There is no second
copy of the model in memory.

Losses, with ``h = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))``:
- ``sigmoid`` (Rafailov et al., 2023): ``-log sigmoid(beta * h)``; ``log 2`` at step 0;
- ``ipo`` (Azar et al., 2023): ``(h - 1 / (2 beta))^2`` on length-averaged log-probs;
- plus ``sft_weight`` times the chosen answers' mean next-token loss (RPO, Pang et al., 2024).

Rewards are TRL's: ``beta * (log pi - log ref)`` of each answer; reward accuracy is the share of pairs
whose chosen reward beats the rejected one, the margin their mean difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tlapp.base.tfenv import quiet_import
from tlapp.model.triples import preference_hits

tf, keras = quiet_import()

METRICS = ("loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward")


_SPEC = {
    "token_ids": tf.TensorSpec([None, 2, None], tf.int32),
    "padding_mask": tf.TensorSpec([None, 2, None], tf.bool),
    "labels": tf.TensorSpec([None, 2, None], tf.int32),
    "sample_weight": tf.TensorSpec([None, 2, None], tf.float32),
    "reference": tf.TensorSpec([None, 2], tf.float32),
    "tokens": tf.TensorSpec([None, 2], tf.float32),
    "line": tf.TensorSpec([None], tf.int32),
}


def _logps(model: Any, batch: dict[str, Any], training: bool) -> tuple[Any, Any]:
    """([B, 2] summed answer log-probs, [B, 2, L] per-token cross-entropy times weight) in one pass."""
    length = tf.shape(batch["token_ids"])[2]
    flat = lambda x: tf.reshape(x, [-1, length])  # noqa: E731
    logits = model(
        {"token_ids": flat(batch["token_ids"]), "padding_mask": flat(batch["padding_mask"])}, training=training
    )
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=flat(batch["labels"]), logits=tf.cast(logits, tf.float32)
    )
    wce = tf.reshape(ce * flat(batch["sample_weight"]), tf.shape(batch["sample_weight"]))
    return -tf.reduce_sum(wce, -1), wce


@dataclass(frozen=True)
class Loss:
    beta: float = 0.1
    kind: str = "sigmoid"  # or "ipo"
    sft_weight: float = 1.0

    def sums(self, model: Any, batch: dict[str, Any], training: bool, pairs: Any, tokens: Any) -> dict[str, Any]:
        """The loss over ``pairs`` pairs (a replica's share of the global batch) and the metrics' sums."""
        logp, wce = _logps(model, batch, training)
        ref = batch["reference"]
        if self.kind == "ipo":  # IPO compares length-averaged log-probs
            n = tf.maximum(batch["tokens"], 1.0)
            logp, ref = logp / n, ref / n
        ratio = logp - ref  # [B, 2]: log pi - log ref of chosen, rejected
        h = ratio[:, 0] - ratio[:, 1]
        if self.kind == "ipo":
            per = tf.square(h - 1.0 / (2.0 * self.beta))
        else:
            per = -tf.math.log_sigmoid(self.beta * h)
        # A pair without answer tokens is a replica's filler row (see lm.replica_rows): it counts nowhere.
        real = tf.cast(tf.reduce_sum(batch["sample_weight"], [1, 2]) > 0, tf.float32)
        loss = tf.reduce_sum(per * real) / pairs
        if self.sft_weight > 0:
            loss += self.sft_weight * tf.reduce_sum(wce[:, 0, :]) / tokens
        reward = self.beta * ratio
        return {
            "objective": loss,
            "loss": tf.reduce_sum(per * real),
            "reward_accuracy": tf.reduce_sum(tf.cast(reward[:, 0] > reward[:, 1], tf.float32) * real),
            "reward_margin": tf.reduce_sum((reward[:, 0] - reward[:, 1]) * real),
            "chosen_reward": tf.reduce_sum(reward[:, 0] * real),
            "rejected_reward": tf.reduce_sum(reward[:, 1] * real),
        }


def _totals(batch: dict[str, np.ndarray]) -> tuple[np.float32, np.float32]:
    """(pairs, chosen answer tokens) of a whole global batch: what each replica's share is divided by."""
    return np.float32(len(batch["line"])), np.float32(max(float(batch["sample_weight"][:, 0].sum()), 1.0))


def _means(sums: dict[str, Any], pairs: float) -> dict[str, float]:
    return {k: float(sums[k]) / max(pairs, 1.0) for k in METRICS}


def train_step(
    model: Any, optimizer: Any, loss: Loss, strategy: Any = None
) -> Callable[[dict[str, np.ndarray]], tuple[dict[str, float], float]]:
    """One optimizer step on a preference batch: (mean metrics, pairs). With several replicas each takes
    every R-th pair and divides by the global batch's pairs and tokens, so the summed gradients are the
    one-device step's."""
    from tlapp.model.lm import replica_rows

    variables = model.trainable_variables
    optimizer.build(variables)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1

    def one(batch: dict[str, Any], pairs: Any, tokens: Any) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            out = loss.sums(model, batch, True, pairs, tokens)
        optimizer.apply(tape.gradient(out["objective"], variables), variables)
        return out

    if replicas == 1:  # one trace for every bucket length (a SmolLM2 trace costs ~25 s on 2 CPUs)
        scalar = tf.TensorSpec([], tf.float32)
        step = tf.function(one, input_signature=[_SPEC, scalar, scalar], reduce_retracing=True)

        def run(batch: dict[str, np.ndarray]) -> tuple[dict[str, float], float]:
            pairs, tokens = _totals(batch)
            return _means(step(batch, pairs, tokens), float(pairs)), float(pairs)

        return run

    @tf.function(reduce_retracing=True)
    def dist_step(batch: Any, pairs: Any, tokens: Any) -> dict[str, Any]:
        out = strategy.run(one, args=(batch, pairs, tokens))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, None) for k, v in out.items()}

    def run_dist(batch: dict[str, np.ndarray]) -> tuple[dict[str, float], float]:
        pairs, tokens = _totals(batch)
        dist = strategy.experimental_distribute_values_from_function(
            lambda ctx: replica_rows(batch, ctx.replica_id_in_sync_group, replicas)
        )
        return _means(dist_step(dist, tf.constant(pairs), tf.constant(tokens)), float(pairs)), float(pairs)

    return run_dist


def log_probs(model: Any) -> Callable[[list[dict[str, np.ndarray]]], dict[int, list[float]]]:
    """Summed answer log-probs of chosen and rejected by line, over batches (the reference pass)."""

    @tf.function(input_signature=[_SPEC], reduce_retracing=True)
    def one(batch: dict[str, Any]) -> Any:
        return _logps(model, batch, False)[0]

    def run(batches: list[dict[str, np.ndarray]]) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        for b in batches:
            for line, lp in zip(b["line"], np.asarray(one(b))):
                out[int(line)] = [float(lp[0]), float(lp[1])]
        return out

    return run


def evaluator(model: Any, loss: Loss) -> Callable[[list[dict[str, np.ndarray]]], dict[str, float]]:
    """Mean loss and rewards over held-out batches, and ``preference_accuracy``: the share of pairs whose
    chosen answer the model finds likelier per token than the rejected one (the model's own preference,
    fair to answers of different lengths; for the reference model see :func:`preference_accuracy`)."""

    @tf.function(input_signature=[_SPEC], reduce_retracing=True)
    def one(batch: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        pairs = tf.cast(tf.shape(batch["line"])[0], tf.float32)
        tokens = tf.maximum(tf.reduce_sum(batch["sample_weight"][:, 0]), 1.0)
        return loss.sums(model, batch, False, pairs, tokens), _logps(model, batch, False)[0]

    def run(batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
        sums = dict.fromkeys(METRICS, 0.0)
        prefer = n = 0.0
        for b in batches:
            s, lp = one(b)
            for k in METRICS:
                sums[k] += float(s[k])
            prefer += preference_hits(np.asarray(lp), b["tokens"])
            n += len(b["line"])
        out = {k: v / max(n, 1.0) for k, v in sums.items()}
        out["preference_accuracy"] = prefer / max(n, 1.0)
        return out

    return run
