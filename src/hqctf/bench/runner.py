"""Train and evaluate a bench's runs: skip finished ones, resume interrupted ones, one shard at a time."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..atomic import write_atomic, write_json_atomic
from ..train.config import ConfigError, TrainConfig, build_config
from ..train.evaluate import evaluate_run
from ..train.trainer import CHECKPOINT_LAST, open_cases, split_cases, train_run
from .config import BenchConfig, BenchError
from .plan import RunSpec, plan, shard
from .report import TIME_FILE, write_report

BENCH_FILE, FAILED_FILE, SPLIT = "bench.yaml", "failed.txt", "test"


def _identity(base: TrainConfig) -> dict:
    """What makes two benches' runs comparable: the training config before the per-run keys."""
    values = base.to_dict()
    values.pop("out")
    return values


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.append(f"{prefix}{key}")
    return keys


def check_folder(folder: Path, base: TrainConfig) -> None:
    """Refuse a folder that holds something other than this bench's runs (raises `BenchError`)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise BenchError(f"{folder}: exists and is not a folder")
    stored = folder / BENCH_FILE
    if not stored.is_file():
        if any(folder.iterdir()):
            raise BenchError(f"{folder}: not empty and holds no {BENCH_FILE}; choose a new or empty bench folder")
        return
    try:
        old = yaml.safe_load(stored.read_text())["train"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        raise BenchError(f"{stored}: unreadable; is {folder} a bench folder?") from None
    try:  # resolved again, so options added since it was written take their defaults
        old = _identity(build_config(TrainConfig, {**old, "out": base.out}))
    except (ConfigError, TypeError, ValueError) as exc:
        raise BenchError(f"{stored}: its training config no longer resolves ({exc})") from None
    changed = _differences(old, _identity(base))
    if changed:
        raise BenchError(f"{folder}: holds another bench's runs (its training config differs in "
                         f"{', '.join(changed[:4])}); choose another bench folder")


def check_sizes(config: BenchConfig, base: TrainConfig, progress: bool) -> int:
    """The fold's number of training cases; raises `BenchError` when a size is larger."""
    _, cache, ids = open_cases(base)
    cache.build(ids, progress=progress)
    splits = split_cases(base, [cache.get(i) for i in ids])
    if not 0 <= base.data.fold < len(splits):
        raise BenchError(f"data.fold {base.data.fold}: the split has folds 0..{len(splits) - 1}")
    n_train = len(splits[base.data.fold]["train"])
    too_large = [n for n in config.case_counts if n is not None and n > n_train]
    if too_large:
        raise BenchError(f"sizes: {too_large[0]} is more than the {n_train} training cases of fold "
                         f"{base.data.fold} ({len(ids)} cases, test fraction {base.data.test_fraction})")
    return n_train


def finished(run: Path) -> bool:
    """True when a run was trained and evaluated, or failed for good (a non-finite loss)."""
    return (run / FAILED_FILE).is_file() or ((run / "summary.json").is_file()
                                              and (run / "evaluation" / SPLIT / "summary.csv").is_file())


def _logger(folder: Path) -> logging.Logger:
    log = logging.getLogger(f"hqctf.bench.{folder}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.handlers.clear()
    handler = logging.FileHandler(folder / "bench.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    return log


def _add_seconds(run: Path, seconds: float) -> None:
    """Add ``seconds`` to the run's bench wall time (``bench-time.json``: training and test evaluation, summed
    over the attempts of an interrupted run)."""
    path = run / TIME_FILE
    before = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    write_json_atomic(path, {"seconds": before + seconds})


def _train_and_evaluate(spec: RunSpec, base: TrainConfig, runs: Path, log: logging.Logger) -> None:
    started = time.perf_counter()
    try:
        _train_then_test(spec, base, runs, log)
    finally:
        if (runs / spec.name).is_dir():
            _add_seconds(runs / spec.name, time.perf_counter() - started)


def _train_then_test(spec: RunSpec, base: TrainConfig, runs: Path, log: logging.Logger) -> None:
    run = runs / spec.name
    if not (run / "summary.json").is_file():
        resume = (run / CHECKPOINT_LAST).is_file()
        log.info("%s: %s", spec.name, "resuming" if resume else "training")
        try:
            train_run(spec.config(base, runs), resume=resume, progress=False)
        except FloatingPointError as exc:  # diverged: a result, not a crash; it stays failed on rerun
            write_atomic(run / FAILED_FILE, f"{exc}\n")
            log.info("%s: failed: %s", spec.name, exc)
            return
    device = "cuda" if base.device != "cpu" and torch.cuda.is_available() else "cpu"
    _, summary = evaluate_run(run, split=SPLIT, device=device)
    log.info("%s: test Dice %.4f", spec.name, summary["mean"]["dice_mean"])


def run_bench(config: BenchConfig, folder: str | Path, shard_of: tuple[int, int] = (1, 1), progress: bool = True,
              name: str = "bench", doc: str | Path | None = None, command: str | None = None) -> Path | None:
    """Train and evaluate this shard's unfinished runs; when the whole bench is finished, write its report.

    Args:
        config: the bench.
        folder: bench folder (``bench.yaml``, ``bench.log``, ``runs/<run>/``, ``report/``).
        shard_of: (i, n): run only every n-th run from the i-th, so processes or machines can share a bench.
        progress: rich progress bar of runs with an ETA.
        name: the bench's name in the report's heading.
        doc: Markdown file (e.g. docs/benchmarks.md) whose section for this bench to write with the report.
        command: the command line, quoted in the report.

    Returns:
        the report folder, or None while runs of other shards are unfinished.
    """
    folder = Path(folder)
    base = config.base_config()
    check_folder(folder, base)
    check_sizes(config, base, progress)
    runs = folder / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / BENCH_FILE, yaml.safe_dump({"bench": config.to_dict(), "train": _identity(base)},
                                                     sort_keys=False))
    log = _logger(folder)
    everything = plan(config)
    mine = shard(everything, *shard_of)
    todo = [s for s in mine if not finished(runs / s.name)]
    log.info("bench %s: %d runs, shard %d/%d has %d, %d to do", name, len(everything), *shard_of, len(mine), len(todo))
    columns = [TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    started = time.perf_counter()
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("runs", total=len(mine), completed=len(mine) - len(todo), info="")
        for spec in todo:
            bar.update(task, info=spec.name)
            _train_and_evaluate(spec, base, runs, log)
            bar.advance(task)
    log.info("shard %d/%d done in %.1f min", *shard_of, (time.perf_counter() - started) / 60)
    left = [s for s in everything if not finished(runs / s.name)]
    if left:
        log.info("%d runs of other shards unfinished; the report waits for them", len(left))
        return None
    return write_report(config, folder, everything, name=name, doc=doc, command=command)
