"""Smoke test of benchmarks/infer.py: the --quick run times both networks and writes its section."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_infer_benchmark_quick_writes_its_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "infer.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "## Other\n\nkept" in text and "## Inference (benchmarks/infer.py)" in text
    rows = [line for line in text.splitlines() if line.startswith("| UNet++ 2D") or line.startswith("| BasicUNet 3D")]
    assert len(rows) == 2 and all(float(v.strip().rstrip("x")) > 0 for r in rows for v in r.split("|")[4:-1])
