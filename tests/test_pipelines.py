"""Every input pipeline that tlapp trains or predicts from runs with the same options."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from tlapp.config import TaskType
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder
from tlapp.data.pipelines import array_batches, image_dataset, text_dataset
from tlapp.data.scan_images import scan
from tlapp.model.text_model import token_batches


def _tokens(texts):
    """A stand-in tokenizer (TF ops only): one token per character, up to 8, padded with zeros."""
    chars = tf.strings.unicode_decode(texts, "UTF-8").to_tensor(shape=[None, 8])
    return {"token_ids": chars, "padding_mask": chars > 0}


def test_no_pipeline_autotunes_so_no_fit_ends_in_a_pause(color_data):
    """Deleting an autotuned iterator waits out its tuner's sleep (up to 60 s): the recipe benchmark's
    fine-tunes ended in 16-58 s pauses. Each builder must switch it off, the token batches of a text
    fine-tune included (their generator-fed dataset is built apart from the others)."""
    report = scan(color_data)
    images = report.examples[:6]
    image_enc = LabelEncoder(TaskType.image_classification, report.classes)
    texts = [Example(f"t.csv#{i}", "a" if i % 2 else "b", "word " * (i + 1)) for i in range(6)]
    text_enc = LabelEncoder(TaskType.text_classification, ["a", "b"])
    asm = SimpleNamespace(backbone=SimpleNamespace(preprocessor=_tokens))
    built = {
        "image_dataset": image_dataset(images, image_enc, 32, 4, shuffle=True, cache="none"),
        "text_dataset": text_dataset(texts, text_enc, 4, shuffle=True),
        "array_batches": array_batches(np.zeros((6, 3), "float32"), np.zeros(6), 4, shuffle=True),
        "token_batches": token_batches(asm, texts, text_enc, 4, shuffle=True),
    }
    for name, ds in built.items():
        assert ds.options().autotune.enabled is False, name
        assert len(list(ds.take(1))) == 1, name  # and each still reads
