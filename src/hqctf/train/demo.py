"""``hqctf demo``: train a small 2D UNet++ on the embedded OpenKBP sample classically and with QPG, side by side."""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn

from ..atomic import write_atomic
from ..data import DataError, list_cases, load_slices, sample_dataset_dir
from ..data.nnunet import NnUNetSource
from .figures import curves_png
from .config import ModelConfig
from .loop import batch_schedule, dice_per_class, predict, train
from .models import build_network, parameter_groups
from .views import axial_overlay_png

DEFAULT_STEPS = 200
#: Centre crop of the 128 x 128 OpenKBP slices used for training: the organs lie inside the central 64 x 64
#: (all but 283 of 722,504 labelled voxels over the 203 cases), and a quarter of the pixels makes a step 3-4x cheaper.
DEFAULT_CROP = 64
FEATURES = (16, 16, 32, 64, 128, 16)
CLASSICAL_LR = 3e-3
#: QPG's learning rates per parameter group (`hqctf.qpg.diagnostics.parameter_group`): circuit angles ~7x the
#: classical rate, the shared mapping and gains 1/3 of it (chosen on the demo's validation case:
#: docs/benchmarks.md, benchmarks/qpg_diagnose.py); biases and norms train as in classical mode.
QPG_LRS = {"angles": 2e-2, "embedding": 2e-2, "mapping": 1e-3, "gain": 1e-3}
WEIGHT_DECAY = 1e-2  # AdamW's default, on classical parameters only


def build_model(n_classes: int, features: tuple[int, ...], seed: int) -> nn.Module:
    """The demo's 2D UNet++ (`hqctf.train.models.build_network`), initialised from ``seed`` (identical for both modes)."""
    torch.manual_seed(seed)
    return build_network(ModelConfig(name="unetpp", spatial_dims=2, features=features), n_classes)


def optimizer_for(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW: lr 3e-3 on classical parameters; QPG's generator groups at `QPG_LRS`, without weight decay."""
    return torch.optim.AdamW(parameter_groups(model, CLASSICAL_LR, WEIGHT_DECAY, QPG_LRS))


def _split(dataset_dir: Path, max_cases: int | None) -> tuple[list[str], list[str]]:
    cases = list_cases(dataset_dir)[:max_cases]
    if len(cases) < 2:
        raise DataError(f"{dataset_dir}: need at least 2 cases (training and validation), found {len(cases)}")
    n_val = max(1, len(cases) // 6)
    return cases[:-n_val], cases[-n_val:]


def centre_crop(x: torch.Tensor, crop: int | None) -> torch.Tensor:
    """The central ``crop`` x ``crop`` pixels of the last two axes (``x`` itself for None)."""
    if crop is None:
        return x
    h, w = x.shape[-2:]
    if not 0 < crop <= min(h, w):
        raise ValueError(f"crop must be in 1..{min(h, w)}, got {crop}")
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top : top + crop, left : left + crop].contiguous()


def _evaluate(model: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]], names: list[str]) -> tuple[dict, float, list]:
    """Per-organ Dice (mean over validation cases, None if the organ never occurs) and its mean over present organs."""
    preds = [predict(model, images) for images, _ in val]
    scores = np.stack([dice_per_class(p, labels, len(names)) for p, (_, labels) in zip(preds, val)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an organ absent from every validation case
        per_organ = np.nanmean(scores, axis=0)
    dice = {n: (None if np.isnan(d) else round(float(d), 4)) for n, d in zip(names[1:], per_organ)}
    present = [d for d in dice.values() if d is not None]
    return dice, (round(float(np.mean(present)), 4) if present else float("nan")), preds


@dataclass
class DemoData:
    """The demo's slices: training images/labels (N, 1, H, W) / (N, H, W), validation cases, label names, and the
    RAS affine of the first validation case's file (its slices are axial slices of that grid, for the overlay)."""

    train_cases: list[str]
    val_cases: list[str]
    x: torch.Tensor
    y: torch.Tensor
    val: list[tuple[torch.Tensor, torch.Tensor]]
    names: list[str]
    val_affine: np.ndarray

    @classmethod
    def load(cls, dataset: Path, seed: int, *, size: int = 128, crop: int | None = DEFAULT_CROP,
             max_cases: int | None = None, slices_per_case: int = 16) -> "DemoData":
        """``slices_per_case`` slices of each training case, three times as many of each validation case."""
        train_cases, val_cases = _split(dataset, max_cases)
        images, labels, names = load_slices(dataset, train_cases, slices_per_case, size, seed)
        val = []
        for case in val_cases:
            vi, vl, _ = load_slices(dataset, [case], 3 * slices_per_case, size, seed)
            val.append((centre_crop(torch.from_numpy(vi), crop), centre_crop(torch.from_numpy(vl), crop)))
        affine = NnUNetSource(dataset).file_grid(val_cases[0])[0]  # corrected for OpenKBP (hqctf.data.openkbp)
        return cls(train_cases, val_cases, centre_crop(torch.from_numpy(images), crop),
                   centre_crop(torch.from_numpy(labels), crop), val, names, affine)


def evaluate(model: nn.Module, data: DemoData) -> tuple[dict, float, list]:
    """Per-organ validation Dice, its mean over present organs, and the predictions."""
    return _evaluate(model, data.val, data.names)


def run_demo(
    out_dir: str | Path,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    data_dir: str | Path | None = None,
    *,
    size: int = 128,
    crop: int | None = DEFAULT_CROP,
    max_cases: int | None = None,
    slices_per_case: int = 16,
    batch_size: int = 8,
    features: tuple[int, ...] = FEATURES,
    console: Console | None = None,
) -> dict:
    """Train the same UNet++ classically and with QPG (same seed, data order and steps); write the results.

    Writes ``demo.log``, ``results.json``, ``overlay.png`` and ``curves.png`` into ``out_dir``.
    The last sixth of the cases (at least one) is held out for validation. Slices are read at ``size`` x ``size``
    and centre-cropped to ``crop`` x ``crop`` (None: no crop). Returns the content of results.json.

    Raises:
        DataError: the dataset folder is missing or inconsistent.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if crop is not None and not 0 < crop <= size:
        raise ValueError(f"crop must be in 1..{size}, got {crop}")
    dataset = Path(data_dir) if data_dir is not None else sample_dataset_dir()
    data = DemoData.load(dataset, seed, size=size, crop=crop, max_cases=max_cases, slices_per_case=slices_per_case)
    train_cases, val_cases, x, y, val, names = data.train_cases, data.val_cases, data.x, data.y, data.val, data.names
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(console or Console())
    schedule = batch_schedule(len(x), steps, batch_size, seed)
    results: dict = {
        "dataset": str(dataset), "train_cases": train_cases, "val_cases": val_cases, "train_slices": len(x),
        "val_slices": sum(len(v[0]) for v in val), "size": size, "crop": crop, "label_names": names,
        "steps": steps, "seed": seed, "batch_size": len(schedule[0]), "model": "BasicUNetPlusPlus",
        "features": list(features),
        "optimizer": {"classical": {"lr": CLASSICAL_LR, "weight_decay": WEIGHT_DECAY},
                      "qpg": {"group_lr": QPG_LRS, "generator_weight_decay": 0.0, "other_lr": CLASSICAL_LR}},
        "modes": {},
    }
    log(f"data: {dataset}")
    log(f"train cases {train_cases} ({len(x)} slices), validation cases {val_cases} ({results['val_slices']} slices), "
        f"{size}x{size} cropped to {tuple(x.shape[-2:])}, {len(names)} classes")
    log(f"BasicUNetPlusPlus features={features}; {steps} steps, batch {results['batch_size']}, seed {seed}")

    losses: dict[str, list[float]] = {}
    predictions: dict[str, list[torch.Tensor]] = {}
    for mode in ("classical", "qpg"):
        model = build_model(len(names), features, seed)
        results["modes"][mode], losses[mode], predictions[mode] = _run_mode(mode, model, x, y, schedule, val, names, log)

    log.console.print(_summary_table(results))
    log.lines.append(_table_text(_summary_table(results)))
    _write_outputs(out, results, losses, predictions, data)
    log(f"wrote demo.log, results.json, overlay.png, curves.png to {out}")
    write_atomic(out / "demo.log", "\n".join(log.lines) + "\n")
    return results


class _Log:
    """Prints to the console and keeps every line for demo.log."""

    def __init__(self, console: Console) -> None:
        self.console, self.lines = console, []

    def __call__(self, message: str, show: bool = True) -> None:
        if show:
            self.console.print(message, highlight=False, markup=False)
        self.lines.append(message)


def _run_mode(
    mode: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, schedule: list[np.ndarray],
    val: list[tuple[torch.Tensor, torch.Tensor]], names: list[str], log: _Log,
) -> tuple[dict, list[float], list[torch.Tensor]]:
    """Train ``model`` classically or wrapped with QPG, then evaluate it (QPG through its merged plain copy)."""
    from ..qpg import QPGConfig, count_parameters, merge, trainable_report, wrap

    start = time.perf_counter()
    if mode == "qpg":
        model = wrap(model, QPGConfig())
        log(trainable_report(model), show=False)  # the per-layer table goes to demo.log only
        trainable, total = count_parameters(model)
    else:
        trainable = total = sum(p.numel() for p in model.parameters())
    optimizer = optimizer_for(model)
    log(f"[{mode}] trainable parameters {trainable:,} of {total:,}")
    columns = (TextColumn(f"[bold]{mode:>9}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=log.console) as progress:
        task = progress.add_task(mode, total=len(schedule), loss="-")
        on_step: Callable[[int, float], None] = lambda _, v: progress.update(task, advance=1, loss=f"{v:.4f}")  # noqa: E731
        losses = train(model, optimizer, x, y, schedule, on_step)
    train_seconds = time.perf_counter() - start
    extra = {}
    if mode == "qpg":
        merged = merge(model)
        with torch.no_grad():
            probe = val[0][0][:4]
            model.eval()
            extra["merge_max_abs_diff"] = (model(probe)[0] - merged(probe)[0]).abs().max().item()
        log(f"[qpg] merged into a plain {type(merged).__name__}; "
            f"max |QPG - merged| output difference {extra['merge_max_abs_diff']:.2e}")
        model = merged
    dice, mean, predictions = _evaluate(model, val, names)
    seconds = time.perf_counter() - start
    log(f"[{mode}] validation mean Dice {mean:.4f}; trained in {train_seconds:.1f} s, {seconds:.1f} s with evaluation")
    entry = {
        "trainable_params": trainable, "total_params": total, "val_dice": dice, "val_mean_dice": mean,
        "final_loss": round(float(np.mean(losses[-10:])), 4), "train_seconds": round(train_seconds, 2),
        "seconds": round(seconds, 2), **extra,
    }
    return entry, losses, predictions


def _summary_table(results: dict) -> Table:
    modes = results["modes"]
    table = Table(title="validation Dice")
    table.add_column("organ")
    for mode in modes:
        table.add_column(mode, justify="right")
    for organ in results["label_names"][1:]:
        table.add_row(organ, *[_fmt(r["val_dice"][organ]) for r in modes.values()])
    table.add_row("mean", *[_fmt(r["val_mean_dice"]) for r in modes.values()])
    table.add_row("trainable", *[f"{r['trainable_params']:,}" for r in modes.values()])
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def _table_text(table: Table) -> str:
    capture = Console(width=100, record=True, file=io.StringIO())
    capture.print(table)
    return capture.export_text()


def _write_outputs(out: Path, results: dict, losses: dict, predictions: dict, data: DemoData) -> None:
    write_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_atomic(out / "curves.png", curves_png(losses))
    images, labels = data.val[0]
    best = int(np.argmax([len(torch.unique(s)) * 1e6 + (s > 0).sum().item() for s in labels]))
    modes = results["modes"]
    panels = {"ground truth": labels[best].numpy()[..., None]}  # one axial slice as a (H, W, 1) volume of the case
    panels.update({f"{m} (mean Dice {modes[m]['val_mean_dice']:.3f})": predictions[m][0][best].numpy()[..., None]
                   for m in modes})
    title = f"validation case {results['val_cases'][0]}, one axial slice"
    png = axial_overlay_png(images[best, 0].numpy()[..., None], panels, data.val_affine, 0, data.names, title)
    write_atomic(out / "overlay.png", png)
