"""Smoke test of benchmarks/data.py: the --quick run writes its section without touching other sections."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "data.py"
HEADING = "## Data pipeline (benchmarks/data.py)"


@pytest.mark.slow
def test_data_benchmark_quick_writes_its_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    other = "## Simulator\n\nkept as is\n"
    out.write_text(f"# Benchmarks\n\n{HEADING}\n\nstale text\n\n{other}")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n") and text.count(HEADING) == 1 and "stale text" not in text
    assert text.endswith(other)  # the next section survives untouched
    section = text[text.index(HEADING): text.index("## Simulator")]
    assert "python benchmarks/data.py --quick --out" in section and "monai" in section and "Date:" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert sum("body crop" in r for r in rows) == 2
    assert sum(r.startswith("| SliceDataset") for r in rows) == 4
    assert "samples/s**" in section and "Ratio:" in section


def test_data_benchmark_creates_missing_file(tmp_path):
    spec = importlib.util.spec_from_file_location("hqctf_bench_data", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "new.md"
    bench.write_section(out, f"{HEADING}\n\nfirst\n")
    bench.write_section(out, f"{HEADING}\n\nsecond\n")
    assert out.read_text() == f"# Benchmarks\n\n{HEADING}\n\nsecond\n"
