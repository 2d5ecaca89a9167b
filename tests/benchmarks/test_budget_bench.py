"""benchmarks/budget.py: one row per bundled config, the same totals as `hqctf circuits budget`, the README's table."""

import subprocess
import sys
from pathlib import Path

import pytest

from hqctf.infer.circuits import budget_rows, circuit_budget
from hqctf.train.bundled import bundled_configs

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Circuit budget (benchmarks/budget.py)"


def test_budget_table_matches_the_command_and_the_readme(tmp_path):
    pytest.importorskip("qiskit")
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Simulator\n\nkept as is\n")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "budget.py"), "--out", str(doc)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = doc.read_text()
    assert text.count(HEADING) == 1 and "kept as is" in text and proc.stdout in text
    rows = {line.split(" | ")[0].lstrip("| ").split(" ")[0]: line.split(" | ") for line in proc.stdout.splitlines()[2:]}
    assert sorted(rows) == sorted(bundled_configs("train"))
    total = budget_rows(circuit_budget("openkbp-2d", shots=1000, shot_rate=5000.0))[-1]
    per_step = int(total["forward/step"].replace(",", "")) + int(total["gradient/step"].replace(",", ""))
    row = rows["openkbp-2d"]
    assert row[4] == total["circuits"] and row[8] == f"{per_step:,}" and row[10] == total["executions/epoch"]
    assert proc.stdout in (ROOT / "README.md").read_text()  # the README shows today's table
