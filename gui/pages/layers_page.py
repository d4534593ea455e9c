"""Step 3 — Layers: the backbone's blocks and layers with trainable checkboxes,
quick freeze plans, live parameter counts and a memory estimate.

It edits the freeze plan of the last (fine-tune) phase; earlier phases keep
their own plans (by default: everything frozen).
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
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from tlapp.backbones.build import build_any_backbone
from tlapp.backbones.freeze import LayerInfo, effective_mask, layer_table, middle_blocks
from tlapp.config import Backbone, FreezePlan

from ..empty import EmptyState
from ..widgets import show_error
from ..workers import FunctionWorker
from .base import WizardPage


def _structure(cfg: Backbone) -> list[LayerInfo]:
    """The backbone's layer table (built without weights: the structure is all this step needs)."""
    built = build_any_backbone(cfg.model_copy(update={"weights": "none"}))
    return layer_table(built.model, built.entry)


class LayersPage(WizardPage):
    title = "Layers"
    intro = ("Choose which backbone layers a fine-tune may change. Frozen layers keep their pretrained "
             "features; training the top blocks adapts them to your data but needs more examples and time. "
             "The numbers below show how many parameters would train and the memory that takes.")

    def __init__(self, state) -> None:
        super().__init__(state)
        self.table: list[Any] = []
        self.key: Optional[tuple] = None
        self.worker: Optional[FunctionWorker] = None
        self._updating = False
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Block / layer", "Type", "Params", "Trainable"])
        self.tree.setColumnWidth(0, 300)
        self.tree.setToolTip("Tick a layer to train it in the fine-tune phase; a block's box ticks all its layers")
        self.tree.itemChanged.connect(self._item_changed)
        self.tree_box = EmptyState(self.tree, "The backbone's blocks and layers appear here once it is built "
                                              "(a few seconds after you choose it on the Backbone step).")
        self.recipe_note = QLabel()
        self.recipe_note.setWordWrap(True)
        self.recipe_note.setObjectName("recipeNote")
        self.recipe_note.setStyleSheet("QLabel#recipeNote { border: 1px solid palette(mid); border-radius: 6px;"
                                       " padding: 6px; }")
        self.blocks = QSlider(Qt.Orientation.Horizontal)
        self.blocks.setToolTip("Train the top N blocks (counted from the output), keep the rest frozen. "
                               "0 = head only. Default 2: adapts the most task-specific features.")
        self.blocks_label = QLabel()
        self.blocks.valueChanged.connect(lambda v: self.set_plan(FreezePlan(mode="top_blocks", blocks=v,
                                                                            train_batchnorm=self._bn())))
        self.fraction = QDoubleSpinBox()
        self.fraction.setRange(0, 1)
        self.fraction.setSingleStep(0.05)
        self.fraction.setToolTip("Share of the backbone's layers, from the top, that 'Train top fraction' unfreezes")
        self.regex = QLineEdit()
        self.regex.setPlaceholderText("regex of layers to train, e.g. ^block7|^top")
        self.regex.setToolTip("A regular expression over layer names; 'Train matching' unfreezes those layers")
        self.keep_bn = QCheckBox("Keep BatchNorm frozen (recommended)")
        self.keep_bn.setToolTip("BatchNorm statistics drift on small batches of new data and can ruin a "
                                "fine-tune; keeping them frozen is the safe default")
        self.keep_bn.setChecked(True)
        self.keep_bn.toggled.connect(lambda: self.set_plan(self.plan.model_copy(update={"train_batchnorm": self._bn()})))
        freeze_all = QPushButton("Freeze all")
        freeze_all.setToolTip("Train only the head: fastest, and best for very small data sets")
        freeze_all.clicked.connect(lambda: self.set_plan(FreezePlan(mode="all")))
        frac_btn = QPushButton("Train top fraction")
        frac_btn.setToolTip("Unfreeze the top share of layers given at the left")
        frac_btn.clicked.connect(lambda: self.set_plan(FreezePlan(mode="fraction", fraction=self.fraction.value(),
                                                                  train_batchnorm=self._bn())))
        rx_btn = QPushButton("Train matching")
        rx_btn.setToolTip("Unfreeze the layers whose names match the expression at the left")
        rx_btn.clicked.connect(self._regex_plan)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        self.status = QLabel()
        r1 = QHBoxLayout()
        r1.addWidget(freeze_all)
        r1.addWidget(QLabel("Unfreeze top blocks:"))
        r1.addWidget(self.blocks, 1)
        r1.addWidget(self.blocks_label)
        r2 = QHBoxLayout()
        r2.addWidget(self.fraction)
        r2.addWidget(frac_btn)
        r2.addWidget(self.regex, 1)
        r2.addWidget(rx_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.recipe_note)
        lay.addWidget(self.status)
        lay.addLayout(r1)
        lay.addLayout(r2)
        lay.addWidget(self.keep_bn)
        lay.addWidget(self.tree_box, 1)
        lay.addWidget(self.counts)
        self.plan = FreezePlan(mode="top_blocks", blocks=2)

    def _bn(self) -> bool:
        return not self.keep_bn.isChecked()

    def refresh(self) -> None:
        p = self.state.project
        preset = p.train.preset
        self.recipe_note.setVisible(preset != "custom")
        self.recipe_note.setText(
            f"Note: the <b>{preset.capitalize()}</b> recipe (Training step) chooses what to fine-tune from your data: "
            "it trains the top blocks only when cross-validation says it pays. Your ticks here are used when you "
            "turn on <i>Advanced: write the phases myself</i> on the Training step.")
        self.plan = p.train.phases[-1].freeze
        self.keep_bn.setChecked(not self.plan.train_batchnorm)
        key = (p.backbone.name, p.backbone.image_size, p.backbone.sequence_length,
               tuple(sorted(p.backbone.options.items())))
        if key != self.key:
            self.key = key
            self.load_structure()
        else:
            self.render()

    def load_structure(self) -> None:
        b = self.state.project.backbone
        self.status.setText(f"Building {b.name} to read its layers…")
        self.tree.clear()
        self.table = []
        self.tree_box.show_empty(f"Building {b.name} to read its layers… (a few seconds)")
        self.counts.setText("")
        self.worker = FunctionWorker(_structure, b)
        self.worker.done.connect(self._loaded)
        self.worker.failed.connect(lambda m, d: (self.status.setText(m), show_error(self, m, d),
                                                 self.tree_box.show_empty(f"Could not build the backbone: {m}")))
        self.worker.start()

    def _loaded(self, table: list[Any]) -> None:
        self.table = table
        middle = middle_blocks(table)
        self.blocks.blockSignals(True)
        self.blocks.setRange(0, len(middle))
        self.blocks.setValue(self.plan.blocks or 0)
        self.blocks.blockSignals(False)
        self.status.setText(f"{self.state.project.backbone.name}: {len(table)} layers in {len(middle)} blocks. "
                            "Tick layers to train them in a fine-tune phase, or use the quick plans below.")
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
        # fp32 weights + grads + Adam's two moments for trainable ones; a rough guide, not a promise.
        mem = (total * 4 + tr * 12) / 2**20
        self.counts.setText(f"Fine-tune phase: <b>{tr:,}</b> trainable of {total:,} backbone parameters "
                            f"({100 * tr / max(total, 1):.1f}%). Estimated weight+optimizer memory ≈ {mem:.1f} MiB "
                            "(plus activations, which grow with batch size and input size).")

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
        self.plan = FreezePlan(mode="patterns", patterns=names, train_batchnorm=self._bn()) if names \
            else FreezePlan(mode="all")
        self.update_counts()

    def _regex_plan(self) -> None:
        text = self.regex.text().strip()
        try:
            self.set_plan(FreezePlan(mode="patterns", patterns=[text], train_batchnorm=self._bn()))
        except Exception as e:
            show_error(self, str(e).splitlines()[0])

    def set_plan(self, plan: FreezePlan) -> None:
        self.plan = plan
        self.render()

    def commit(self) -> None:
        d = self.state.project.model_dump(mode="json")
        d["train"]["phases"][-1]["freeze"] = self.plan.model_dump(mode="json")
        self.state.set_dict(d)

    def validate(self) -> Optional[str]:
        if not self.table:
            return "The layer list is still loading."
        return None
