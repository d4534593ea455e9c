"""Which export formats a model can take: one rule for ``tlapp export``, the wizard's Export step and the
project file's checks. A text model's tokenizer has no TFLite or ONNX ops; a language model exports its
merged folder and adapter (and GGUF on request) instead."""

from __future__ import annotations

from tlapp.config import TaskType

CLASSIFIER_FORMATS = ("savedmodel", "keras", "h5", "tflite", "tflite_fp16", "tflite_int8", "onnx")
IMAGE_ONLY = ("tflite", "tflite_fp16", "tflite_int8", "onnx")


def formats_for(task: TaskType) -> tuple[str, ...]:
    """The export formats ``task``'s model can be written in.

    Example::

        formats_for(TaskType.text_classification)  # ('savedmodel', 'keras', 'h5')
    """
    if task.is_generative:
        return ("gguf",)
    return tuple(f for f in CLASSIFIER_FORMATS if not (task.is_text and f in IMAGE_ONLY))
