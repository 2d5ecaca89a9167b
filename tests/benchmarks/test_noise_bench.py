"""Smoke test of benchmarks/noise.py: the --quick run times every path, finds them in agreement and writes its section."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_noise_benchmark_quick_writes_its_section(tmp_path, native_pauli):
    pytest.importorskip("pennylane")
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "noise.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "## Other\n\nkept" in text and "## Depolarising noise (benchmarks/noise.py)" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith(("| 6 |", "| 8 |"))]
    assert len(rows) == 2
    for row in rows:
        native, torch_s, density, pennylane, error = (float(row[i].strip().rstrip("x")) for i in (2, 3, 5, 6, 7))
        assert min(native, torch_s, density, pennylane) > 0 and error < 1e-5
