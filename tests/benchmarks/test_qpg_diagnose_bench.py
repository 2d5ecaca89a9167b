"""Smoke test of benchmarks/qpg_diagnose.py: the --quick run trains, diagnoses, fits, plots and writes its section."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "qpg_diagnose.py"
HEADING = "## QPG diagnostics on the demo (benchmarks/qpg_diagnose.py)"


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--variants", "classical,qpg,frozen", "--seeds", "0", "--ceiling",
         "--json", str(tmp_path / "results.json"), "--image", str(tmp_path / "img" / "d.png"),
         "--out", str(tmp_path / "benchmarks.md"), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )


def test_qpg_diagnose_quick_writes_its_section_and_resumes(tmp_path):
    (tmp_path / "benchmarks.md").write_text("# Benchmarks\n\n## Simulator\n\nkept as is\n")
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count(HEADING) == 1 and "kept as is" in text
    assert "3 AdamW steps" in text and "](img/d.png)" in text
    for row in ("| classical |", "| qpg |", "| frozen |", "Representation ceiling", "| qpg-v0 |"):
        assert row in text, row
    assert (tmp_path / "img" / "d.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["runs"]) == 3 and len(results["runs"][1]["changes"]) == 3
    frozen = results["runs"][2]
    assert "angles" not in frozen["grad_norms"] and frozen["trainable"] < results["runs"][1]["trainable"]
    # a second run finds every (variant, seed) done and trains nothing
    again = _run(tmp_path)
    assert again.returncode == 0 and "seed 0: val Dice" not in again.stdout
    # --name writes a section of its own beside the main one
    named = _run(tmp_path, "--name", "variants")
    assert named.returncode == 0 and "seed 0: val Dice" not in named.stdout
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count(HEADING) == 1 and "kept as is" in text
    assert text.count("## QPG diagnostics on the demo, variants (benchmarks/qpg_diagnose.py)") == 1


def test_unknown_variant_is_named(tmp_path):
    proc = _run(tmp_path, "--variants", "qpg,quantum")
    assert proc.returncode == 2 and "unknown variant 'quantum'" in proc.stderr
