"""The project file: one pydantic model, loaded from and saved to YAML.

Everything a run needs is in here; the GUI edits it, the CLI runs it, and
every run directory keeps its fully resolved copy. Unknown keys are rejected
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tlapp.base.errors import ConfigError

SCHEMA_VERSION = 1
DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"
DEFAULT_TEXT_BACKBONE = "minilm_l6"
DEFAULT_LM_BACKBONE = "smollm2_135m_instruct"


MAX_LEARNING_RATE = 10.0  # above this no optimizer learns; refuse it before any work


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskType(str, Enum):
    image_classification = "image_classification"
    multi_label = "multi_label"
    regression = "regression"
    text_classification = "text_classification"
    text_multi_label = "text_multi_label"
    sft = "sft"  # supervised fine-tuning of a causal language model on prompt -> response pairs
    dpo = "dpo"  # preference tuning of a causal language model on prompt / chosen / rejected triples

    @property
    def is_text(self) -> bool:
        return self.value.startswith("text_")

    @property
    def is_generative(self) -> bool:
        """A language model (sft or dpo): pairs in, a chat model out; no head, no classes."""
        return self in (TaskType.sft, TaskType.dpo)

    @property
    def is_multi_label(self) -> bool:
        return self in (TaskType.multi_label, TaskType.text_multi_label)

    @property
    def is_single_label(self) -> bool:
        return self in (TaskType.image_classification, TaskType.text_classification)


class Preference(_Strict):
    """Direct Preference Optimization (Rafailov et al., 2023) settings of a task ``dpo``."""

    beta: float = Field(
        0.1, gt=0.0, le=10.0, description="How far the tuned model may move from the reference (smaller: further)."
    )
    loss: Literal["sigmoid", "ipo"] = Field(
        "sigmoid",
        description="sigmoid: the DPO paper's loss; ipo: Azar et al.'s squared loss on length-averaged log-probs, "
        "which does not push a margin without bound.",
    )
    sft_weight: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="Adds this times the chosen answer's next-token loss (RPO): keeps the chosen answers likely. "
        "1 by default: on SmolLM2 pure DPO (0) won every held-out pair yet its greedy answers drifted into "
        "rambling and lost general facts; with 1 they took the preferred style and kept them.",
    )


class Task(_Strict):
    type: TaskType = TaskType.image_classification
    preference: Preference = Field(default_factory=Preference, description="Task dpo only: the preference loss.")

    @model_validator(mode="after")
    def _preference_only_for_dpo(self) -> "Task":
        if self.preference != Preference() and self.type is not TaskType.dpo:
            raise ValueError(f"task.preference is for task dpo; task is {self.type.value!r}")
        return self


class Data(_Strict):
    """Where the examples come from and how they are split."""

    source: Literal["folder", "csv", "tfds", "pairs"] = "folder"
    path: Optional[str] = Field(
        None,
        description="Folder or CSV path, or for task sft a pairs file (.jsonl with "
        "prompt/response or messages, .csv/.tsv with prompt,response); relative to the "
        "project file.",
    )
    tfds_name: Optional[str] = Field(None, description="TFDS dataset name, e.g. 'tf_flowers'.")
    tfds_data_dir: Optional[str] = None
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = 42
    cache: Literal["auto", "memory", "disk", "none"] = Field(
        "auto",
        description="Decoded images: auto = in memory when they fit cache_budget, else streamed from "
        "disk each epoch; memory; disk (a cache file in the run folder); none.",
    )
    cache_budget: float = Field(
        0.25, gt=0.0, le=0.9, description="auto: the share of available memory decoded images may take."
    )
    max_per_class: Optional[int] = Field(None, ge=1, description="Use at most this many examples per class.")
    text_column: Optional[str] = Field(None, description="Text tasks: CSV column with the text (default 'text').")
    label_column: Optional[str] = Field(None, description="Text tasks: CSV column with the label (default 'label').")
    encoding: str = Field("auto", description="Text tasks: file encoding, or 'auto' (BOM, UTF-8, then latin-1).")
    exclude: list[str] = Field(
        default_factory=list,
        description="Examples to leave out (a label check's decisions), named relative to the data source: "
        "'class/file.jpg' in a folder, 'texts.csv#12' for a CSV row. The files themselves are never touched.",
    )
    relabel: dict[str, str] = Field(
        default_factory=dict, description="Examples whose label is changed, named as in exclude: {name: class}."
    )
    too_long: Literal["truncate", "drop"] = Field(
        "truncate",
        description="sft: a conversation longer than backbone.sequence_length tokens is truncated "
        "(oldest prompt tokens first) or dropped (and listed in the scan).",
    )

    @model_validator(mode="after")
    def _check(self) -> "Data":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction must be < 0.9, got {self.val_fraction} + {self.test_fraction}"
            )
        if self.source in ("folder", "csv", "pairs") and not self.path:
            raise ValueError(f"data.path is required when source={self.source!r}")
        if self.source == "tfds" and not self.tfds_name:
            raise ValueError("data.tfds_name is required when source='tfds'")
        return self


class FreezePlan(_Strict):
    """Which backbone layers train.

    modes: ``all`` (everything frozen), ``none`` (everything trains),
    ``top_blocks`` (the last ``blocks`` natural blocks train), ``up_to``
    (layers up to and including ``layer`` frozen), ``fraction`` (the top
    ``fraction`` of layers by depth train), ``patterns`` (layers whose name
    matches any regex in ``patterns`` train), ``lora`` (every weight frozen; low-rank
    adapters of ``rank`` on the ``targets`` layers train, scaled by ``alpha / rank``).
    BatchNormalization layers stay frozen in inference mode unless ``train_batchnorm`` is true.
    """

    mode: Literal["all", "none", "top_blocks", "up_to", "fraction", "patterns", "lora"] = "all"
    blocks: Optional[int] = Field(None, ge=0)
    layer: Optional[str] = None
    fraction: Optional[float] = Field(None, ge=0.0, le=1.0)
    patterns: list[str] = Field(default_factory=list)
    train_batchnorm: bool = False
    rank: int = Field(8, ge=1, le=256, description="lora: rank of each adapter.")
    alpha: Optional[float] = Field(None, gt=0, description="lora: scale numerator (default 2 x rank).")
    targets: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        description="lora: layer names to adapt, e.g. query, key, value, attention_output, "
        "feedforward_gate_dense, feedforward_intermediate_dense, "
        "feedforward_output_dense.",
    )

    @model_validator(mode="after")
    def _check(self) -> "FreezePlan":
        if self.mode == "lora" and not self.targets:
            raise ValueError("freeze.targets must name at least one layer when mode='lora'")
        need = {"top_blocks": "blocks", "up_to": "layer", "fraction": "fraction"}.get(self.mode)
        if need and getattr(self, need) is None:
            raise ValueError(f"freeze.{need} is required when mode={self.mode!r}")
        if self.mode == "patterns" and not self.patterns:
            raise ValueError("freeze.patterns must list at least one regex when mode='patterns'")
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"freeze.patterns: bad regex {p!r}: {e}") from None
        return self


class Backbone(_Strict):
    name: str = DEFAULT_IMAGE_BACKBONE
    weights: str = Field("imagenet", description="'imagenet', 'none', or a path to a weights file/folder.")
    image_size: Optional[int] = Field(None, ge=16, le=1024, description="Square input size; default per backbone.")
    sequence_length: Optional[int] = Field(
        None, ge=8, le=4096, description="Text: tokens per example (padded/truncated)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Extra constructor options, e.g. alpha.")
    choose_from: list[str] = Field(
        default_factory=list,
        description="Image tasks: backbones the run chooses among, before training, by the cross-validated "
        "score of the linear head on each one's embeddings (the leaderboard's measure; the winner's are "
        "reused). Empty: preset best proposes the embedded EfficientNet-Lite0/1/2 when `name` is the default, "
        "other presets train `name`; one name: no choice, `name` trains.",
    )

    @model_validator(mode="after")
    def _name_among_choices(self) -> "Backbone":
        if self.choose_from and self.name not in self.choose_from:
            raise ValueError(
                f"backbone.name {self.name!r} is not among backbone.choose_from {self.choose_from}: the run "
                "would never train it; add it to the list, or empty the list to train it alone"
            )
        if len(set(self.choose_from)) != len(self.choose_from):
            raise ValueError(f"backbone.choose_from lists a backbone twice: {self.choose_from}")
        return self


class Head(_Strict):
    pooling: Literal["avg", "max", "cls"] = Field("avg", description="avg/max (masked for text) or cls (text only).")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    hidden: list[int] = Field(default_factory=list, description="Hidden Dense layer widths.")
    activation: str = "relu"

    @field_validator("hidden")
    @classmethod
    def _pos(cls, v: list[int]) -> list[int]:
        for n in v:
            if n < 1:
                raise ValueError(f"hidden layer width must be >= 1, got {n}")
        return v


class Augment(_Strict):
    flip: bool = False
    rotation: float = Field(0.0, ge=0.0, le=0.5, description="Fraction of a full turn.")
    zoom: float = Field(0.0, ge=0.0, le=0.5)
    contrast: float = Field(0.0, ge=0.0, le=1.0)

    @property
    def enabled(self) -> bool:
        return bool(self.flip or self.rotation or self.zoom or self.contrast)


class EarlyStopping(_Strict):
    metric: str = "val_loss"
    patience: int = Field(3, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


class Phase(_Strict):
    name: str = "phase"
    epochs: int = Field(1, ge=0)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(
        1e-3,
        gt=0.0,
        le=MAX_LEARNING_RATE,
        description=f"Peak learning rate; at most {MAX_LEARNING_RATE:g} (useful values: 1e-5 to 1e-2).",
    )
    schedule: Literal["constant", "cosine", "step"] = "constant"
    step_every: int = Field(2, ge=1, description="Epochs between LR drops for schedule='step'.")
    step_factor: float = Field(0.5, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    freeze: FreezePlan = Field(default_factory=FreezePlan)
    augment: Augment = Field(default_factory=Augment)
    early_stopping: Optional[EarlyStopping] = None
    discriminative_lr: Optional[float] = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Per-block LR multiplier going down the network (e.g. 0.5 halves it each block).",
    )
    use_embedding_cache: bool = True
    solver: Literal["gradient", "exact"] = Field(
        "gradient",
        description="gradient: epochs of the optimizer; exact: a linear head on a frozen backbone "
        "solved to convergence (L-BFGS), its L2 strength chosen by cross-validation "
        "(first phase only; it has no epochs or learning rate).",
    )
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="Limit batches per epoch (tests, smoke runs).")


# What Train.phases defaulted to before presets proposed the plan (schema 1, until 2026-12).
_OLD_DEFAULT_PHASES = [
    Phase(name="head", epochs=5, learning_rate=1e-3, freeze=FreezePlan(mode="all")),
    Phase(
        name="finetune",
        epochs=3,
        learning_rate=1e-4,
        schedule="cosine",
        freeze=FreezePlan(mode="top_blocks", blocks=2),
        early_stopping=EarlyStopping(metric="val_loss", patience=2),
    ),
]


class Train(_Strict):
    """How to train. ``phases`` is the plan; an empty list lets the preset propose it from the data
    (``tlapp plan`` shows it, ``tlapp init`` writes it). Under a preset the first phase is the head and
    the rest is a fine-tune that runs when the preset decides it pays (``finetune``); ``custom`` runs
    ``phases`` exactly as written. A file that lists ``phases`` without a ``preset`` is ``custom``,
    so projects written before presets existed train as before.
    """

    preset: Literal["fast", "balanced", "best", "custom"] = Field(
        "balanced",
        description="fast: the head only, solved exactly; balanced: the head, then the fine-tune "
        "phases when they pay within the time budget; best: a longer fine-tune and a "
        "larger budget; custom: run `phases` exactly as written.",
    )
    finetune: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Presets: run the fine-tune phases (those after the head) when they pay (auto), always, or never.",
    )
    refit: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Presets: refit the head on train+validation for the final model. auto: when no "
        "fine-tune is kept (the honest estimate is then the cross-validation one); always: "
        "also after a kept fine-tune (one more pass of the fine-tuned backbone; the "
        "reported score is measured before that refit); never: the head sees train only.",
    )
    mirror: Literal["auto", "never"] = Field(
        "auto",
        description="Presets, images: embed mirrored copies as extra training rows for the head; "
        "auto keeps them when cross-validation says they help (never: for data where "
        "left and right differ, e.g. text in images).",
    )
    mirror_average: Literal["auto", "never"] = Field(
        "auto",
        description="Presets, images: predict the mean of the model's outputs for an image and for its "
        "mirror image (two passes of the backbone per prediction, baked into the exported model); auto "
        "does so when cross-validation says it scores better (it needs the mirrored copies: mirror: auto).",
    )
    time_budget_s: Optional[float] = Field(
        None,
        gt=0,
        description="Presets: the most seconds a fine-tune may take (default: from the preset "
        "and the measured speed of this machine).",
    )
    batch_size: int = Field(32, ge=1)
    phases: list[Phase] = Field(
        default_factory=list,
        description="The plan: the head, then fine-tune phases. Empty: the preset proposes them from the data.",
    )
    class_weights: Literal["auto", "none"] = "auto"
    mixed_precision: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="auto: float16 maths on GPUs with tensor cores (compute capability 7.0+), float32 "
        "elsewhere; true/false to force.",
    )
    seed: int = 1234
    deterministic: bool = Field(
        False,
        description="Bit-identical results for the same seed (TensorFlow op "
        "determinism; some GPU ops get slower, a few refuse to run).",
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|gpu(:\d+)?)$", description="auto (GPU when there is one), cpu, gpu or gpu:N."
    )
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = Field(
        "auto",
        description="auto: MirroredStrategy over all visible GPUs when there are several, one device "
        "otherwise; mirrored: over `devices` (or every GPU, or every logical CPU); "
        "multi_worker: MultiWorkerMirroredStrategy configured by TF_CONFIG. batch_size is "
        "the global batch, split across replicas.",
    )
    devices: Optional[list[str]] = Field(
        None, description="mirrored: the devices to replicate over, e.g. [GPU:0, GPU:1] (default: all GPUs)."
    )
    keep_best: bool = True

    @model_validator(mode="before")
    @classmethod
    def _phases_mean_custom(cls, data: Any) -> Any:
        if isinstance(data, dict) and "phases" in data and "preset" not in data:
            return {**data, "preset": "custom"}
        return data

    @field_validator("devices")
    @classmethod
    def _device_names(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is None:
            return v
        out = []
        for d in v:
            m = re.fullmatch(r"(?:/?device:)?(cpu|gpu):(\d+)", str(d).strip(), re.IGNORECASE)
            if not m:
                raise ValueError(f"train.devices: {d!r} is not a device name like GPU:0 or CPU:1")
            out.append(f"{m.group(1).upper()}:{m.group(2)}")
        if not out:
            raise ValueError("train.devices: an empty list; leave it out to use every GPU")
        return out

    @model_validator(mode="after")
    def _custom_has_phases(self) -> "Train":
        if self.preset == "custom" and not self.phases:
            raise ValueError("train.phases must contain at least one phase when preset is 'custom'")
        if self.preset != "custom" and self.phases == _OLD_DEFAULT_PHASES:
            # Files saved before the plan was the preset's (every default spelled out) carry these two
            # phases, which a preset then ignored: they mean "the preset proposes", as they always did.
            object.__setattr__(self, "phases", [])
        return self


class Export(_Strict):
    formats: list[Literal["savedmodel", "keras", "h5", "tflite", "tflite_fp16", "tflite_int8", "onnx", "gguf"]] = Field(
        default_factory=lambda: ["savedmodel", "keras"],
        description="savedmodel, keras, h5, and for image models tflite (float32), tflite_fp16, tflite_int8 "
        "(full-integer, calibrated on your training images) and onnx (needs tlapp[onnx]). A language "
        "model (task sft) always exports its merged folder and adapter; gguf adds an f16 GGUF for "
        "llama.cpp.",
    )
    verify: bool = True
    verify_samples: int = Field(8, ge=1)


class Project(_Strict):
    """A whole tlapp project. ``schema_version`` lets old files be migrated."""

    schema_version: int = SCHEMA_VERSION
    name: str = "project"
    task: Task = Field(default_factory=Task)
    data: Data
    backbone: Backbone = Field(default_factory=Backbone)
    head: Head = Field(default_factory=Head)
    train: Train = Field(default_factory=Train)
    export: Export = Field(default_factory=Export)

    @model_validator(mode="after")
    def _data_fits_task(self) -> "Project":
        lm, pairs, t = self.task.type.is_generative, self.data.source == "pairs", self.task.type.value
        if lm and not pairs:
            what = "prompt/chosen/rejected triples" if t == "dpo" else "prompt/response pairs"
            raise ValueError(f"task {t} reads {what}: set data.source to 'pairs' (got {self.data.source!r})")
        if pairs and not lm:
            raise ValueError(f"data.source 'pairs' is for tasks sft and dpo; task is {t!r}")
        return self

    @model_validator(mode="after")
    def _pooling_fits_task(self) -> "Project":
        if self.head.pooling == "cls" and not self.task.type.is_text:
            raise ValueError(
                f"head.pooling 'cls' is for text tasks (a [CLS] token); task is {self.task.type.value!r}: "
                "use 'avg' or 'max'"
            )
        return self

    @model_validator(mode="after")
    def _choice_is_for_images(self) -> "Project":
        b = self.backbone
        if len(b.choose_from) < 2:
            return self
        if self.task.type.is_text or self.task.type.is_generative:
            raise ValueError(
                f"backbone.choose_from is for image tasks; task is {self.task.type.value!r}: empty it "
                f"(compare text backbones with `tlapp compare`)"
            )
        if b.weights != "imagenet":
            raise ValueError(
                f"backbone.choose_from compares pretrained backbones; backbone.weights is {b.weights!r}: set "
                "it to 'imagenet' or keep one name"
            )
        if self.train.strategy == "multi_worker":
            raise ValueError(
                "backbone.choose_from: every worker of a multi_worker run must train the same backbone; choose "
                "it first (`tlapp compare`) and keep one name"
            )
        return self

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {v}; this tlapp reads version {SCHEMA_VERSION}")
        return v


def _format_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``file: field.path: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        got_s = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            msg, got_s = "unknown key", ""
        lines.append(f"{source}: {loc}: {msg}{got_s}")
    return "; ".join(lines)


def project_from_dict(d: dict[str, Any], source: str = "project") -> Project:
    try:
        return Project.model_validate(d)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


MAX_PROJECT_BYTES = 1_000_000  # a project file is a few hundred bytes; anything near this is not one


class _ProjectLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a project never needs them, and an
    alias "billion laughs" would expand into gigabytes when the config is written back."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML API
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                None, None, "aliases (*name) are not allowed in a project file", event.start_mark
            )
        return super().compose_node(parent, index)


def load_project(path: str | Path) -> Project:
    """Read and validate a YAML project file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: project file not found")
    size = path.stat().st_size
    if size > MAX_PROJECT_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes is far too large for a project file (limit "
            f"{MAX_PROJECT_BYTES:,}); is it the right file?"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is fine
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        d = yaml.load(text, Loader=_ProjectLoader)  # noqa: S506 - a SafeLoader without aliases
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        hint = " (YAML indents with spaces, not tabs)" if "'\\t'" in str(e.problem) else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {e.problem}{hint}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
    return project_from_dict(d, str(path))


def project_to_yaml(project: Project, exclude_defaults: bool = False, compact_phases: bool = True) -> str:
    d = project.model_dump(mode="json", exclude_defaults=exclude_defaults)
    d["schema_version"] = project.schema_version
    if project.task.type is not TaskType.dpo:
        d.get("task", {}).pop("preference", None)  # settings of another task: not part of this project's file
    if compact_phases and d.get("train", {}).get("phases"):
        # Each phase with only what differs from a phase's defaults: `{name: head, solver: exact}` reads as
        # what it is, where every default spelled out would look like settings that apply.
        d["train"]["phases"] = [
            {"name": ph.name, **ph.model_dump(mode="json", exclude_defaults=True)} for ph in project.train.phases
        ]
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)


def save_project(project: Project, path: str | Path) -> None:
    """Write atomically, so a crash never leaves a half-written project."""
    from tlapp.base.fsutil import atomic_write_text

    atomic_write_text(Path(path), project_to_yaml(project))


def _coerce(value: str) -> Any:
    return yaml.safe_load(value) if value != "" else ""


def apply_overrides(project: Project, overrides: list[str]) -> Project:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML).

    List items are addressed by index: ``train.phases.0.epochs=2``.
    """
    d = project.model_dump(mode="json")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = d
        for i, p in enumerate(parts[:-1]):
            try:
                node = node[int(p)] if isinstance(node, list) else node[p]
            except (KeyError, IndexError, ValueError):
                empty = (
                    " (train.phases is empty: the preset proposes the phases; `tlapp plan` shows them)"
                    if parts[:2] == ["train", "phases"] and not d["train"]["phases"]
                    else ""
                )
                raise ConfigError(f"--set {key}: no such field {'.'.join(parts[: i + 1])!r}{empty}") from None
        last = parts[-1]
        if isinstance(node, list):
            try:
                node[int(last)] = _coerce(raw)
            except (ValueError, IndexError):
                raise ConfigError(f"--set {key}: bad list index {last!r}") from None
        elif isinstance(node, dict):
            node[last] = _coerce(raw)
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])!r} is not a section")
    return project_from_dict(d, "--set")


def resolve_data_path(project: Project, project_file: Optional[Path]) -> Optional[Path]:
    """Data paths in a project file are relative to that file."""
    if not project.data.path:
        return None
    p = Path(project.data.path).expanduser()
    if not p.is_absolute() and project_file is not None:
        p = (project_file.parent / p).resolve()
    return p
