"""Smoke test of benchmarks/step.py: the --quick run writes its section without touching other sections."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "step.py"
HEADING = "## Training step (benchmarks/step.py)"


@pytest.mark.slow
def test_step_benchmark_quick_writes_its_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    other = "## Simulator\n\nkept as is\n"
    stale = f"{HEADING}\n\nstale text\n\n"
    out.write_text(f"# Benchmarks\n\n{stale}{other}")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.count(HEADING) == 1 and "stale text" not in text
    assert text.endswith(other)  # the next section survives untouched
    section = text[text.index(HEADING): text.index("## Simulator")]
    assert "python benchmarks/step.py --quick --out" in section
    assert "torch threads" in section and "monai" in section
    rows = [line for line in section.splitlines() if line.startswith("| Basic")]
    assert len(rows) == 2 and all(" | " in r for r in rows)
    assert "BasicUNetPlusPlus 2D" in rows[0] and "BasicUNet 3D" in rows[1]
    assert section.count("target <= 1.3") == 2 and section.count("target <= 1.5") == 2


def test_step_benchmark_creates_missing_file(tmp_path):
    spec = importlib.util.spec_from_file_location("hqctf_bench_step", SCRIPT)
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    out = tmp_path / "new.md"
    step.write_section(out, f"{HEADING}\n\nfirst\n")
    step.write_section(out, f"{HEADING}\n\nsecond\n")
    assert out.read_text() == f"# Benchmarks\n\n{HEADING}\n\nsecond\n"
