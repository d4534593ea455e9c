"""Live training charts (pyqtgraph): loss and metric per batch (smoothed) and
per epoch for train and val, with phase boundaries marked. An exact head solve
draws too: each cross-validation candidate's out-of-fold score as a validation
point, and the solver's iterations as the per-step line (events carry ``x``).
Preference tuning (task dpo) adds a second row: the reward margin, and the
chosen and rejected rewards on one panel (rejected dashed).

Colours follow the application palette (light or dark); the legend is a line
of text above the plots, so it never covers data."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from tlapp.events import BATCH_END, EPOCH_END, PHASE_START, SOLVER_STEP

from .theme import SERIES as _COLORS
from .theme import muted_color, text_color


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


class _Panel(pg.PlotWidget):
    def __init__(self, title: str, key: str) -> None:
        super().__init__()
        self.key = key
        self.setBackground(None)
        self.showGrid(x=True, y=True, alpha=0.25)
        self.fg = text_color().name()
        for side in ("left", "bottom"):
            self.getAxis(side).setPen(muted_color())
            self.getAxis(side).setTextPen(self.fg)
        self.set_title(title)
        self.setLabel("bottom", "epoch", color=self.fg)
        self.getAxis("bottom").enableAutoSIPrefix(False)  # a head solve spans x in (0, 2): no "(x0.001)"
        self.batch = self.plot([], [], pen=pg.mkPen(_COLORS["batch"], width=1))
        self.train = self.plot(
            [],
            [],
            pen=pg.mkPen(_COLORS["train"], width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush=_COLORS["train"],
            symbolPen=None,
        )
        self.val = self.plot(
            [],
            [],
            pen=pg.mkPen(_COLORS["val"], width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush=_COLORS["val"],
            symbolPen=None,
        )
        self.reset()

    def set_title(self, title: str) -> None:
        self.getPlotItem().setTitle(title, color=self.fg)

    def reset(self) -> None:
        self.bx: list[float] = []
        self.by: list[float] = []
        self.ex: list[float] = []
        self.ey: list[float] = []
        self.vy: list[float] = []
        self.vx: list[float] = []
        self._ema = None
        for c in (self.batch, self.train, self.val):
            c.setData([], [])
        for item in list(self.items()):
            if isinstance(item, pg.InfiniteLine):
                self.removeItem(item)

    def feed_batch(self, x: float, metrics: dict[str, float], smooth: bool) -> None:
        if self.key in metrics:
            self.add_batch(x, metrics[self.key], smooth)

    def add_batch(self, x: float, value: float, smooth: bool = True) -> None:
        self._ema = value if self._ema is None or not smooth else 0.8 * self._ema + 0.2 * value
        self.bx.append(x)
        self.by.append(self._ema)
        self.batch.setData(self.bx, self.by)

    def add_epoch(self, x: float, metrics: dict[str, float]) -> None:
        if self.key in metrics:
            self.ex.append(x)
            self.ey.append(metrics[self.key])
            self.train.setData(self.ex, self.ey)
        if f"val_{self.key}" in metrics:
            self.vx.append(x)
            self.vy.append(metrics[f"val_{self.key}"])
            self.val.setData(self.vx, self.vy)

    def mark_phase(self, x: float, name: str) -> None:
        grey = muted_color()
        line = pg.InfiniteLine(
            pos=x,
            angle=90,
            pen=pg.mkPen(grey, style=pg.QtCore.Qt.PenStyle.DashLine),
            label=name,
            labelOpts={"position": 0.95, "color": grey},
        )
        self.addItem(line)


class _RewardsPanel(_Panel):
    """Chosen rewards as any panel's lines, rejected rewards dashed beside them (DPO: they should part)."""

    def __init__(self) -> None:
        super().__init__("Rewards: chosen ━  rejected ┅", "chosen_reward")
        self.other = _Panel.__new__(_Panel)  # only its point lists and curves are used, drawn on this plot
        dash = pg.QtCore.Qt.PenStyle.DashLine
        self.other.key = "rejected_reward"
        self.other.batch = self.plot([], [], pen=pg.mkPen(_COLORS["batch"], width=1, style=dash))
        self.other.train = self.plot(
            [],
            [],
            pen=pg.mkPen(_COLORS["train"], width=2, style=dash),
            symbol="t",
            symbolSize=6,
            symbolBrush=_COLORS["train"],
            symbolPen=None,
        )
        self.other.val = self.plot(
            [],
            [],
            pen=pg.mkPen(_COLORS["val"], width=2, style=dash),
            symbol="t",
            symbolSize=6,
            symbolBrush=_COLORS["val"],
            symbolPen=None,
        )
        self._reset_other()

    def _reset_other(self) -> None:
        o = self.other
        o.bx, o.by, o.ex, o.ey, o.vx, o.vy, o._ema = [], [], [], [], [], [], None
        for c in (o.batch, o.train, o.val):
            c.setData([], [])

    def reset(self) -> None:
        super().reset()
        if hasattr(self, "other"):
            self._reset_other()

    def feed_batch(self, x: float, metrics: dict[str, float], smooth: bool) -> None:
        super().feed_batch(x, metrics, smooth)
        if self.other.key in metrics:
            _Panel.add_batch(self.other, x, metrics[self.other.key], smooth)

    def add_epoch(self, x: float, metrics: dict[str, float]) -> None:
        super().add_epoch(x, metrics)
        _Panel.add_epoch(self.other, x, metrics)


class TrainingCharts(QWidget):
    """Feeds on training event dicts; x is a global epoch count across phases."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = _Panel("Loss", "loss")
        self.metric = _Panel("Accuracy", "accuracy")
        self.legend = QLabel(
            f"<span style='color:{_hex(_COLORS['train'])}'>●━ train (per epoch)</span> &nbsp; "
            f"<span style='color:{_hex(_COLORS['val'])}'>●━ validation (per epoch; head: per CV candidate)</span>"
            " &nbsp; "
            f"<span style='color:{_hex(_COLORS['batch'])}'>━ train (per batch, smoothed; head: per solver "
            "iteration)</span> &nbsp; "
            "┆ phase start"
        )
        # The second row: only a preference run (task dpo) shows it.
        self.margin = _Panel("Reward margin", "reward_margin")
        self.rewards = _RewardsPanel()
        plots = QGridLayout()
        plots.setContentsMargins(0, 0, 0, 0)
        plots.addWidget(self.loss, 0, 0)
        plots.addWidget(self.metric, 0, 1)
        plots.addWidget(self.margin, 1, 0)
        plots.addWidget(self.rewards, 1, 1)
        self.set_preference(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.legend)
        lay.addLayout(plots, 1)
        self.reset()

    def epoch_points(self) -> int:
        """Points drawn so far on the loss chart (per step, per epoch and validation)."""
        return len(self.loss.bx) + len(self.loss.ex) + len(self.loss.vx)

    def reset(self) -> None:
        self.offset = 0.0  # chart x where the current phase starts (epochs, or a head solve's 2 units)
        self.end = 0.0  # the largest x drawn so far
        self.updates = 0
        for p in self.panels():
            p.reset()

    def panels(self) -> list[_Panel]:
        return [self.loss, self.metric, self.margin, self.rewards]

    def set_metric(self, key: str, title: str) -> None:
        self.metric.key = key
        self.metric.set_title(title)

    def set_preference(self, on: bool) -> None:
        """Show the DPO row (reward margin; chosen and rejected rewards) or hide it."""
        for p in (self.margin, self.rewards):
            p.setVisible(on)

    def on_event(self, ev: dict[str, Any]) -> None:
        t, d = ev["type"], ev.get("data", {})
        if t == PHASE_START:
            self.offset = self.end
            for p in self.panels():
                p._ema = None  # a new phase's first step starts its own line, not the last phase's average
                p.mark_phase(self.offset + d.get("start_epoch", 0), d.get("name", ""))
        elif t in (BATCH_END, SOLVER_STEP):
            x = self.offset + (d["x"] if "x" in d else d["epoch"] - 1 + d["batch"] / max(d["steps"], 1))
            m, smooth = d.get("metrics", {}), t == BATCH_END  # a solver's iterations are exact, not noisy
            for p in self.panels():
                p.feed_batch(x, m, smooth)
            self.end = max(self.end, x)
            self.updates += 1
        elif t == EPOCH_END:
            x = self.offset + d.get("x", d["epoch"])
            for p in self.panels():
                p.add_epoch(x, d["metrics"])
            self.end = max(self.end, x)
            self.updates += 1
