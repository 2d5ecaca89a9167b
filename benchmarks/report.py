"""Shared by the benchmark scripts: replace one script's section of docs/benchmarks.md, leaving the others, and
save their figures."""

from pathlib import Path

from hqctf.bench.markdown import machine, replace_section

__all__ = ["machine", "replace_section", "save_figure"]


def save_figure(fig, path: Path) -> None:
    """Lay out, write (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
