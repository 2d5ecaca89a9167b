"""``hqctf demo``: the embedded OpenKBP sample trained classically and with QPG through the training pipeline.

Both modes are ordinary runs of the bundled ``openkbp-2d`` config (`hqctf.train.Trainer`: the same data source,
preprocessing cache, slice sampler, loss, optimiser groups and whole-case validation as ``hqctf train``), shortened
by the overrides of `demo_overrides`, with the same seed, patients, sampled patches and steps.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ..atomic import write_atomic
from ..data import sample_dataset_dir
from ..data.formats import open_source
from ..qpg import merge, trainable_report
from ..qpg.bank import generators
from .bundled import resolve_config_path
from .config import load_config
from .figures import curves_png
from .models import logits_of
from .trainer import Trainer
from .validate import predict_volume
from .views import axial_overlay_png, busiest_slice, display_affine

CONFIG = "openkbp-2d"
MODES = ("classical", "qpg")
DEFAULT_EPOCHS = 15
STEPS_PER_EPOCH = 20
BATCH_SIZE = 8
FEATURES = (16, 16, 32, 64, 128, 16)
#: Training patches: the organs of the body-cropped OpenKBP slices lie inside the central 64 x 64, and a quarter of
#: the whole slice's pixels makes a step 3-4x cheaper; validation predicts whole slices.
PATCH = (64, 64)
#: Folds of the patient split: one sixth of the cases (one of the sample's six) validates, the rest train.
FOLDS = 6


def demo_overrides(out: Path, mode: str, seed: int, dataset: Path, n_cases: int, *, epochs: int = DEFAULT_EPOCHS,
                   steps_per_epoch: int = STEPS_PER_EPOCH, batch_size: int = BATCH_SIZE,
                   features: tuple[int, ...] = FEATURES, patch: tuple[int, int] = PATCH,
                   max_cases: int | None = None) -> list[str]:
    """``--set`` overrides of the bundled config for one demo run (``out/runs/<mode>``, cache ``out/cache``).

    The patient split is fixed (split seed 0) whatever ``seed`` is; validation runs once, after the last epoch,
    on at most 4 held-out cases; the learning rates are constant (no warm-up or decay: 300 steps are too few for a
    schedule; with the bundled cosine schedule and 200 steps both modes stayed below Dice 0.2).
    """
    def listed(values: tuple[int, ...]) -> str:
        return "[" + ",".join(map(str, values)) + "]"

    return [f"out={out / 'runs' / mode}", f"seed={seed}", f"data.path={dataset}", "data.format=nnunet",
            f"data.cache={out / 'cache'}", f"data.max_cases={'null' if max_cases is None else max_cases}",
            "data.test_fraction=0", f"data.n_folds={min(FOLDS, n_cases)}", "data.split_seed=0", "data.workers=0",
            f"data.patch_size={listed(patch)}", "data.foreground_fraction=0.9", "data.augment=false",
            f"data.samples_per_epoch={steps_per_epoch * batch_size}", f"model.features={listed(features)}",
            f"mode.name={mode}", f"optim.epochs={epochs}", f"optim.batch_size={batch_size}", "optim.warmup_epochs=0",
            "optim.schedule=plateau",  # validated only after the last epoch, so the rate stays constant
            f"validation.every={epochs}", "validation.max_cases=4", "validation.overlays=0"]


def run_demo(
    out_dir: str | Path,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    data_dir: str | Path | None = None,
    *,
    steps_per_epoch: int = STEPS_PER_EPOCH,
    batch_size: int = BATCH_SIZE,
    features: tuple[int, ...] = FEATURES,
    patch: tuple[int, int] = PATCH,
    max_cases: int | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> dict:
    """Train the same UNet++ classically and with QPG (same seed, patients, patches and steps); write the results.

    Each mode is a run folder ``out_dir/runs/<mode>`` (replaced when the demo runs again); ``out_dir`` gets
    ``demo.log``, ``results.json``, ``overlay.png`` (the first validation case, both modes) and ``curves.png``.
    Returns the content of results.json.

    Raises:
        DataError: the dataset folder is missing or inconsistent.
        ConfigError: a setting the pipeline refuses (e.g. fewer than 2 cases).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    dataset = Path(data_dir).absolute() if data_dir is not None else sample_dataset_dir()
    n_cases = len(open_source(dataset, format="nnunet").case_ids()[:max_cases])
    out = Path(out_dir).absolute()
    log = _Log(console or Console())
    results: dict = {"dataset": str(dataset), "config": CONFIG, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
                     "steps": epochs * steps_per_epoch, "batch_size": batch_size, "seed": seed,
                     "model": "BasicUNetPlusPlus", "features": list(features), "patch_size": list(patch), "modes": {}}
    trainers: dict[str, Trainer] = {}
    for mode in MODES:
        overrides = demo_overrides(out, mode, seed, dataset, n_cases, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                   batch_size=batch_size, features=features, patch=patch, max_cases=max_cases)
        results.setdefault("overrides", [o for o in overrides if not o.startswith(("out=", "mode.name="))])
        run = out / "runs" / mode
        config = load_config(resolve_config_path(CONFIG), overrides)  # validated before the old run is replaced
        if run.exists():
            shutil.rmtree(run)
        start = time.perf_counter()
        trainer = Trainer(config, progress=progress)
        if mode == MODES[0]:
            _describe(trainer, results, log)
        log(f"[{mode}] trainable parameters {trainer.trainable:,} of {trainer.total:,}")
        if generators(trainer.model):
            log(trainable_report(trainer.model), show=False)  # the per-layer table goes to demo.log only
        summary = trainer.fit()
        results["modes"][mode] = _mode_results(trainer, summary, time.perf_counter() - start)
        results["modes"][mode]["run"] = str(run)
        if "merge_max_abs_diff" in results["modes"][mode]:
            log(f"[{mode}] merged into a plain network; max |generated - merged| output difference "
                f"{results['modes'][mode]['merge_max_abs_diff']:.2e}")
        log(f"[{mode}] validation mean Dice {results['modes'][mode]['val_mean_dice']:.4f}; trained in "
            f"{results['modes'][mode]['train_seconds']:.1f} s, {results['modes'][mode]['seconds']:.1f} s with "
            "validation")
        trainers[mode] = trainer
    table = _summary_table(results)
    log.console.print(table)
    log.lines.append(_table_text(table))
    _write_outputs(out, results, trainers)
    log(f"wrote demo.log, results.json, overlay.png, curves.png to {out} (runs in {out / 'runs'})")
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


def _describe(trainer: Trainer, results: dict, log: _Log) -> None:
    names = trainer.label_names[1:]
    results.update({"train_cases": [c.case_id for c in trainer.train_cases],
                    "val_cases": [c.case_id for c in trainer.val_cases], "label_names": trainer.label_names})
    log(f"data: {results['dataset']} (bundled config {CONFIG}, overrides: {' '.join(results['overrides'])})")
    log(f"train cases {results['train_cases']}, validation cases {results['val_cases']} (whole cases), "
        f"{len(names)} structures; {results['patch_size'][0]}x{results['patch_size'][1]} training patches")
    log(f"BasicUNetPlusPlus features={tuple(results['features'])}; {results['epochs']} epochs of "
        f"{results['steps_per_epoch']} steps, batch {results['batch_size']}, seed {results['seed']}")


def _mode_results(trainer: Trainer, summary: dict, seconds: float) -> dict:
    """Trainable counts, the validation Dice per structure and its mean, loss, times; for QPG also how far the
    merged plain network's output is from the generated one's."""
    best = summary["best"]
    dice = {n: _rounded(best.get(f"val_dice/{n}")) for n in trainer.label_names[1:]}
    entry = {"trainable_params": trainer.trainable, "total_params": trainer.total, "val_dice": dice,
             "val_mean_dice": _rounded(best.get("val_dice")), "final_loss": round(trainer.history[-1]["loss"], 4),
             "epoch_losses": [round(r["loss"], 4) for r in trainer.history],
             "train_seconds": round(sum(r["epoch_seconds"] for r in trainer.history), 2), "seconds": round(seconds, 2)}
    if generators(trainer.model):
        probe = torch.stack([trainer.dataset[i]["image"] for i in range(4)]).to(trainer.world.device)
        model = trainer.model.eval()
        with torch.no_grad():
            entry["merge_max_abs_diff"] = (logits_of(model(probe)) - logits_of(merge(model)(probe))).abs().max().item()
    return entry


def _rounded(value: float | None) -> float | None:
    return None if value is None or value != value else round(float(value), 4)


def _summary_table(results: dict) -> Table:
    modes = results["modes"]
    table = Table(title="validation Dice (whole held-out case)")
    table.add_column("organ")
    for mode in modes:
        table.add_column(mode, justify="right")
    for organ in results["label_names"][1:]:
        table.add_row(organ, *[_fmt(r["val_dice"][organ]) for r in modes.values()])
    table.add_row("mean", *[_fmt(r["val_mean_dice"]) for r in modes.values()])
    table.add_row("trainable", *[f"{r['trainable_params']:,}" for r in modes.values()])
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table_text(table: Table) -> str:
    capture = Console(width=100, record=True, file=io.StringIO())
    capture.print(table)
    return capture.export_text()


def _prediction(trainer: Trainer, case) -> np.ndarray:
    return predict_volume(trainer.inference_model(), case.image, 2, trainer.config.data.patch_size,
                          trainer.config.validation.overlap, trainer.world.device)


def _write_outputs(out: Path, results: dict, trainers: dict[str, Trainer]) -> None:
    write_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_atomic(out / "curves.png", curves_png({m: r["epoch_losses"] for m, r in results["modes"].items()},
                                                x_label="epoch"))
    first = next(iter(trainers.values()))
    case = first.val_cases[0]
    label, affine = np.asarray(case.label), display_affine(case)
    z = busiest_slice(label, affine)
    panels = {"reference": label}
    panels.update({f"{m} (mean Dice {_fmt(results['modes'][m]['val_mean_dice'])})": _prediction(t, case)
                   for m, t in trainers.items()})
    png = axial_overlay_png(case.image, panels, affine, z, results["label_names"],
                            f"validation case {case.case_id}, slice {z}")
    write_atomic(out / "overlay.png", png)
