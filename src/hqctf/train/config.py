"""``hqctf train`` configuration: nested dataclasses loaded from YAML, with ``--set key=value`` overrides.

Every field has help text; unknown keys and bad choices fail at start with the valid options listed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.preprocess import PreprocessConfig
from ..qpg.config import LoRAConfig, LowRankConfig, QPGConfig

MODES = ("classical", "qpg", "lora", "lowrank", "light", "hyper", "hyperprob", "frozen", "residual")
#: modes whose weights come from a QPG-style generator: QPG itself and its controls
QPG_MODES = ("qpg", "hyper", "hyperprob", "frozen", "residual")
CIRCUIT_MODES = ("qpg", "frozen", "residual")  # QPG_MODES with circuits (hyper, hyperprob: embeddings)
GENERATED_MODES = (*QPG_MODES, "lora", "lowrank")
LR_GROUPS = ("angles", "embedding", "mapping", "gain", "generator", "classical")
MODELS = ("unet", "unetpp")
SCHEDULES = ("cosine", "plateau")
BEST_METRICS = ("dice", "iou", "hd95", "surface_dice", "loss")


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line and lists the valid choices."""


def help_field(text: str, **kw: Any) -> Any:
    """A dataclass field with help text (shown by the CLI and the docs)."""
    return field(metadata={"help": text}, **kw)


@dataclass
class DataConfig:
    """Where the cases come from and how training samples are drawn."""

    path: str = help_field("dataset folder (nnU-Net raw, KiTS, DICOM, PNG slices, NIfTI)", default="")
    format: str | None = help_field("input format; None detects it", default=None)
    labels: dict[int, str] = help_field("DICOM/NIfTI only: label value -> structure name", default_factory=dict)
    cache: str = help_field("folder of preprocessed arrays, shared between runs", default=".hqctf-cache")
    preprocess: PreprocessConfig = help_field("resampling, orientation, HU clipping/z-scoring, body crop",
                                         default_factory=PreprocessConfig)
    patch_size: tuple[int, ...] = help_field("2D slice crop (H, W) or 3D patch (X, Y, Z) in voxels", default=(128, 128))
    foreground_fraction: float = help_field("share of samples centred on foreground", default=0.5)
    augment: bool = help_field("random flips, small rotations/scales and intensity changes", default=True)
    samples_per_epoch: int = help_field("training samples drawn per epoch", default=256)
    fold: int = help_field("cross-validation fold used for validation", default=0)
    n_folds: int = help_field("number of folds in splits.json", default=5)
    test_fraction: float = help_field("share of patients held out as test set", default=0.2)
    max_cases: int | None = help_field("use only the first N cases (quick runs)", default=None)
    split_seed: int | None = help_field("seed of the patient split into train/val/test; None: the run's seed "
                                   "(fix it to compare runs of several seeds on the same patients)", default=None)
    train_cases: int | None = help_field("train on N of the fold's training cases: the first N of a fixed shuffle, so "
                                    "a smaller N is a subset of a larger one, whatever the seed; None: all",
                                    default=None)
    workers: int | str = help_field("DataLoader worker processes per training process, or auto: one per spare CPU core "
                               "(of those this process may use, shared by the training processes), at most 4",
                               default="auto")


@dataclass
class ModelConfig:
    """The segmentation network (MONAI BasicUNet / BasicUNetPlusPlus)."""

    name: str = help_field(f"one of {MODELS}", default="unetpp")
    spatial_dims: int = help_field("2 for slices, 3 for volumes", default=2)
    features: tuple[int, ...] = help_field("six channel widths of the network", default=(32, 32, 64, 128, 256, 32))
    dropout: float = help_field("dropout probability", default=0.0)


@dataclass
class ModeConfig:
    """How the network's weights are trained."""

    name: str = help_field(f"one of {MODES}; hyper (learned embedding instead of circuits), hyperprob (its softmax "
                      "over the basis states: classical probabilities), frozen (untrained random circuits) and "
                      "residual (frozen random W0 + QPG update) are QPG's controls", default="classical")
    qpg: QPGConfig = help_field("QPG generator settings (also used by its controls)", default_factory=QPGConfig)
    lora: LoRAConfig = help_field("LoRA settings", default_factory=LoRAConfig)
    lowrank: LowRankConfig = help_field("low-rank generator settings", default_factory=LowRankConfig)
    light_width: float | None = help_field("light mode: channel multiplier (None: match the QPG trainable count)", default=None)


@dataclass
class OptimConfig:
    """AdamW with warm-up and a cosine or plateau schedule."""

    epochs: int = help_field("training epochs (the most, when patience is set)", default=50)
    patience: int | None = help_field("stop once the best validation score is this many epochs old; None: train all "
                                 "epochs", default=None)
    min_epochs: int = help_field("patience never stops a run before this many epochs (nor after `epochs`; "
                                 "the learning-rate schedule runs over `epochs`)", default=0)
    batch_size: int = help_field("samples per step (global, over all processes)", default=8)
    lr: float = help_field("peak learning rate", default=3e-3)
    group_lr: dict[str, float] = help_field(f"learning rate per parameter group, overriding lr: keys from {LR_GROUPS}",
                                       default_factory=dict)
    weight_decay: float = help_field("AdamW weight decay", default=1e-4)
    eps: float = help_field("AdamW epsilon", default=1e-8)
    warmup_epochs: int = help_field("linear warm-up epochs", default=1)
    schedule: str = help_field(f"one of {SCHEDULES}", default="cosine")
    amp: bool = help_field("mixed precision where the device supports it (CUDA)", default=True)


@dataclass
class ValidationConfig:
    """Validation with sliding-window inference on whole validation cases."""

    every: int = help_field("validate every N epochs", default=1)
    metric: str = help_field(f"metric choosing the best checkpoint, one of {BEST_METRICS}", default="dice")
    tolerance_mm: float = help_field("surface Dice tolerance in mm", default=2.0)
    overlap: float = help_field("sliding-window overlap", default=0.25)
    max_cases: int | None = help_field("validate on at most N cases", default=None)
    overlays: int = help_field("validation cases drawn as contour-overlay PNGs", default=3)
    spectra: bool = help_field("save the singular values of every conv weight (generated ones as generated) at the "
                          "start and at each validation, in spectra.json", default=False)


@dataclass
class TrainConfig:
    """A training run."""

    out: str = help_field("run folder", default="runs/run")
    seed: int = help_field("seed of initialisation, sampling and augmentation", default=0)
    device: str = help_field("cpu, cuda or auto", default="auto")
    data: DataConfig = help_field("data", default_factory=DataConfig)
    model: ModelConfig = help_field("network", default_factory=ModelConfig)
    mode: ModeConfig = help_field("training mode", default_factory=ModeConfig)
    optim: OptimConfig = help_field("optimiser", default_factory=OptimConfig)
    validation: ValidationConfig = help_field("validation", default_factory=ValidationConfig)

    def check(self) -> "TrainConfig":
        """Validate choices and ranges; raises `ConfigError` naming the key and the valid values."""
        _choice("mode.name", self.mode.name, MODES)
        _choice("model.name", self.model.name, MODELS)
        _choice("model.spatial_dims", self.model.spatial_dims, (2, 3))
        _choice("optim.schedule", self.optim.schedule, SCHEDULES)
        _choice("validation.metric", self.validation.metric, BEST_METRICS)
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        for group in self.optim.group_lr:
            _choice("optim.group_lr", group, LR_GROUPS)
        if len(self.data.patch_size) != self.model.spatial_dims:
            raise ConfigError(
                f"data.patch_size {list(self.data.patch_size)} must have {self.model.spatial_dims} sizes for "
                f"model.spatial_dims={self.model.spatial_dims}"
            )
        if any(s % 16 for s in self.data.patch_size):
            raise ConfigError(f"data.patch_size {list(self.data.patch_size)}: every size must be a multiple of 16 (4 poolings)")
        if not self.data.path:
            raise ConfigError("data.path is required: the dataset folder to train on")
        if len(self.model.features) != 6:
            raise ConfigError(f"model.features needs 6 widths, got {list(self.model.features)}")
        for key, value in (("optim.epochs", self.optim.epochs), ("optim.batch_size", self.optim.batch_size),
                           ("validation.every", self.validation.every), ("data.samples_per_epoch", self.data.samples_per_epoch),
                           *((k, v) for k, v in (("optim.patience", self.optim.patience),
                                                        ("data.train_cases", self.data.train_cases)) if v is not None)):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if self.optim.min_epochs < 0:
            raise ConfigError(f"optim.min_epochs must be >= 0, got {self.optim.min_epochs}")
        if self.data.workers != "auto" and not (isinstance(self.data.workers, int) and self.data.workers >= 0):
            raise ConfigError(f"data.workers: expected auto or a number >= 0, got {self.data.workers!r}")
        if not 0.0 <= self.data.foreground_fraction <= 1.0:
            raise ConfigError(f"data.foreground_fraction must be in [0, 1], got {self.data.foreground_fraction}")
        return self

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: ``data.samples_per_epoch / optim.batch_size``, rounded up."""
        return math.ceil(self.data.samples_per_epoch / self.optim.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), as saved in the run folder's ``config.yaml``."""
        return _plain(dataclasses.asdict(self))


def _choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}; choose one of {', '.join(map(str, choices))}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Convert a YAML value to the field's annotated type (dataclasses recursively)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build_config(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        *first, last = [a for a in args if a is not type(None)]
        for hint in first:  # the first type that takes the value (int | str: 4 -> 4, auto -> "auto")
            try:
                return _coerce(key, hint, value)
            except ConfigError:
                pass
        return _coerce(key, last, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(key, item, v) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args
        return {_coerce(key, kt, k): _coerce(key, vt, v) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if value is None or isinstance(value, (dict, list)) or (hint is not str and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}") from None
    return value


def build_config(cls: type, values: Any, prefix: str = "") -> Any:
    """An instance of the config dataclass ``cls`` from nested ``values``, each coerced to its annotated type."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; valid keys: {', '.join(names)}")
    kwargs = {k: _coerce(f"{prefix}.{k}" if prefix else k, hints[k], v) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict, in place; returns it."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
    return values


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (None: defaults), apply overrides, validate.

    Relative paths (``data.path``, ``data.cache``, ``out``) are relative to the working directory; the trainer
    saves them made absolute in the run's ``config.yaml``, so resume and evaluate work from anywhere.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    apply_overrides(values, overrides)
    config = build_config(TrainConfig, values)
    return config.check()
