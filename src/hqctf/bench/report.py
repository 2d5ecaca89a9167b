"""A finished bench's report: tables (Markdown + CSV), paired tests and plots under ``<bench>/report/``."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import write_atomic  # noqa: E402
from ..qpg.rank import spectrum_effective_rank  # noqa: E402
from ..train.metrics import METRICS  # noqa: E402
from .config import BenchConfig  # noqa: E402
from .markdown import machine_line, replace_section  # noqa: E402
from .plan import RunSpec  # noqa: E402
from .stats import format_mean_sd, mean_sd, wilcoxon_paired  # noqa: E402

PLOTS = ("dice_vs_parameters", "dice_vs_size", "learning_curves", "spectra")
TIME_FILE = "bench-time.json"  # a run's wall seconds of training and test evaluation, written by the runner
Group = tuple[str, str, str]  # model, size label, mode


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def run_row(spec: RunSpec, run: Path) -> dict[str, Any]:
    """One run's numbers: parameters, epochs, time, memory and test metrics (mean and per structure)."""
    row: dict[str, Any] = {"run": spec.name, "model": spec.model, "mode": spec.mode, "size": spec.size_label,
                           "seed": spec.seed, "failed": (run / "failed.txt").is_file()}
    if (run / TIME_FILE).is_file():
        row["wall_seconds"] = json.loads((run / TIME_FILE).read_text())["seconds"]
    if row["failed"]:
        return row
    summary = json.loads((run / "summary.json").read_text())
    row.update({"train_cases": summary["train_cases"], "trainable": summary["trainable_parameters"],
                "total": summary["total_parameters"], "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
                "stopped": summary.get("stopped", "epochs"), "seconds_per_epoch": summary["seconds_per_epoch"],
                "peak_memory_mib": summary["peak_gpu_memory_mib"] or summary["peak_memory_mib"]})
    for r in _read_csv(run / "evaluation" / "test" / "summary.csv"):
        if r["structure"] == "mean":
            row.update({m: _float(r[f"{m}_mean"]) for m in METRICS})
        else:
            row.update({f"{m}/{r['structure']}": _float(r[f"{m}_mean"]) for m in METRICS})
    return row


def patient_dice(run: Path) -> dict[str, float]:
    """Test patient -> Dice (mean over its contoured structures)."""
    return {r["case"]: _float(r["dice"]) for r in _read_csv(run / "evaluation" / "test" / "per_case.csv")
            if r["structure"] == "mean"}


def _groups(rows: list[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["size"], row["mode"])].append(row)
    return groups


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [_float(r.get(key)) for r in rows if not r["failed"]]


def _one(values: list[float], digits: int = 0) -> str:
    mean, _ = mean_sd(values)
    return "–" if math.isnan(mean) else f"{mean:,.{digits}f}"


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, size, mode): parameters, test metrics as mean ± sd over seeds, epochs, time, memory."""
    out = []
    for (model, size, mode), group in _groups(rows).items():
        out.append({"model": model, "size": size, "mode": mode, "seeds": len(group),
                    "failed": sum(r["failed"] for r in group), "trainable": _one(_values(group, "trainable")),
                    "total": _one(_values(group, "total")),
                    **{m: format_mean_sd(_values(group, m), 1 if m == "hd95" else 3) for m in METRICS},
                    "best epoch": format_mean_sd(_values(group, "best_epoch"), 1),
                    "epochs run": format_mean_sd(_values(group, "epochs"), 1),
                    "s / epoch": _one(_values(group, "seconds_per_epoch"), 1),
                    "peak MiB": _one(_values(group, "peak_memory_mib"))})
    return out


def structure_rows(rows: list[dict[str, Any]], structures: list[str]) -> list[dict[str, Any]]:
    """Per (model, size, mode): test Dice of each structure, mean ± sd over seeds."""
    return [{"model": model, "size": size, "mode": mode,
             **{s: format_mean_sd(_values(group, f"dice/{s}")) for s in structures}}
            for (model, size, mode), group in _groups(rows).items()]


def paired_tests(config: BenchConfig, folder: Path, specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Reference mode against every other mode, per model and size: Wilcoxon signed-rank over test patients on
    per-patient Dice averaged over seeds (failed runs left out)."""
    dice: dict[Group, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for spec in specs:
        run = folder / "runs" / spec.name
        if not (run / "failed.txt").is_file():
            for case, value in patient_dice(run).items():
                dice[(spec.model, spec.size_label, spec.mode)][case].append(value)
    rows = []
    for (model, size, mode), per_case in dice.items():
        reference = dice.get((model, size, config.reference))
        if mode == config.reference or reference is None:
            continue
        cases = sorted(set(per_case) & set(reference))
        test = wilcoxon_paired([float(np.nanmean(reference[c])) for c in cases],
                               [float(np.nanmean(per_case[c])) for c in cases])
        rows.append({"model": model, "size": size, "comparison": f"{config.reference} vs {mode}", "patients": test.n,
                     "mean Δ Dice": f"{test.mean_difference:+.3f}", "median Δ Dice": f"{test.median_difference:+.3f}",
                     "W": f"{test.statistic:.1f}", "p": f"{test.p_value:.3g}",
                     "rank-biserial r": f"{test.effect_size:+.2f}"})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as a GitHub Markdown table."""
    if not rows:
        return "(none)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _colors(modes: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {mode: cmap(i % 10) for i, mode in enumerate(modes)}


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_dice_vs_parameters(rows: list[dict[str, Any]], config: BenchConfig) -> bytes:
    colors, markers = _colors(config.modes), dict(zip(dict.fromkeys(r["size"] for r in rows), "osD^v<>"))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (model, size, mode), group in _groups(rows).items():
        x, (y, sd) = mean_sd(_values(group, "trainable"))[0], mean_sd(_values(group, "dice"))
        if not math.isnan(y):
            ax.errorbar(x, y, yerr=sd, fmt=markers[size], color=colors[mode], capsize=3,
                        label=f"{mode}, {model}, {size} cases")
    ax.set(xscale="log", xlabel="trainable parameters", ylabel="test Dice (mean ± sd over seeds)",
           title="Dice against trainable parameters")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_dice_vs_size(rows: list[dict[str, Any]], config: BenchConfig) -> bytes:
    colors = _colors(config.modes)
    fig, axes = plt.subplots(1, len(config.models), figsize=(5.5 * len(config.models), 4), squeeze=False)
    for ax, model in zip(axes[0], config.models):
        for mode in config.modes:
            points = []
            for (m, size, md), group in _groups(rows).items():
                if m == model and md == mode and _values(group, "train_cases"):
                    points.append((_values(group, "train_cases")[0], *mean_sd(_values(group, "dice"))))
            if points:
                x, y, sd = map(np.asarray, zip(*sorted(points)))
                ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, color=colors[mode], label=mode)
        ax.set(xlabel="training cases", ylabel="test Dice (mean ± sd over seeds)", title=model)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _curve(run: Path) -> tuple[list[int], list[float]]:
    points = [(int(r["epoch"]), _float(r["val_dice"])) for r in _read_csv(run / "metrics.csv") if r.get("val_dice")]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curves(folder: Path, specs: list[RunSpec], config: BenchConfig) -> bytes:
    colors = _colors(config.modes)
    panels = list(dict.fromkeys((s.model, s.size_label) for s in specs))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (model, size) in zip(axes[0], panels):
        for mode in config.modes:
            for k, spec in enumerate(s for s in specs if (s.model, s.size_label, s.mode) == (model, size, mode)):
                run = folder / "runs" / spec.name
                if not (run / "failed.txt").is_file():
                    ax.plot(*_curve(run), color=colors[mode], alpha=0.8, lw=1.2, label=mode if k == 0 else None)
        ax.set(xlabel="epoch", ylabel="validation Dice", title=f"{model}, {size} training cases")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def spectra_rows(folder: Path, specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Effective rank of every recorded weight of every run at every recorded epoch."""
    rows = []
    for spec in specs:
        path = folder / "runs" / spec.name / "spectra.json"
        if path.is_file():
            record = json.loads(path.read_text())
            for layer, series in record["layers"].items():
                for epoch, values in zip(record["epochs"], series):
                    rows.append({"run": spec.name, "mode": spec.mode, "model": spec.model, "size": spec.size_label,
                                 "seed": spec.seed, "layer": layer, "epoch": epoch, "max_rank": len(values),
                                 "effective_rank": round(spectrum_effective_rank(values), 3),
                                 "top_singular_share": round(values[0] ** 2 / max(sum(v * v for v in values), 1e-300), 4)})
    return rows


def plot_spectra(folder: Path, specs: list[RunSpec], config: BenchConfig, layers: int = 6) -> bytes:
    """Normalised singular values of up to ``layers`` weights (largest size, first seed): every mode's final
    weights (solid) and at initialisation (dotted)."""
    chosen = [s for s in specs if s.seed == config.seeds[0] and s.size == config.case_counts[-1]
              and s.model == config.models[0]]
    records = {s.mode: json.loads(p.read_text()) for s in chosen
               if (p := folder / "runs" / s.name / "spectra.json").is_file()}
    reference = records.get(config.reference) or next(iter(records.values()), {"layers": {}})
    names = list(reference["layers"])
    names = [names[i] for i in np.linspace(0, len(names) - 1, min(layers, len(names))).round().astype(int)] if names else []
    colors = _colors(config.modes)
    cols = 3
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        for mode, record in records.items():
            series = record["layers"].get(name)
            if series:
                for values, style, label in ((series[-1], "-", mode), (series[0], ":", None)):
                    s = np.asarray(values)
                    ax.plot(np.arange(1, s.size + 1), s / max(s[0], 1e-300), style, color=colors[mode], label=label)
        ax.set(yscale="log", title=name, xlabel="index", ylabel="σ / σ₁")
        ax.title.set_fontsize(8)
        ax.grid(alpha=0.3)
    if names:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle("singular values of weights: final (solid), at the start (dotted)")
    fig.tight_layout()
    return _png(fig)


def _time_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The bench's run time: the runs' wall times (training and test evaluation) summed, and their longest."""
    times = [r["wall_seconds"] for r in rows if "wall_seconds" in r]
    if not times:
        return []
    untimed = len(rows) - len(times)
    return [f"Run time: {sum(times) / 60:.0f} min summed over {len(times)} runs (training and test evaluation of "
            f"each; longest {max(times) / 60:.1f} min)"
            + (f"; {untimed} runs without a recorded time" if untimed else "") + ".", ""]


def write_report(config: BenchConfig, folder: Path, specs: list[RunSpec], name: str = "bench",
                 doc: str | Path | None = None, command: str | None = None) -> Path:
    """Write ``report/`` (report.md, runs.csv, summary.csv, structures.csv, tests.csv, ranks.csv, PNGs); with
    ``doc``, also this bench's section of that Markdown file and its plots under ``<doc folder>/img/``."""
    out = folder / "report"
    rows = [run_row(s, folder / "runs" / s.name) for s in specs]
    structures = sorted({k.split("/", 1)[1] for r in rows for k in r if k.startswith("dice/")})
    summary, per_structure = summary_rows(rows), structure_rows(rows, structures)
    tests = paired_tests(config, folder, specs)
    ranks = spectra_rows(folder, specs)
    plots = {"dice_vs_parameters": plot_dice_vs_parameters(rows, config),
             "dice_vs_size": plot_dice_vs_size(rows, config),
             "learning_curves": plot_learning_curves(folder, specs, config),
             "spectra": plot_spectra(folder, specs, config)}
    for file, table in (("runs.csv", rows), ("summary.csv", summary), ("structures.csv", per_structure),
                        ("tests.csv", tests), ("ranks.csv", ranks)):
        if table:
            write_atomic(out / file, _csv(table))
    for plot, png in plots.items():
        write_atomic(out / f"{plot}.png", png)
    failed = [r["run"] for r in rows if r["failed"]]
    when = datetime.datetime.now().astimezone()
    body = [f"Bench `{name}`: models {', '.join(config.models)}; modes {', '.join(config.modes)}; training sizes "
            f"{', '.join(config.sizes)} cases; seeds {', '.join(map(str, config.seeds))}. Every run trains "
            f"{f'at least {config.min_epochs} epochs and ' if 0 < config.min_epochs < config.max_epochs else ''}until its "
            f"validation Dice is {config.patience} epochs past its best (at most {config.max_epochs} epochs), keeps "
            "its best checkpoint and is scored on the same held-out test patients (split seed "
            f"{config.split_seed}).", "",
            *([f"Command: `{command}`  "] if command else []), f"Date: {when:%Y-%m-%d %H:%M %Z}  ",
            f"Machine: {machine_line()}", "", *_time_lines(rows),
            "Test metrics, mean ± sd over seeds (each seed: mean over test patients of the mean over contoured "
            "structures; HD95 in mm):", "", markdown(summary).rstrip(), "",
            f"Paired test, `{config.reference}` against each mode: two-sided Wilcoxon signed-rank over test "
            "patients on per-patient Dice averaged over seeds (scipy); Δ = reference − other; rank-biserial r > 0 "
            "when the reference wins more pairs:", "", markdown(tests).rstrip(), "",
            "Test Dice per structure, mean ± sd over seeds:", "", markdown(per_structure).rstrip(), ""]
    if failed:
        body += [f"Failed runs (non-finite loss): {', '.join(failed)}", ""]
    write_atomic(out / "report.md", "\n".join([f"# Bench {name}", "", *body,
                                               *[f"![{p}]({p}.png)" for p in PLOTS]]) + "\n")
    if doc is not None:
        doc = Path(doc)
        images = doc.parent / "img"
        for plot, png in plots.items():
            write_atomic(images / f"bench-{name}-{plot}.png", png)
        heading = f"## Bench {name} (hqctf bench)"
        replace_section(doc, heading, "\n".join([heading, "", *body,
                                                 *[f"![{p}](img/bench-{name}-{p}.png)" for p in PLOTS]]) + "\n\n")
    return out
