"""Shared by the benchmark scripts: replace one script's section of docs/benchmarks.md, leaving the others."""

from hqctf.bench.markdown import machine, replace_section

__all__ = ["machine", "replace_section"]
