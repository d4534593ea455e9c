"""Where a run's replicas live: TensorFlow's own ``tf.distribute`` strategies, chosen from
``train.strategy`` (and ``train.devices``), never a home-made data-parallel loop.

* ``auto``: MirroredStrategy over every visible GPU when there are several, else one device
  (``train.device``).
* ``mirrored``: MirroredStrategy over ``train.devices``, or every GPU, or every logical CPU
  (``TLAPP_CPU_DEVICES=N`` splits the CPU into N, for trying this on one machine).
* ``multi_worker``: MultiWorkerMirroredStrategy, configured by ``TF_CONFIG``. Only the chief
  writes the run folder; other workers train beside it and write nothing there.

``train.batch_size`` is the global batch: each step takes that many examples, split evenly
across replicas, so one set of hyper-parameters means the same thing on one device or eight.
The learning rate is not rescaled (see README, "Several devices").

:func:`plan` decides without creating anything (``tlapp doctor`` and the wizard show it);
:func:`make` creates the strategy, which must happen before TensorFlow runs its first op.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, ContextManager

from tlapp.base.errors import ConfigError, TrainingError
from tlapp.base.tfenv import logical_cpus, quiet_import, visible_gpus
from tlapp.training.devices import device_scope, devices


@dataclass(frozen=True)
class Plan:
    """What a strategy setting means on this machine, before anything is created."""

    kind: str  # "default", "mirrored" or "multi_worker"
    devices: list[str]
    why: str
    workers: int = 1
    worker: int = 0
    chief: bool = True

    def describe(self) -> str:
        return f"{self.kind} — {self.why}"


@dataclass
class Placement:
    """A created strategy, its plan, and the scope that training runs under."""

    plan: Plan
    strategy: Any
    replicas: int
    _scope: Any = field(default=None, repr=False)  # makes a fresh context each time (a run enters it twice)

    def scope(self) -> ContextManager[Any]:
        return self._scope() if self._scope is not None else contextlib.nullcontext()

    @property
    def distributed(self) -> bool:
        return self.plan.kind != "default"


def tf_config() -> dict[str, Any]:
    """``TF_CONFIG`` parsed and checked: ``cluster`` with workers, and this process's ``task``."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise ConfigError(
            "train.strategy: 'multi_worker' needs the TF_CONFIG environment variable (see README, 'Several machines')"
        )
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({e.msg} at character {e.pos})") from None
    cluster, task = (
        cfg.get("cluster") if isinstance(cfg, dict) else None,
        cfg.get("task") if isinstance(cfg, dict) else None,
    )
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ConfigError("TF_CONFIG: 'cluster' must list 'worker' addresses (host:port)")
    if (
        not isinstance(task, dict)
        or task.get("type") not in ("worker", "chief")
        or not isinstance(task.get("index"), int)
    ):
        raise ConfigError(f'TF_CONFIG: \'task\' must be {{"type": "worker", "index": N}}, got {task!r}')
    members = cluster.get(task["type"]) or []
    if not 0 <= task["index"] < len(members):
        raise ConfigError(
            f"TF_CONFIG: task index {task['index']} but cluster has {len(members)} {task['type']} address(es)"
        )
    return cfg


def plan(setting: str = "auto", devices: list[str] | None = None, device: str = "auto") -> Plan:
    """What ``train.strategy`` would do here (no strategy is created)."""
    gpus = [f"GPU:{i}" for i in range(len(visible_gpus()))]
    if setting == "multi_worker":
        cfg = tf_config()
        cluster, task = cfg["cluster"], cfg["task"]
        chiefs, workers = cluster.get("chief") or [], cluster.get("worker") or []
        n = len(chiefs) + len(workers)
        index = task["index"] + (len(chiefs) if task["type"] == "worker" else 0)
        chief = task["type"] == "chief" or (not chiefs and task["index"] == 0)
        local = gpus or ["CPU:0"]
        return Plan(
            "multi_worker",
            local,
            f"{n} workers from TF_CONFIG, this is {task['type']} {task['index']}"
            f"{' (the chief: it alone writes the run folder)' if chief else ''}",
            n,
            index,
            chief,
        )
    if setting == "mirrored":
        if devices:
            have = set(gpus) | {f"CPU:{i}" for i in range(logical_cpus())}
            missing = [d for d in devices if d not in have]
            if missing:
                raise ConfigError(
                    f"train.devices: {missing[0]} is not on this machine (it has {', '.join(sorted(have))})"
                )
            return Plan("mirrored", list(devices), f"replicas on {', '.join(devices)} (train.devices)")
        if gpus:
            return Plan("mirrored", gpus, f"replicas on all {len(gpus)} GPU(s)")
        cpus = [f"CPU:{i}" for i in range(logical_cpus())]
        return Plan(
            "mirrored",
            cpus,
            f"no GPU: replicas on {len(cpus)} logical CPU device(s)"
            + ("" if len(cpus) > 1 else " (TLAPP_CPU_DEVICES=N splits the CPU)"),
        )
    if setting == "auto" and len(gpus) > 1 and device == "auto":
        return Plan("mirrored", gpus, f"auto: {len(gpus)} GPUs, one replica each")
    where = gpus[:1] if gpus and device != "cpu" else ["CPU:0"]
    why = ("one GPU" if where[0].startswith("GPU") else "no GPU") if setting == "auto" else "train.strategy: default"
    return Plan("default", where, f"{why}: one device, no replication")


def survey() -> dict[str, Any]:
    """Devices and what each strategy setting would do here (``tlapp doctor``, the wizard)."""
    found = devices()
    found["cpu_devices"] = [f"CPU:{i}" for i in range(logical_cpus())]
    found["strategy_auto"] = plan("auto").describe()
    found["strategy_mirrored"] = plan("mirrored").describe()
    try:
        found["strategy_multi_worker"] = (
            plan("multi_worker").describe()
            if os.environ.get("TF_CONFIG")
            else "needs TF_CONFIG (README: 'Several machines')"
        )
    except ConfigError as e:  # doctor reports a broken TF_CONFIG instead of failing on it
        found["strategy_multi_worker"] = f"cannot run: {e}"
    return found


def make(
    setting: str = "auto", devices: list[str] | None = None, device: str = "auto", batch_size: int = 32
) -> Placement:
    """Create the strategy for a run (before TensorFlow's first op in this process)."""
    tf, _ = quiet_import()
    p = plan(setting, devices, device)
    if p.kind == "default":
        return Placement(p, tf.distribute.get_strategy(), 1, lambda: device_scope(device))
    if p.kind == "mirrored":
        names = [f"/{d.split(':')[0].lower()}:{d.split(':')[1]}" for d in p.devices]
        ops = None if any(d.startswith("GPU") for d in p.devices) else tf.distribute.ReductionToOneDevice()
        strategy = tf.distribute.MirroredStrategy(devices=names, cross_device_ops=ops)
    else:
        comm = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
        _scalar_means_across_workers()
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size < replicas:
        raise TrainingError(
            f"train.batch_size: {batch_size} is smaller than the {replicas} replicas of "
            f"train.strategy {setting!r}; it is the global batch, so use at least {replicas}"
        )
    return Placement(p, strategy, replicas, strategy.scope)


def fit_on_workers(model: Any, placement: Placement) -> None:
    """Let ``model.fit`` start under MultiWorkerMirroredStrategy (Keras 3.15, TensorFlow backend).

    Before its first step, ``fit`` learns the input shapes by averaging one batch of *input data*
    across replicas (``_maybe_symbolic_build``); with several workers that reduction fails in eager
    mode ("Attempt to convert a value (PerReplica ...) to a Tensor", keras-team/keras#20585). Every
    replica's batch has the same shapes, so this reads them from the first local one instead.
    Nothing else about ``fit`` changes.
    """
    if placement.plan.kind != "multi_worker":
        return
    tf, _ = quiet_import()
    strategy = model.distribute_strategy

    def local(v: Any) -> Any:
        return strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v

    def build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = build


def _scalar_means_across_workers() -> None:
    """Keras 3.15 (TensorFlow backend) averages each step's logs across workers with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar loss and metrics ("Invalid
    reduction dimension 0 for input with 0 dimensions"), so ``fit`` cannot run on two workers.
    Scalars are averaged without an axis; everything else goes to Keras unchanged. Installed once,
    only by a multi-worker run.
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "tlapp_fix", False):
        return
    tf, _ = quiet_import()

    def rank(v: Any, strategy: Any) -> int:
        first = strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
        return getattr(getattr(first, "shape", None), "rank", None) or 0

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if rank(v, strategy) == 0 else 0), values
            )
        return original(values, strategy, reduction)

    reduce_per_replica.tlapp_fix = True  # type: ignore[attr-defined]
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def agree(placement: Placement | None, value: float) -> float:
    """The mean of ``value`` over every replica of a multi-worker run (``value`` as is otherwise).

    Workers must take the same decisions (a recipe's fine-tune or not, which depends on the speed
    each one measured); one deciding alone would leave the others waiting in a collective forever.
    """
    if placement is None or placement.plan.kind != "multi_worker":
        return value
    tf, _ = quiet_import()
    strategy = placement.strategy

    @tf.function
    def mean() -> Any:
        per = strategy.run(lambda: tf.constant(value, tf.float32))
        return strategy.reduce("MEAN", per, axis=None)

    return float(mean())
