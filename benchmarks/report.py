"""Shared by the benchmark scripts: replace one script's section of docs/benchmarks.md, leaving the others."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def replace_section(path: Path, heading: str, section: str) -> None:
    """Replace the text from ``heading`` to the next ``## `` heading (or EOF) in ``path``; append if absent."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + ("\n" if not section.endswith("\n\n") else ""), text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def machine() -> dict:
    """CPU model, core count, RAM and library versions, for the benchmark's header."""
    from importlib.metadata import version

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as f:
        mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return dict(nproc=len(os.sched_getaffinity(0)), cpu=cpu, ram_gib=mem_kib / 2**20, torch=version("torch"),
                monai=version("monai"), numpy=version("numpy"), python=platform.python_version())
