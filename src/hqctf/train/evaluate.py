"""``hqctf evaluate`` (per-case metrics of a trained run) and ``hqctf compare`` (runs side by side)."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ..atomic import write_atomic
from ..data.cache import CaseCache
from ..data.formats import open_source
from ..data.splits import load_splits
from ..qpg import merge
from .config import CIRCUIT_MODES, GENERATED_MODES, ConfigError, TrainConfig, apply_overrides, build_config
from .metrics import METRICS, mean_over_structures
from .models import build_model
from .trainer import CHECKPOINT_BEST, CHECKPOINT_LAST, read_summary, resume_config
from .cpu_layout import cpu_inference_network
from .validate import validate_cases

SPLITS = ("test", "val", "train", "all")
MEASUREMENT_KEYS = ("backend", "device", "shots", "readout_error", "depolarizing", "engine")  # evaluate --set qpg.*


def _rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def mean_sd(mean: float, sd: float, digits: int = 4) -> str:
    """``mean ± sd``; just the mean where the sd is undefined (one case), '—' where nothing was scored."""
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of dicts as a GitHub Markdown table (floats to 4 decimals)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _case_ids(run: Path, split: str, fold: int, all_ids: list[str]) -> list[str]:
    if split == "all":
        return all_ids
    splits = load_splits(run / "splits.json")[fold]
    ids = list(splits.get(split, []))
    if not ids:
        raise ConfigError(f"{run / 'splits.json'}: fold {fold} has no '{split}' cases; choose another --split of {', '.join(SPLITS)}")
    return ids


def measured_config(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """``config`` with ``qpg.KEY=VALUE`` overrides of how its circuits are measured (`MEASUREMENT_KEYS`: back-end,
    device, shots, noise, engine); what was trained stays as it is."""
    if not overrides:
        return config
    overrides = [item.removeprefix("mode.") for item in overrides]  # qpg.shots or, as in training, mode.qpg.shots
    for item in overrides:
        key = item.partition("=")[0]
        if not key.startswith("qpg.") or key.removeprefix("qpg.") not in MEASUREMENT_KEYS:
            raise ConfigError(f"--set {key}: evaluate overrides only how circuits are measured: "
                              f"{', '.join('qpg.' + k for k in MEASUREMENT_KEYS)}")
    if config.mode.name not in CIRCUIT_MODES:
        raise ConfigError(f"--set {overrides[0]}: this run's mode {config.mode.name} has no circuits to measure")
    values = apply_overrides(config.to_dict(), [f"mode.{item}" for item in overrides])
    return dataclasses.replace(build_config(TrainConfig, values).check(), out=config.out)


def evaluation_folder(run: str | Path, split: str, overrides: Sequence[str] = ()) -> Path:
    """``RUN/evaluation/SPLIT``, or with measurement overrides ``RUN/evaluation/SPLIT+KEY=VALUE+...`` (so the
    exact results are kept beside them)."""
    keys = (item.removeprefix("mode.").removeprefix("qpg.") for item in overrides)
    name = "+".join([split, *(re.sub(r"[^A-Za-z0-9._=,-]", "_", item) for item in keys)])
    return Path(run) / "evaluation" / name


def evaluate_run(run: str | Path, data: str | Path | None = None, split: str = "test", checkpoint: str = "best",
                 device: str = "cpu", progress: bool = False,
                 overrides: Sequence[str] = ()) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Predict every case of a split with a run's checkpoint and score it.

    Args:
        run: run folder written by ``hqctf train``.
        data: dataset to evaluate on (default: the run's ``data.path``); case ids of ``split`` come from the
            run's ``splits.json`` unless ``split == "all"``.
        split: ``test``, ``val``, ``train`` or ``all``.
        checkpoint: ``best`` or ``last``.
        device: where the network runs.
        progress: a rich progress bar over the cases, with an ETA.
        overrides: ``qpg.KEY=VALUE`` settings of how the trained circuits are measured (`measured_config`), e.g.
            ``qpg.backend=qiskit``, ``qpg.shots=1000``; torch is seeded with the run's seed, so shots repeat.

    Returns:
        per-case rows (case, structure, metrics) and a summary row per structure plus ``mean``, written as CSV and
        Markdown under `evaluation_folder`. Metrics are computed on the preprocessed grid.
    """
    run = Path(run)
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    config = measured_config(resume_config(run), overrides)
    path = Path(data) if data is not None else Path(config.data.path)
    source = open_source(path, format=config.data.format if data is None else None, labels=config.data.labels or None,
                         missing="unknown", cache_dir=config.data.cache)
    ids = _case_ids(run, split, config.data.fold, source.case_ids())
    missing = sorted(set(ids) - set(source.case_ids()))
    if missing:
        raise ConfigError(f"{path}: cases {missing[:5]} of the run's '{split}' split are not in this dataset")
    labels = dict(source.labels)
    ckpt = run / (CHECKPOINT_BEST if checkpoint == "best" else CHECKPOINT_LAST)
    if not ckpt.is_file():
        raise ConfigError(f"{ckpt}: checkpoint not found (choose --checkpoint best or last)")
    if overrides:
        torch.manual_seed(config.seed)
    model = build_model(config.model, config.mode, max(labels, default=0) + 1)  # back-end errors before any case
    cache = CaseCache(config.data.cache, source, config.data.preprocess)
    cases = [cache.get(i) for i in ids]
    model.load_state_dict(torch.load(ckpt, map_location=device, weights_only=False)["model"])
    if config.mode.name in GENERATED_MODES:
        model = merge(model, inplace=True)  # weights generated (measured) once, as every forward would
    model = cpu_inference_network(model, config.model.spatial_dims) if device == "cpu" else model.to(device).eval()
    columns = [TextColumn(f"evaluating {split}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("cases", total=len(cases))
        per_case, _ = validate_cases(model, cases, config.model.spatial_dims, config.data.patch_size,
                                     config.validation.overlap, config.validation.tolerance_mm, device,
                                     lambda done, _total: bar.update(task, completed=done))
    rows = []
    for case_id, structures in per_case.items():
        for name, values in {**structures, "mean": mean_over_structures(structures)}.items():
            rows.append({"case": case_id, "structure": name, **values})
    summary = {}
    for name in [*labels.values(), "mean"]:
        chosen = [r for r in rows if r["structure"] == name]
        stats: dict[str, Any] = {"structure": name}
        for metric in METRICS:
            values = np.array([r[metric] for r in chosen], dtype=float)
            values = values[~np.isnan(values)]
            stats[f"{metric}_mean"] = float(values.mean()) if values.size else float("nan")
            stats[f"{metric}_sd"] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
            if metric == "dice":
                stats["n"] = int(values.size)  # cases in which the structure was scored
        summary[name] = stats
    out = evaluation_folder(run, split, overrides)
    write_atomic(out / "per_case.csv", _rows_to_csv(rows))
    write_atomic(out / "per_case.md", markdown_table(rows))
    write_atomic(out / "summary.csv", _rows_to_csv(list(summary.values())))
    write_atomic(out / "summary.md", markdown_table(list(summary.values())))
    return rows, summary


def compare_runs(runs: Sequence[str | Path], split: str = "test") -> list[dict[str, Any]]:
    """One row per run: mode, model, trainable parameters and mean +- sd over cases of each metric.

    Uses ``<run>/evaluation/<split>/summary.csv`` when ``hqctf evaluate`` has been run, else the run's best
    validation metrics (means only).
    """
    rows = []
    for run in map(Path, runs):
        info = read_summary(run)
        row: dict[str, Any] = {"run": run.name, "mode": info["mode"], "model": f"{info['model']} {info['spatial_dims']}D",
                               "trainable": info["trainable_parameters"]}
        table = run / "evaluation" / split / "summary.csv"
        if table.is_file():
            mean = next(r for r in csv.DictReader(table.open()) if r["structure"] == "mean")
            row["source"] = f"{split} ({mean['n']} cases)"
            for metric in METRICS:
                row[metric] = mean_sd(float(mean[f"{metric}_mean"]), float(mean[f"{metric}_sd"]))
        else:
            row["source"] = f"best validation (epoch {info['best_epoch']})"
            for metric in METRICS:
                value = info["best"].get(f"val_{metric}")
                row[metric] = "" if value is None else f"{value:.4f}"
        rows.append(row)
    return rows
