"""Smoke test of benchmarks/modes.py on a few real OpenKBP cases: two modes x two seeds, resumable, one section."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "modes.py"
HEADING = "## Training modes on OpenKBP 2D (benchmarks/modes.py)"


def _run(tmp_path: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["--data", str(data), "--runs", str(tmp_path / "runs"), "--cases", "8", "--epochs", "1", "--samples", "4",
            "--features", "[4, 4, 8, 8, 16, 4]", "--modes", "classical,hyper", "--seeds", "0,1",
            "--set", f"data.cache={tmp_path / 'cache'}", "--set", "data.patch_size=[32, 32]",
            "--set", "validation.overlays=0", "--out", str(tmp_path / "benchmarks.md"), *extra]
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_modes_benchmark_over_seeds_writes_its_section_and_reuses_runs(tmp_path, shared_data):
    data = shared_data / "Dataset001_OpenKBPOAR"
    proc = _run(tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count(HEADING) == 1
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith(("| classical |", "| hyper |"))}
    assert set(rows) == {"| classical", "| hyper"}
    for line in rows.values():
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells[2].split(", ")) == 2 and "±" in cells[3]  # two seeds, mean ± sd
    for mode in ("classical", "hyper"):
        for seed in (0, 1):
            assert (tmp_path / "runs" / f"{mode}-seed{seed}" / "evaluation" / "test" / "summary.csv").is_file()
    summary = tmp_path / "runs" / "classical-seed0" / "summary.json"
    before = summary.stat().st_mtime_ns
    again = _run(tmp_path, data)  # finished runs are reused: nothing retrained
    assert again.returncode == 0, again.stderr[-3000:]
    assert summary.stat().st_mtime_ns == before


def test_unknown_mode_is_named(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--modes", "classical,quantum"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "unknown mode 'quantum'" in proc.stderr
