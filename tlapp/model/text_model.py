"""Text model assembly: raw strings -> tokenizer/packer -> transformer -> masked
pooling -> head. The tokenizer lives inside the model, so the exported
SavedModel takes raw strings (the keras-hub issue #784 trap: exporting only the
backbone leaves every deployment to re-implement tokenisation).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from tlapp.backbones.text import TextBackbone, build_text_backbone
from tlapp.base.errors import Cancelled
from tlapp.base.tfenv import quiet_import
from tlapp.config import Project
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder
from tlapp.data.pipelines import finished
from tlapp.model.head import Assembled, build_head

tf, keras = quiet_import()


@keras.saving.register_keras_serializable(package="tlapp")
class MaskedPool(keras.layers.Layer):
    """Mean / max over real tokens (padding masked out), or the [CLS] vector."""

    def __init__(self, mode: str = "avg", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, sequence, padding_mask):
        if self.mode == "cls":
            return sequence[:, 0, :]
        m = keras.ops.expand_dims(keras.ops.cast(padding_mask, sequence.dtype), -1)
        if self.mode == "max":
            return keras.ops.max(sequence + (1.0 - m) * -1e9, axis=1)
        return keras.ops.sum(sequence * m, axis=1) / keras.ops.maximum(keras.ops.sum(m, axis=1), 1e-9)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


def build_text_model(project: Project, n_classes: int, built: Optional[TextBackbone] = None) -> Assembled:
    """``model``: strings -> probabilities (tokenizer inside). ``token_model``: the same layers from token
    ids, saved as ``model.keras`` beside the tokenizer preset (a functional model that tokenises cannot be
    reloaded from ``.keras``: keras-hub sets the vocabulary after the graph is rebuilt)."""
    built = built or build_text_backbone(project.backbone)
    probe = built.preprocessor(tf.constant(["probe"]))
    # Variable length: the embedding cache trims trailing padding per batch (see text_embeddings).
    tok_in = {k: keras.Input(shape=(None,), dtype=v.dtype.name, name=k) for k, v in probe.items()}
    out = built.model(tok_in, training=False)
    seq = out["sequence_output"] if isinstance(out, dict) else out
    pooled = MaskedPool(project.head.pooling, name="pool")(seq, tok_in["padding_mask"])
    encoder = keras.Model(tok_in, pooled, name="encoder")
    text = keras.Input(shape=(), dtype="string", name="text")
    features = keras.Model(text, encoder(built.preprocessor(text)), name="features")
    head = build_head(project, int(pooled.shape[-1]), n_classes)
    model = keras.Model(text, head(features(text)), name=f"tlapp_{built.entry.name}")
    token_model = keras.Model(tok_in, head(encoder(tok_in)), name="token_model")
    return Assembled(model, features, head, built, int(pooled.shape[-1]), token_model, encoder)


def text_embeddings(
    asm: Assembled,
    examples: list[Example],
    batch_size: int,
    should_stop: Any = None,
    on_batch: Optional[Callable[[int, int], None]] = None,
) -> np.ndarray:
    """Pooled vectors for a frozen encoder, one pass, shortest texts batched together.

    Padding is at the end and masked out of attention and pooling, so cutting each
    batch to its longest real sequence gives the same vectors (to float rounding)
    for a fraction of the work: SMS-length texts padded to 64 tokens are mostly padding.
    """
    pre, encoder = asm.backbone.preprocessor, asm.encoder
    call = tf.function(lambda t: encoder(t, training=False), reduce_retracing=True)
    texts = [e.text or "" for e in examples]
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), asm.feature_dim), np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        tokens = pre(tf.constant([texts[i] for i in idx]))
        n = int(tf.reduce_max(tf.reduce_sum(tf.cast(tokens["padding_mask"], tf.int32), axis=1)))
        n = min(int(tokens["padding_mask"].shape[1]), max(8, -(-n // 8) * 8))  # multiples of 8: few traces
        out[idx] = call({k: v[:, :n] for k, v in tokens.items()}).numpy()
        if on_batch:
            on_batch(start // batch_size + 1, -(-len(order) // batch_size))
        if should_stop and should_stop():
            raise Cancelled("cancelled while computing embeddings")
    return out


def token_batches(
    asm: Assembled,
    examples: list[Example],
    encoder: LabelEncoder,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> Any:
    """Batches of (token dict, target) for training ``asm.token_model`` on a trainable encoder.

    Each epoch, examples are shuffled, grouped in pools of 50 batches, sorted by length inside a pool,
    batched, and the batches shuffled again; every batch is then cut to its longest real sequence.
    Same model, same loss (padding is masked), a fraction of the work for short texts."""
    pre = asm.backbone.preprocessor
    texts = np.array([e.text or "" for e in examples], dtype=object)
    lengths = np.array([len(t) for t in texts])
    targets = encoder.encode_all(examples)
    rng = np.random.default_rng(seed)

    def batches():
        idx = rng.permutation(len(texts)) if shuffle else np.argsort(lengths, kind="stable")
        pool = batch_size * 50
        chunks = []
        for start in range(0, len(idx), pool):
            part = idx[start : start + pool]
            part = part[np.argsort(lengths[part], kind="stable")]
            chunks += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        order = rng.permutation(len(chunks)) if shuffle else range(len(chunks))
        for c in order:
            yield texts[chunks[c]].astype(str), targets[chunks[c]]

    spec = (tf.TensorSpec((None,), tf.string), tf.TensorSpec((None,) + targets.shape[1:], tf.as_dtype(targets.dtype)))
    # Pools are whole multiples of batch_size, so there are exactly ceil(n / batch_size) batches;
    # saying so lets Keras validate without "ran out of data" warnings.
    n_batches = -(-len(texts) // batch_size)
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec).apply(
        tf.data.experimental.assert_cardinality(n_batches)
    )

    def tokenize(t, y):
        tokens = pre(t)
        n = tf.reduce_max(tf.reduce_sum(tf.cast(tokens["padding_mask"], tf.int32), axis=1))
        return {k: v[:, :n] for k, v in tokens.items()}, y

    return finished(ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
