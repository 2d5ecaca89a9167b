"""``hqctf bench``: every mode trained the same way over models, training-set sizes and seeds, with statistics.

`config` describes a bench, `plan` lists its runs, `runner` trains and evaluates them (resumable, shardable),
`stats` holds the paired tests and `report` writes tables and plots.
"""

from .config import BenchConfig, BenchError, load_bench_config
from .runner import run_bench

__all__ = ["BenchConfig", "BenchError", "load_bench_config", "run_bench"]
