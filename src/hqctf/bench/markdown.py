"""Sections of a Markdown results file (docs/benchmarks.md) and the machine facts every section states."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from ..atomic import write_atomic


def replace_section(path: str | Path, heading: str, section: str) -> None:
    """Replace the text from ``heading`` to the next ``## `` heading (or EOF) in ``path``; append if absent."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + ("\n" if not section.endswith("\n\n") else ""), text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_atomic(path, text)


def machine() -> dict:
    """CPU model, core count, RAM, GPU and library versions, for a results section's header."""
    from importlib.metadata import version

    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as f:
        mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(nproc=len(os.sched_getaffinity(0)), cpu=cpu, ram_gib=mem_kib / 2**20, gpu=gpu, torch=version("torch"),
                monai=version("monai"), numpy=version("numpy"), python=platform.python_version())


def machine_line() -> str:
    """One line naming the machine, e.g. ``2 CPU cores (AMD EPYC ...), 24 GiB, no GPU; torch 2.13.0, monai 1.6.1``."""
    m = machine()
    return (f"{m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']:.0f} GiB, {m['gpu'] or 'no GPU'}; "
            f"torch {m['torch']}, monai {m['monai']}")
