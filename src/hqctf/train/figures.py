"""PNG figures of the demo (matplotlib object API, no pyplot state, so no GUI backend is ever needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def overlay_box(image: np.ndarray, labels: Sequence[np.ndarray] = (), margin: int = 6) -> tuple[slice, slice]:
    """Bounding box of the body (pixels above the window's floor) and of every labelled pixel, plus a margin: a
    prediction in the air around the body stays in view."""
    shown = image > image.min() + 1e-3
    for label in labels:
        shown = shown | (np.asarray(label) > 0)
    rows, cols = np.nonzero(shown)
    if rows.size == 0:
        return slice(None), slice(None)
    h, w = image.shape
    return (slice(max(rows.min() - margin, 0), min(rows.max() + margin + 1, h)),
            slice(max(cols.min() - margin, 0), min(cols.max() + margin + 1, w)))


_EDGES = {"top": (0.5, 0.97, "center", "top"), "bottom": (0.5, 0.03, "center", "bottom"),
          "left": (0.03, 0.5, "left", "center"), "right": (0.97, 0.5, "right", "center")}


def _letters(ax: Axes, letters: Mapping[str, str]) -> None:
    """Orientation letters at the edges of a panel (``{"top": "A", ...}``)."""
    for edge, letter in letters.items():
        x, y, ha, va = _EDGES[edge]
        ax.text(x, y, letter, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=9, fontweight="bold")


def overlay_png(image: np.ndarray, panels: Mapping[str, np.ndarray], label_names: Sequence[str], title: str = "",
                letters: Mapping[str, str] | None = None) -> bytes:
    """`overlay_figure` as PNG bytes."""
    return _png(overlay_figure(image, panels, label_names, title, letters))


def overlay_figure(image: np.ndarray, panels: Mapping[str, np.ndarray], label_names: Sequence[str], title: str = "",
                   letters: Mapping[str, str] | None = None) -> Figure:
    """CT slice with one label map per panel drawn as organ contours, side by side.

    Args:
        image: (H, W) normalised CT slice, as displayed (`hqctf.train.views.axial_view`).
        panels: panel title -> (H, W) integer label map (e.g. ground truth, each model's prediction).
        label_names: names indexed by label value; 0 is background and is not drawn.
        title: figure title.
        letters: orientation letter per edge, drawn on every panel (None: orientation unknown, none drawn).
    """
    box = overlay_box(image, list(panels.values()))
    fig = Figure(figsize=(3.6 * len(panels), 3.9))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, labels) in zip(axes, panels.items()):
        ax.imshow(image[box], cmap="gray", interpolation="nearest")
        for value in np.unique(labels[box]):
            if value > 0:
                ax.contour(labels[box] == value, levels=[0.5], colors=[COLOURS[(value - 1) % len(COLOURS)]], linewidths=1.2)
        if letters:
            _letters(ax, letters)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    handles = [Line2D([], [], color=COLOURS[(v - 1) % len(COLOURS)], label=n) for v, n in enumerate(label_names) if v > 0]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.1, top=0.86, wspace=0.05)
    return fig


def curves_png(losses: Mapping[str, Sequence[float]], title: str = "training loss", x_label: str = "step") -> bytes:
    """Training loss of each mode per step (or epoch: ``x_label``), faint, with a moving average (solid)."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for i, (name, values) in enumerate(losses.items()):
        y = np.asarray(values, dtype=float)
        x = np.arange(1, len(y) + 1)
        colour = COLOURS[(3 + 2 * i) % len(COLOURS)]
        ax.plot(x, y, color=colour, alpha=0.3, linewidth=0.8)
        k = max(1, min(10, len(y) // 5))
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(x[k - 1 :], smooth, color=colour, linewidth=1.8, label=name)
    ax.set_xlabel(x_label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and epochs are whole numbers
    ax.set_ylabel("Dice + cross-entropy loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def run_curves_png(history: Sequence[Mapping[str, float]], metric: str = "dice") -> bytes:
    """Training loss per epoch (left) and the validation metrics per epoch (right) of one run, as PNG."""
    return _png(run_curves_figure(history, metric))


def run_curves_figure(history: Sequence[Mapping[str, float]], metric: str = "dice") -> Figure:
    """The figure of `run_curves_png`: epoch axes with whole-number ticks."""
    fig = Figure(figsize=(10.0, 3.8))
    left, right = fig.subplots(1, 2, sharex=True)  # validation epochs on the training epochs' axis
    epochs = [row["epoch"] for row in history]
    left.plot(epochs, [row["loss"] for row in history], color=COLOURS[3], marker="o", markersize=3)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (marginal Dice + CE)")
    left.grid(alpha=0.3)
    for i, name in enumerate(("dice", "iou", "surface_dice")):
        points = [(row["epoch"], row[f"val_{name}"]) for row in history if f"val_{name}" in row]
        if points:
            x, y = zip(*points)
            right.plot(x, y, color=COLOURS[(4 + i) % len(COLOURS)], marker="o", markersize=3, label=name,
                       linewidth=2.2 if name == metric else 1.2)
    right.set_xlabel("epoch")
    if epochs and max(epochs) - min(epochs) < 4:  # too few for the locator: one tick per epoch
        left.set_xticks(range(int(min(epochs)), int(max(epochs)) + 1))
    else:
        left.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    right.set_ylabel("validation (mean over cases)")
    right.set_ylim(0, 1)
    right.grid(alpha=0.3)
    if right.lines:
        right.legend(fontsize=8)
    fig.tight_layout()
    return fig
