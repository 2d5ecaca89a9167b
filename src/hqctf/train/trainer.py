"""``hqctf train``: one run of one mode, with validation, checkpoints, resume and DistributedDataParallel."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import resource
import time
import warnings
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..atomic import write_atomic, write_json_atomic
from ..data.cache import CaseCache
from ..data.case import Case
from ..data.formats import open_source
from ..data.sampling import PatchDataset, SliceDataset
from ..data.source import Source
from ..data.splits import load_splits, make_splits, save_splits
from ..qpg import count_parameters, merge
from ..qpg.bank import check_trainable, generators
from ..quantum.backends import BackendError
from ..qpg.diagnostics import weight_spectra
from .config import ConfigError, TrainConfig, load_config
from .distributed import World, all_mean, broadcast, setup, teardown
from .figures import run_curves_png
from .loss import MarginalDiceCELoss
from .models import build_model, logits_of, parameter_groups
from .plausibility import RANGES_FILE, volume_ranges
from .schedule import WarmupSchedule
from .cpu_layout import cpu_inference_network
from .validate import summarise, validate_cases
from .views import axial_overlay_png, busiest_slice, display_affine

LOWER_IS_BETTER = ("hd95", "loss")
CONFIG_FILE, CHECKPOINT_LAST, CHECKPOINT_BEST, SPLITS_FILE = "config.yaml", "last.pt", "best.pt", "splits.json"
SPECTRA = "spectra.json"
#: seed of the shuffle from which ``data.train_cases`` takes its first N cases (fixed: subsets nest across seeds)
SUBSET_SEED = 0


def training_subset(train_ids: list[str], n: int | None) -> list[str]:
    """The first ``n`` of a fixed shuffle of ``train_ids`` (all when ``n`` is None), in their original order."""
    if n is None:
        return list(train_ids)
    order = np.random.default_rng(SUBSET_SEED).permutation(len(train_ids))[:n]
    return [train_ids[i] for i in sorted(order)]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves a truncated checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def _logger(run: Path, main: bool) -> logging.Logger:
    log = logging.getLogger(f"hqctf.train.{run}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.handlers.clear()
    if main:
        handler = logging.FileHandler(run / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    return log


def validated(history: list[dict[str, float]]) -> str:
    """The latest validation Dice of a run's history, for the progress bar (``not validated yet`` before one)."""
    rows = [row for row in history if "val_dice" in row]
    return f"val Dice {rows[-1]['val_dice']:.3f} (epoch {rows[-1]['epoch']})" if rows else "not validated yet"


def open_cases(config: TrainConfig) -> tuple[Source, CaseCache, list[str]]:
    """The run's data source, its preprocessed-case cache and the case ids it uses (``data.max_cases``)."""
    cfg = config.data
    source = open_source(cfg.path, format=cfg.format, labels=cfg.labels or None, missing="unknown", cache_dir=cfg.cache)
    return source, CaseCache(cfg.cache, source, cfg.preprocess), source.case_ids()[: cfg.max_cases]


def split_cases(config: TrainConfig, cases: list[Case]) -> list[dict[str, list[str]]]:
    """Folds (and test set) of ``cases`` by patient, seeded by ``data.split_seed`` (else the run's seed)."""
    cfg = config.data
    try:
        return make_splits([c.case_id for c in cases], [c.patient_id for c in cases], n_folds=cfg.n_folds,
                           test_fraction=cfg.test_fraction, seed=config.seed if cfg.split_seed is None else cfg.split_seed)
    except ValueError as exc:
        raise ConfigError(f"data.n_folds / data.test_fraction: {exc} ({len(cases)} cases)") from None


def data_workers(setting: int | str, processes: int = 1) -> int:
    """DataLoader workers per training process: ``setting`` itself, or for ``auto`` the CPU cores this process may
    use (its affinity) shared by ``processes`` training processes, less one for each of them, at most 4."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(4, cores // processes - 1))


class Trainer:
    """Prepares data, model and optimiser for a config, then trains, validates and writes the run folder.

    Args:
        config: the resolved training config.
        resume: continue from ``<out>/last.pt`` (model, optimiser, schedule, RNG states, epoch, step, history).
        progress: show a rich progress bar (rank 0 only).
    """

    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        config = replace(config, out=str(Path(config.out).absolute()),
                         data=replace(config.data, path=str(Path(config.data.path).absolute()),
                                      cache=str(Path(config.data.cache).absolute())))
        self.config, self.resume, self.show_progress = config, resume, progress
        self.world: World = setup(config.device)
        self.run = Path(config.out)
        self._check_folder()
        _seed_everything(config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self._open_data()
        self._prepare_model()  # before any case is read: a back-end's errors (device, wires, plugin) come at start
        self._prepare_data()
        self._prepare_folder()  # only now, with data and model ready: a failed start leaves no run folder
        self.log = _logger(self.run, self.world.main)
        if resume:
            self._load(self.run / CHECKPOINT_LAST)

    # -- set-up ---------------------------------------------------------------------------------------------
    def _check_folder(self) -> None:
        last = self.run / CHECKPOINT_LAST
        if self.resume and not last.is_file():
            raise ConfigError(f"{self.run}: no {CHECKPOINT_LAST} to resume from")
        if not self.resume and last.is_file():
            raise ConfigError(f"{self.run}: run folder already holds a run; use --resume or another --set out=...")

    def _prepare_folder(self) -> None:
        if self.world.main:
            self.run.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run / CONFIG_FILE, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
            write_json_atomic(self.run / RANGES_FILE, volume_ranges(self.train_cases))  # checked by `hqctf predict`
            if not (self.run / SPLITS_FILE).is_file():
                save_splits(self.run / SPLITS_FILE, self.splits)
        self.world.barrier()

    def _open_data(self) -> None:
        """The data source, its cache and case ids, and the label map (no case read yet)."""
        source, self.cache, self.case_ids = open_cases(self.config)
        self.labels = dict(source.labels)
        self.n_classes = max(self.labels, default=0) + 1

    def _prepare_data(self) -> None:
        cfg = self.config.data
        cache, ids = self.cache, self.case_ids
        if self.world.main:
            cache.build(ids, progress=self.show_progress)
        self.world.barrier()
        cases = {case_id: cache.get(case_id) for case_id in ids}
        splits_path = self.run / SPLITS_FILE
        # the same in every process: a function of the case ids, patients and split seed
        splits = load_splits(splits_path) if splits_path.is_file() else split_cases(self.config, list(cases.values()))
        self.splits = splits
        if not 0 <= cfg.fold < len(splits):
            raise ConfigError(f"data.fold {cfg.fold}: splits.json has folds 0..{len(splits) - 1}")
        train_ids = splits[cfg.fold]["train"]
        if cfg.train_cases is not None and cfg.train_cases > len(train_ids):
            raise ConfigError(f"data.train_cases {cfg.train_cases}: fold {cfg.fold} has only {len(train_ids)} "
                              "training cases")
        self.train_cases = [cases[i] for i in training_subset(train_ids, cfg.train_cases)]
        self.val_cases = [cases[i] for i in splits[cfg.fold]["val"]][: self.config.validation.max_cases]
        self._check_patch(self.train_cases)
        sampler_cls = SliceDataset if self.config.model.spatial_dims == 2 else PatchDataset
        self.dataset = sampler_cls(self.train_cases, tuple(cfg.patch_size), foreground_fraction=cfg.foreground_fraction,
                                   samples_per_epoch=cfg.samples_per_epoch, augment=cfg.augment,
                                   seed=self.config.seed, max_label=self.n_classes - 1)

    def _check_patch(self, cases: list[Case]) -> None:
        dims = self.config.model.spatial_dims
        largest = np.max([c.image.shape[:dims] for c in cases], axis=0)
        if np.any(np.asarray(self.config.data.patch_size) > 2 * largest):
            raise ConfigError(
                f"data.patch_size {list(self.config.data.patch_size)} is impossible for this data: the largest "
                f"preprocessed case is {largest.tolist()} voxels (use at most twice that; pick multiples of 16)"
            )

    def _prepare_model(self) -> None:
        torch.manual_seed(self.config.seed)
        model = build_model(self.config.model, self.config.mode, self.n_classes).to(self.world.device)
        try:
            check_trainable(generators(model))
        except BackendError as exc:
            raise ConfigError(f"mode.qpg: {exc}") from None
        self.model = model
        self.trainable, self.total = count_parameters(model)
        self.ddp = DistributedDataParallel(model) if self.world.size > 1 else model
        optim = self.config.optim
        groups = parameter_groups(model, optim.lr, optim.weight_decay, optim.group_lr)
        self.optimizer = torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay, eps=optim.eps)
        self.batch = self.config.optim.batch_size // self.world.size
        if self.batch * self.world.size != self.config.optim.batch_size:
            raise ConfigError(f"optim.batch_size {self.config.optim.batch_size} must be divisible by the "
                              f"{self.world.size} processes")
        self.steps_per_epoch = self.config.steps_per_epoch
        self.schedule = WarmupSchedule(self.optimizer, self.steps_per_epoch * self.config.optim.epochs,
                                       self.steps_per_epoch * self.config.optim.warmup_epochs, self.config.optim.schedule)
        self.loss_fn = MarginalDiceCELoss()
        self.epoch, self.step, self.history = 0, 0, []
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": None, "metrics": {}}

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "epoch": self.epoch, "step": self.step,
                "history": self.history, "best": self.best, "rng": _rng_state(), "labels": self.labels,
                "config": self.config.to_dict()}

    def _load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.world.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.epoch, self.step, self.history, self.best = state["epoch"], state["step"], state["history"], state["best"]
        _set_rng_state(state["rng"])
        self.log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # -- training -----------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.dataset.set_epoch(self.epoch)
        sampler = DistributedSampler(self.dataset, self.world.size, self.world.rank, shuffle=False) if self.world.size > 1 else None
        return DataLoader(self.dataset, batch_size=self.batch, sampler=sampler, num_workers=data_workers(self.config.data.workers, self.world.size),
                          drop_last=False)

    def _train_step(self, batch: dict[str, Any]) -> float:
        device = self.world.device
        amp = self.config.optim.amp and device.type == "cuda"
        self.schedule.set(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = logits_of(self.ddp(batch["image"].to(device)))
        loss = self.loss_fn(logits.float(), batch["label"].to(device), batch["known"].to(device))
        loss.backward()
        value = all_mean(float(loss.item()), self.world)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss became {value} at epoch {self.epoch + 1}, step {self.step + 1}; stopped, the last good "
                f"checkpoint is {self.run / CHECKPOINT_LAST}"
            )
        self.optimizer.step()
        self.step += 1
        return value

    @property
    def label_names(self) -> list[str]:
        """Name of every output channel: background, then the structures by label value."""
        return ["background"] + [self.labels.get(v, f"label_{v}") for v in range(1, self.n_classes)]

    def inference_model(self) -> nn.Module:
        """A plain copy of the network for prediction: generated weights merged (generated once, not per window),
        laid out for the CPU there (`cpu_inference_network`)."""
        model = merge(self.model) if generators(self.model) else self.model
        if self.world.device.type == "cpu":
            model = cpu_inference_network(model, self.config.model.spatial_dims)
        return model

    def _validate(self, on_case: Callable[[int, int], None] | None = None) -> dict[str, float]:
        v = self.config.validation
        per_case, predictions = validate_cases(self.inference_model(), self.val_cases, self.config.model.spatial_dims,
                                               self.config.data.patch_size, v.overlap, v.tolerance_mm, self.world.device,
                                               on_case)
        summary = summarise(per_case)
        self._overlays(predictions)
        return summary

    def _score(self, row: dict[str, float]) -> float:
        metric = self.config.validation.metric
        value = row.get(metric if metric == "loss" else f"val_{metric}", float("nan"))
        return -value if metric in LOWER_IS_BETTER else value

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; returns the summary also written to ``summary.json``."""
        cfg = self.config
        self.log.info("start: %s mode=%s model=%s %dD, %d train / %d val cases, trainable %d of %d parameters",
                      self.run, cfg.mode.name, cfg.model.name, cfg.model.spatial_dims, len(self.train_cases),
                      len(self.val_cases), self.trainable, self.total)
        writer = self._tensorboard()
        if self.epoch == 0:
            self._record_spectra()
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}")]
        total_steps = self.steps_per_epoch * cfg.optim.epochs
        with Progress(*columns, disable=not (self.show_progress and self.world.main), transient=False) as progress:
            task = progress.add_task(f"{cfg.mode.name}", total=total_steps, completed=self.step, info="")
            while self.epoch < cfg.optim.epochs and not self.plateaued:
                started = time.perf_counter()
                losses = []
                for batch in self._loader():
                    losses.append(self._train_step(batch))
                    progress.update(task, advance=1, info=f"loss {losses[-1]:.4f}  {validated(self.history)}")
                self.epoch += 1
                row = {"epoch": self.epoch, "step": self.step, "loss": float(np.mean(losses)),
                       "lr": self.optimizer.param_groups[0]["lr"], "epoch_seconds": time.perf_counter() - started}
                if self.epoch % cfg.validation.every == 0 or self.epoch == cfg.optim.epochs:
                    def shown(done: int, total: int) -> None:
                        progress.update(task, info=f"loss {losses[-1]:.4f}  validating case {done}/{total}")

                    metrics = self._validate(shown) if self.world.main else None  # rank 0 validates, the others wait
                    row.update({f"val_{k}": v for k, v in broadcast(metrics, self.world).items()})
                    self.schedule.observe(self._score(row))
                    self._record_spectra()
                self.history.append(row)
                progress.update(task, info=f"loss {row['loss']:.4f}  {validated(self.history)}")
                self._end_epoch(row, writer)
                self.best = broadcast(self.best if self.world.main else None, self.world)
        if writer is not None:
            writer.close()
        summary = self._summary()
        if self.world.main:
            write_json_atomic(self.run / "summary.json", summary)
        self.log.info("done: best %s %.4f at epoch %s", cfg.validation.metric, summary["best_score"], summary["best_epoch"])
        return summary

    @property
    def plateaued(self) -> bool:
        """True once ``optim.patience`` epochs have passed since the best validation score (or since the start),
        and at least ``optim.min_epochs`` have run."""
        optim = self.config.optim
        return (optim.patience is not None and self.epoch >= optim.min_epochs
                and self.epoch - (self.best["epoch"] or 0) >= optim.patience)

    def _record_spectra(self) -> None:
        """Append the current weights' singular values to ``spectra.json`` (``validation.spectra``, rank 0)."""
        if not (self.config.validation.spectra and self.world.main):
            return
        path = self.run / SPECTRA
        record = json.loads(path.read_text()) if path.is_file() else {"epochs": [], "layers": {}}
        if self.epoch in record["epochs"]:
            return
        record["epochs"].append(self.epoch)
        for name, values in weight_spectra(self.model).items():
            record["layers"].setdefault(name, []).append(values)
        write_json_atomic(path, record)

    def _end_epoch(self, row: dict[str, float], writer: Any) -> None:
        if not self.world.main:
            return
        improved = "val_dice" in row and self._score(row) > self.best["score"]
        if improved:
            self.best = {"score": self._score(row), "epoch": self.epoch,
                         "metrics": {k: v for k, v in row.items() if k.startswith("val_")}}
        state = self._state()
        save_checkpoint(self.run / CHECKPOINT_LAST, state)
        if improved:
            save_checkpoint(self.run / CHECKPOINT_BEST, state)
        self._write_metrics()
        write_atomic(self.run / "curves.png", run_curves_png(self.history, self.config.validation.metric))
        if writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and math.isfinite(value):
                    writer.add_scalar(key, value, self.epoch)
            writer.flush()
        self.log.info("epoch %d: %s", self.epoch, "  ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                             if k in ("loss", "lr", "val_dice", "val_hd95", "epoch_seconds")))

    def _write_metrics(self) -> None:
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(self.history)
        write_atomic(self.run / "metrics.csv", text.getvalue())

    def _tensorboard(self) -> Any:
        if not self.world.main:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(log_dir=str(self.run / "tensorboard"))

    def _overlays(self, predictions: dict[str, np.ndarray]) -> None:
        if self.config.validation.overlays < 1:
            return
        names = self.label_names
        folder = self.run / "overlays"
        for case in self.val_cases[: self.config.validation.overlays]:
            label, affine = np.asarray(case.label), display_affine(case)
            z = busiest_slice(label, affine)
            panels = {"reference": label, "prediction": predictions[case.case_id]}
            png = axial_overlay_png(case.image, panels, affine, z, names, f"{case.case_id}, slice {z}, epoch {self.epoch}")
            write_atomic(folder / f"{case.case_id}.png", png)

    def _summary(self) -> dict[str, Any]:
        times = [r["epoch_seconds"] for r in self.history]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.world.device.type == "cuda":
            peak_gpu = torch.cuda.max_memory_allocated(self.world.device) / 2**20
        else:
            peak_gpu = None
        return {"mode": self.config.mode.name, "model": self.config.model.name,
                "spatial_dims": self.config.model.spatial_dims, "trainable_parameters": self.trainable,
                "total_parameters": self.total, "epochs": self.epoch, "steps": self.step,
                "best_metric": self.config.validation.metric, "best_score": self.best["score"],
                "best_epoch": self.best["epoch"], "best": self.best["metrics"],
                "stopped": "patience" if self.plateaued else "epochs",
                "seconds_per_epoch": float(np.mean(times)) if times else None,
                "peak_memory_mib": peak, "peak_gpu_memory_mib": peak_gpu, "processes": self.world.size,
                "train_cases": len(self.train_cases), "val_cases": len(self.val_cases), "labels": self.labels}


def train_run(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train one run (in every process of a torchrun launch); returns the summary."""
    try:
        return Trainer(config, resume=resume, progress=progress).fit()
    finally:
        teardown()


def resume_config(run: str | Path) -> TrainConfig:
    """The resolved config saved in a run folder, its ``out`` set to that folder (the stored absolute ``out`` is
    where the run was first trained, another folder once the run is copied or moved)."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is {run} a run folder?")
    return replace(load_config(path), out=str(Path(run).absolute()))


def read_summary(run: str | Path) -> dict[str, Any]:
    """A finished run's ``summary.json``."""
    path = Path(run) / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read run summary ({type(exc).__name__})") from None
