"""Step 3 — Layers: the backbone's blocks and layers with trainable checkboxes,
quick freeze plans, live parameter counts and a memory estimate.

It edits the freeze plan of the fine-tune phase (:func:`tlapp.presets.with_finetune_freeze`):
the ticks start as the preset's proposal, and what is ticked is what the fine-tune trains.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlapp.backbones.build import build_any_backbone
from tlapp.backbones.freeze import LayerInfo, effective_mask, layer_table, lora_params, lora_shapes, middle_blocks
from tlapp.base.errors import ConfigError
from tlapp.config import Backbone, FreezePlan
from tlapp.presets import finetune_freeze, phases_of, with_finetune_freeze
from tlapp.training.plan import trains_text

from ..empty import EmptyState
from ..widgets import show_error
from ..workers import FunctionWorker
from .base import WizardPage

LORA_LABEL = {
    "attention_output": "attention out",
    "feedforward_gate_dense": "ffn gate",
    "feedforward_intermediate_dense": "ffn up",
    "feedforward_output_dense": "ffn down",
}
LORA_TIP = {
    "query": "attention queries",
    "key": "attention keys",
    "value": "attention values",
    "attention_output": "attention output projection",
    "feedforward_gate_dense": "feed-forward gate",
    "feedforward_intermediate_dense": "feed-forward up projection",
    "feedforward_output_dense": "feed-forward down projection",
}


def _structure(cfg: Backbone) -> tuple[list[LayerInfo], dict[str, list[tuple[int, ...]]]]:
    """The backbone's layer table, and for a language model the kernel shapes LoRA can adapt (built without
    weights: the structure is all this step needs)."""
    built = build_any_backbone(cfg.model_copy(update={"weights": "none"}))
    shapes = lora_shapes(built.model) if built.entry.modality == "lm" else {}
    return layer_table(built.model, built.entry), shapes


class LayersPage(WizardPage):
    title = "Layers"
    intro = (
        "Choose which backbone layers a fine-tune may change. Frozen layers keep their pretrained "
        "features; training the top blocks adapts them to your data but needs more examples and time. "
        "The numbers below show how many parameters would train and the memory that takes."
    )

    intro_lm = (
        "Choose what fine-tuning may change. LoRA (the default) freezes all 135 M weights and trains small "
        "adapters beside the attention layers: about 1% of the parameters, and the model keeps what it "
        "knew. Or untick it and train the top blocks in full. The count below updates as you choose."
    )

    def __init__(self, state) -> None:
        super().__init__(state)
        self.table: list[Any] = []
        self.shapes: dict[str, list[tuple[int, ...]]] = {}
        self.key: Optional[tuple] = None
        self.worker: Optional[FunctionWorker] = None
        self._updating = False
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Block / layer", "Type", "Params", "Trainable"])
        self.tree.setColumnWidth(0, 300)
        self.tree.setToolTip("Tick a layer to train it in the fine-tune phase; a block's box ticks all its layers")
        self.tree.itemChanged.connect(self._item_changed)
        self.tree_box = EmptyState(
            self.tree,
            "The backbone's blocks and layers appear here once it is built "
            "(a few seconds after you choose it on the Backbone step).",
        )
        self.recipe_note = QLabel()
        self.recipe_note.setWordWrap(True)
        self.recipe_note.setObjectName("recipeNote")
        self.recipe_note.setStyleSheet(
            "QLabel#recipeNote { border: 1px solid palette(mid); border-radius: 6px; padding: 6px; }"
        )
        self.blocks = QSlider(Qt.Orientation.Horizontal)
        self.blocks.setToolTip(
            "Train the top N blocks (counted from the output), keep the rest frozen. "
            "0 = head only. Default 2: adapts the most task-specific features."
        )
        self.blocks_label = QLabel()
        self.blocks.valueChanged.connect(
            lambda v: self.set_plan(FreezePlan(mode="top_blocks", blocks=v, train_batchnorm=self._bn()))
        )
        self.fraction = QDoubleSpinBox()
        self.fraction.setRange(0, 1)
        self.fraction.setSingleStep(0.05)
        self.fraction.setToolTip("Share of the backbone's layers, from the top, that 'Train top fraction' unfreezes")
        self.regex = QLineEdit()
        self.regex.setPlaceholderText("regex of layers to train, e.g. ^block7|^top")
        self.regex.setToolTip("A regular expression over layer names; 'Train matching' unfreezes those layers")
        self.keep_bn = QCheckBox("Keep BatchNorm frozen (recommended)")
        self.keep_bn.setToolTip(
            "BatchNorm statistics drift on small batches of new data and can ruin a "
            "fine-tune; keeping them frozen is the safe default"
        )
        self.keep_bn.setChecked(True)
        self.keep_bn.toggled.connect(
            lambda: self.set_plan(self.plan.model_copy(update={"train_batchnorm": self._bn()}))
        )
        freeze_all = QPushButton("Freeze all")
        freeze_all.setToolTip("Train only the head: fastest, and best for very small data sets")
        freeze_all.clicked.connect(lambda: self.set_plan(FreezePlan(mode="all")))
        frac_btn = QPushButton("Train top fraction")
        frac_btn.setToolTip("Unfreeze the top share of layers given at the left")
        frac_btn.clicked.connect(
            lambda: self.set_plan(
                FreezePlan(mode="fraction", fraction=self.fraction.value(), train_batchnorm=self._bn())
            )
        )
        rx_btn = QPushButton("Train matching")
        rx_btn.setToolTip("Unfreeze the layers whose names match the expression at the left")
        rx_btn.clicked.connect(self._regex_plan)
        self.lora = QCheckBox("LoRA adapters (recommended)")
        self.lora.setToolTip(
            "Freeze every weight and train small low-rank adapters beside the chosen layers: "
            "about 1% of the parameters, a few MB to save, and the model keeps what it knew. "
            "Unticked: the top blocks (slider above) train in full."
        )
        self.rank = QSpinBox()
        self.rank.setRange(1, 256)
        self.rank.setPrefix("rank ")
        self.rank.setToolTip(
            "Adapter rank: more can learn more, and costs more. 8 is the usual default; 4 is "
            "enough for a few facts, 16-64 for a new style over thousands of pairs."
        )
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1024)
        self.alpha.setSpecialValueText("alpha: 2 × rank")
        self.alpha.setPrefix("alpha ")
        self.alpha.setToolTip("The adapter's output is scaled by alpha / rank. Default (0 here): 2 × rank.")
        self.targets: dict[str, QCheckBox] = {}
        self.targets_row = QHBoxLayout()
        self.lora_box = QWidget()
        lb = QVBoxLayout(self.lora_box)
        lb.setContentsMargins(0, 0, 0, 0)
        r0 = QHBoxLayout()
        r0.addWidget(self.lora)
        r0.addWidget(self.rank)
        r0.addWidget(self.alpha)
        r0.addStretch(1)
        lb.addLayout(r0)
        lb.addLayout(self.targets_row)
        for w in (self.lora, self.rank, self.alpha):
            (w.toggled if w is self.lora else w.valueChanged).connect(self._lora_changed)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        self.status = QLabel()
        r1 = QHBoxLayout()
        r1.addWidget(freeze_all)
        r1.addWidget(QLabel("Unfreeze top blocks:"))
        r1.addWidget(self.blocks, 1)
        r1.addWidget(self.blocks_label)
        self.freeze_all = freeze_all
        self.image_plans = QWidget()
        r2 = QHBoxLayout(self.image_plans)
        r2.setContentsMargins(0, 0, 0, 0)
        r2.addWidget(self.fraction)
        r2.addWidget(frac_btn)
        r2.addWidget(self.regex, 1)
        r2.addWidget(rx_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.recipe_note)
        lay.addWidget(self.status)
        lay.addWidget(self.lora_box)
        lay.addLayout(r1)
        lay.addWidget(self.image_plans)
        lay.addWidget(self.keep_bn)
        lay.addWidget(self.tree_box, 1)
        lay.addWidget(self.counts)
        self.plan = FreezePlan(mode="top_blocks", blocks=2)

    def _bn(self) -> bool:
        return not self.keep_bn.isChecked()

    def is_lm(self) -> bool:
        return self.state.project.task.type.is_generative

    def refresh(self) -> None:
        p = self.state.project
        lm = self.is_lm()
        self.recipe_note.setText(self._note())
        for w in (self.image_plans, self.keep_bn, self.freeze_all):
            w.setVisible(not lm)
        self.lora_box.setVisible(lm)
        self.plan = finetune_freeze(p)
        self._set_lora_controls()
        self.keep_bn.setChecked(not self.plan.train_batchnorm)
        key = (
            p.backbone.name,
            p.backbone.image_size,
            p.backbone.sequence_length,
            tuple(sorted(p.backbone.options.items())),
        )
        if key != self.key:
            self.key = key
            self.load_structure()
        else:
            self.render()

    def _note(self) -> str:
        """Whose plan these ticks are, and who decides whether it runs."""
        p = self.state.project
        try:
            phases = phases_of(p, self.state.n_train())
        except ConfigError as e:
            return f"<b>This plan cannot run:</b> {e}"
        last = phases[-1]
        if p.train.preset == "custom":
            return (
                f"These ticks set what phase '{last.name}' trains ({trains_text(last)}); the phases run exactly "
                "as written (Training step, Advanced)."
            )
        if self.is_lm():
            return f"The language model trains {trains_text(last)}. Change it here; this is what trains."
        if len(phases) == 1:
            return (
                f"The <b>{p.train.preset.capitalize()}</b> plan trains the head only, solved exactly. Tick layers "
                "to add a fine-tune that trains them; the Training step shows whether the preset runs it."
            )
        return (
            f"The <b>{p.train.preset.capitalize()}</b> plan: the head, solved exactly, then a fine-tune of "
            f"{trains_text(last)}. Your ticks are what the fine-tune trains; the preset decides whether it runs "
            "(shown before Start on the Training step, with <i>Fine-tune anyway</i>)."
        )

    def load_structure(self) -> None:
        b = self.state.project.backbone
        self.status.setText(f"Building {b.name} to read its layers…")
        self.tree.clear()
        self.table = []
        self.tree_box.show_empty(f"Building {b.name} to read its layers… (a few seconds)")
        self.counts.setText("")
        self.worker = FunctionWorker(_structure, b)
        self.worker.done.connect(self._loaded)
        self.worker.failed.connect(
            lambda m, d: (
                self.status.setText(m),
                show_error(self, m, d),
                self.tree_box.show_empty(f"Could not build the backbone: {m}"),
            )
        )
        self.worker.start()

    def _set_lora_controls(self) -> None:
        for w in (self.lora, self.rank, self.alpha):
            w.blockSignals(True)
        self.lora.setChecked(self.plan.mode == "lora")
        self.rank.setValue(self.plan.rank)
        self.alpha.setValue(self.plan.alpha or 0.0)
        for name, box in self.targets.items():
            box.blockSignals(True)
            box.setChecked(name in self.plan.targets)
            box.blockSignals(False)
        for w in (self.lora, self.rank, self.alpha):
            w.blockSignals(False)

    def _fill_targets(self) -> None:
        while self.targets_row.count():
            item = self.targets_row.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.targets = {}
        self.targets_row.addWidget(QLabel("Adapt:"))
        for name in self.shapes:
            box = QCheckBox(LORA_LABEL.get(name, name))
            box.setToolTip(
                f"{name} — {LORA_TIP.get(name, name)}: {len(self.shapes[name])} layer(s), kernel "
                f"{' x '.join(map(str, self.shapes[name][0]))}"
            )
            box.setChecked(name in self.plan.targets)
            box.toggled.connect(self._lora_changed)
            self.targets[name] = box
            self.targets_row.addWidget(box)
        self.targets_row.addStretch(1)

    def _lora_changed(self) -> None:
        if not self.lora.isChecked():
            if self.plan.mode == "lora":
                self.set_plan(FreezePlan(mode="top_blocks", blocks=max(self.blocks.value(), 1)))
            return
        targets = [n for n, b in self.targets.items() if b.isChecked()] or ["query", "value"]
        self.set_plan(
            FreezePlan(mode="lora", rank=self.rank.value(), alpha=self.alpha.value() or None, targets=targets)
        )

    def _loaded(self, result: tuple[list[Any], dict]) -> None:
        table, self.shapes = result
        self.table = table
        self._fill_targets()
        middle = middle_blocks(table)
        self.blocks.blockSignals(True)
        self.blocks.setRange(0, len(middle))
        self.blocks.setValue(self.plan.blocks or 0)
        self.blocks.blockSignals(False)
        self.status.setText(
            f"{self.state.project.backbone.name}: {len(table)} layers in {len(middle)} blocks. "
            + (
                "Train small LoRA adapters (recommended), or untick it and train the top blocks in full with the "
                "slider."
                if self.is_lm()
                else "Tick layers to train them in a fine-tune phase, or use the quick plans below."
            )
        )
        self.tree_box.show_content()
        self.render()

    def mask(self) -> list[bool]:
        return effective_mask(self.table, self.plan)

    def render(self) -> None:
        if not self.table:
            return
        self._updating = True
        self.tree.clear()
        mask = self.mask()
        blocks: dict[str, QTreeWidgetItem] = {}
        for r, on in zip(self.table, mask):
            parent = blocks.get(r.block)
            if parent is None:
                parent = blocks[r.block] = QTreeWidgetItem(self.tree, [r.block, "block", "", ""])
                parent.setFlags(parent.flags() | Qt.ItemFlag.ItemIsAutoTristate | Qt.ItemFlag.ItemIsUserCheckable)
                parent.setCheckState(3, Qt.CheckState.Unchecked)
            it = QTreeWidgetItem(parent, [r.name, r.type, f"{r.params:,}", ""])
            if r.params:
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(3, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            it.setData(0, Qt.ItemDataRole.UserRole, r.index)
        for b, item in blocks.items():
            n = sum(x.params for x in self.table if x.block == b)
            item.setText(2, f"{n:,}")
        self._updating = False
        self.update_counts()
        self.blocks_label.setText(str(self.plan.blocks) if self.plan.mode == "top_blocks" else self.plan.mode)

    def update_counts(self) -> None:
        mask = self.mask()
        total = sum(r.params for r in self.table)
        tr = sum(r.params for r, on in zip(self.table, mask) if on)
        if self.plan.mode == "lora":
            tr = lora_params(self.shapes, self.plan.rank, self.plan.targets)
            self.counts.setText(
                f"LoRA rank {self.plan.rank} on {', '.join(self.plan.targets)}: <b>{tr:,}</b> trainable parameters "
                f"beside {total:,} frozen ones ({100 * tr / max(total, 1):.2f}%); the adapter file is about "
                f"{tr * 4 / 2**20:.1f} MB. The exported model has the adapters merged in."
            )
            return
        # fp32 weights + grads + Adam's two moments for trainable ones; a rough guide, not a promise.
        mem = (total * 4 + tr * 12) / 2**20
        self.counts.setText(
            f"Fine-tune phase: <b>{tr:,}</b> trainable of {total:,} backbone parameters "
            f"({100 * tr / max(total, 1):.1f}%). Estimated weight+optimizer memory ≈ {mem:.1f} MiB "
            "(plus activations, which grow with batch size and input size)."
        )

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._updating or column != 3 or item.data(0, Qt.ItemDataRole.UserRole) is None:
            return
        names = []
        root = self.tree.invisibleRootItem()
        for i in range(root.childCount()):
            blk = root.child(i)
            for j in range(blk.childCount()):
                ch = blk.child(j)
                if ch.flags() & Qt.ItemFlag.ItemIsUserCheckable and ch.checkState(3) == Qt.CheckState.Checked:
                    names.append(f"^{re.escape(ch.text(0))}$")
        self.plan = (
            FreezePlan(mode="patterns", patterns=names, train_batchnorm=self._bn()) if names else FreezePlan(mode="all")
        )
        self.update_counts()

    def _regex_plan(self) -> None:
        text = self.regex.text().strip()
        try:
            self.set_plan(FreezePlan(mode="patterns", patterns=[text], train_batchnorm=self._bn()))
        except Exception as e:
            show_error(self, str(e).splitlines()[0])

    def set_plan(self, plan: FreezePlan) -> None:
        self.plan = plan
        self._set_lora_controls()
        self.render()

    def commit(self) -> None:
        p = self.state.project
        if self.plan != finetune_freeze(p):
            self.state.set_project(with_finetune_freeze(p, self.plan, self.state.n_train()))

    def validate(self) -> Optional[str]:
        if not self.table:
            return "The layer list is still loading."
        return None
