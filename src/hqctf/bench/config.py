"""Bench configuration: which runs to train, on top of one training config, and how long each trains."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..train.bundled import resolve_config_path
from ..train.config import (MODELS, MODES, ConfigError, TrainConfig, apply_overrides, build_config, help_field,
                            load_config)


class BenchError(ConfigError):
    """A bench configuration or bench folder is unusable; the message is one line."""


@dataclass
class BenchConfig:
    """A bench: models x modes x training-set sizes x seeds, every run with the same training rule."""

    train: str = help_field("training config every run starts from: a YAML file or a bundled name", default="openkbp-2d")
    set: dict[str, Any] = help_field("training-config overrides for every run (key.sub: value)", default_factory=dict)
    models: tuple[str, ...] = help_field(f"networks, from {MODELS}", default=("unetpp",))
    modes: tuple[str, ...] = help_field(f"training modes, from {MODES}", default=("classical", "qpg", "hyper"))
    sizes: tuple[str, ...] = help_field("training-set sizes in cases, or 'all'; smaller sets are nested in larger ones",
                                   default=("all",))
    seeds: tuple[int, ...] = help_field("seeds of every (model, mode, size)", default=(0, 1, 2))
    patience: int = help_field("a run stops once its best validation score is this many epochs old", default=6)
    max_epochs: int = help_field("a run stops after this many epochs at the latest", default=40)
    min_epochs: int = help_field("the patience rule never stops a run before this many epochs (a "
                                                 "max_epochs below it wins)", default=0)
    split_seed: int = help_field("seed of the patient split: the same validation and test patients for every run",
                            default=0)
    reference: str = help_field("mode the paired tests compare every other mode with", default="qpg")

    def check(self) -> "BenchConfig":
        """Validate lists and ranges; raises `BenchError` naming the key."""
        for key in ("models", "modes", "sizes", "seeds"):
            values = getattr(self, key)
            if not values:
                raise BenchError(f"{key}: empty; give at least one")
            if len(set(values)) != len(values):
                raise BenchError(f"{key}: {list(values)} lists a value twice")
        for key, values, choices in (("models", self.models, MODELS), ("modes", self.modes, MODES)):
            bad = [v for v in values if v not in choices]
            if bad:
                raise BenchError(f"{key}: unknown value {bad[0]!r}; choose from {', '.join(choices)}")
        for size in self.sizes:
            if size != "all" and not (size.isdigit() and int(size) >= 1):
                raise BenchError(f"sizes: {size!r} is neither a case count >= 1 nor 'all'")
        for key in ("patience", "max_epochs"):
            if getattr(self, key) < 1:
                raise BenchError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.min_epochs < 0:
            raise BenchError(f"min_epochs must be >= 0, got {self.min_epochs}")
        return self

    @property
    def case_counts(self) -> list[int | None]:
        """`sizes` as case counts (None: all training cases), smallest first."""
        counts = [None if s == "all" else int(s) for s in self.sizes]
        return sorted(counts, key=lambda n: (n is None, n or 0))

    def base_config(self) -> TrainConfig:
        """The training config before the per-run keys (out, seed, mode, model, size) are set."""
        overrides = [f"{k}={json.dumps(v)}" for k, v in self.set.items()]  # JSON is YAML
        config = load_config(resolve_config_path(self.train), overrides)
        data = dataclasses.replace(config.data, path=str(Path(config.data.path).absolute()),
                                   cache=str(Path(config.data.cache).absolute()), split_seed=self.split_seed)
        optim = dataclasses.replace(config.optim, epochs=self.max_epochs, patience=self.patience,
                                    min_epochs=self.min_epochs)
        return dataclasses.replace(config, data=data, optim=optim)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), as saved in ``bench.yaml``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


FIELDS = tuple(f.name for f in dataclasses.fields(BenchConfig))


def load_bench_config(path: str | Path, overrides: list[str] = ()) -> BenchConfig:
    """Read a bench YAML (a file or a bundled name under ``configs/bench``) and apply ``--set`` overrides.

    An override whose first key is a bench field (``seeds=[0]``, ``modes=[classical,qpg]``) sets that field;
    any other (``data.path=...``) is added to the training overrides of ``set``.
    """
    file = resolve_config_path(path, kind="bench")
    try:
        values = yaml.safe_load(Path(file).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{file}: cannot read bench config ({type(exc).__name__})") from None
    if not isinstance(values, dict):
        raise BenchError(f"{file}: expected a mapping of bench keys")
    values["set"] = values.get("set") or {}
    for item in overrides:
        key, _, text = item.partition("=")
        if key.split(".")[0] in FIELDS:
            apply_overrides(values, [item])
        else:
            values["set"][key] = apply_overrides({}, [f"value={text}"])["value"]
    if isinstance(values.get("sizes"), list):
        values["sizes"] = [str(s) for s in values["sizes"]]
    try:
        return build_config(BenchConfig, values).check()
    except BenchError:
        raise
    except ConfigError as exc:
        raise BenchError(f"{file}: {exc}") from None
