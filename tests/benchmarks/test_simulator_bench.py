"""Smoke test of benchmarks/simulator.py so the script cannot rot: a --quick run writes its doc section."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "simulator.py"
SECTION = "## Simulator (benchmarks/simulator.py)"


def test_quick_run_writes_its_section_only(tmp_path):
    pytest.importorskip("pennylane")
    out = tmp_path / "benchmarks.md"
    out.write_text(f"# Benchmarks\n\n## Other (someone else)\nkeep me\n\n{SECTION}\nstale text\n\n## Later\nkeep me too\n")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out),
           "--tools", "hqctf-native", "hqctf-adjoint", "pennylane"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert text.count(SECTION) == 1
    assert "stale text" not in text
    assert "## Other (someone else)\nkeep me" in text and "## Later\nkeep me too" in text
    mine = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert "| 8 | 4 | 32 |" in mine
    assert "benchmarks/simulator.py --quick" in mine
    assert "pennylane: probs" in mine and "FAILED" not in mine
    assert "failed" not in mine.split("### Results", 1)[1]
