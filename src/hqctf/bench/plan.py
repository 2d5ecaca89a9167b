"""The runs of a bench, in a fixed order, their folders and their training configs; shards of that list."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from ..train.config import TrainConfig
from .config import BenchConfig, BenchError


@dataclass(frozen=True)
class RunSpec:
    """One run of a bench."""

    model: str
    mode: str
    size: int | None  # training cases; None: all
    seed: int

    @property
    def size_label(self) -> str:
        return "all" if self.size is None else str(self.size)

    @property
    def name(self) -> str:
        """Run folder name, e.g. ``unetpp-qpg-n20-seed0``."""
        return f"{self.model}-{self.mode}-{'all' if self.size is None else f'n{self.size}'}-seed{self.seed}"

    def config(self, base: TrainConfig, runs: Path) -> TrainConfig:
        """``base`` with this run's folder, seed, network, mode and training-set size."""
        return dataclasses.replace(
            base, out=str(runs / self.name), seed=self.seed,
            model=dataclasses.replace(base.model, name=self.model),
            mode=dataclasses.replace(base.mode, name=self.mode),
            data=dataclasses.replace(base.data, train_cases=self.size)).check()


def plan(config: BenchConfig) -> list[RunSpec]:
    """Every run, seed by seed (so a partial bench has whole seeds), then size, model and mode."""
    return [RunSpec(model, mode, size, seed) for seed in config.seeds for size in config.case_counts
            for model in config.models for mode in config.modes]


def check_name(name: str) -> str:
    """A bench name, which becomes a report heading and image file names: letters, digits, ``.``, ``_``, ``-``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise BenchError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only (it names image files)")
    return name


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (1 <= i <= n) as (i, n); None is the whole bench, (1, 1)."""
    if text is None:
        return 1, 1
    i, sep, n = text.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
        raise BenchError(f"--shard {text!r}: expected i/n with 1 <= i <= n, e.g. 1/2")
    return int(i), int(n)


def shard(runs: list[RunSpec], i: int, n: int) -> list[RunSpec]:
    """The runs of shard ``i`` of ``n``: every n-th run from the i-th, so shards get similar mixes."""
    return runs[i - 1::n]
