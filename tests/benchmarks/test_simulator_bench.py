"""Smoke test of benchmarks/simulator.py so the script cannot rot: a --quick run writes its doc section, every
installed anchor (qulacs, lightning.qubit adjoint, Aer forward only) agrees with hqctf in the check, and the targets
and table render from rows that lack some tools (an older --reuse JSON)."""

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "simulator.py"
SECTION = "## Simulator (benchmarks/simulator.py)"
NEW_TOOLS = {"qulacs": ("qulacs",), "lightning": ("pennylane_lightning",), "aer": ("qiskit_aer",)}


def _load():
    spec = importlib.util.spec_from_file_location("hqctf_bench_simulator", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _installed(modules) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def test_quick_run_writes_its_section_only(tmp_path):
    pytest.importorskip("pennylane")
    aer = ["aer"] if _installed(NEW_TOOLS["aer"]) else []  # the forward-only path through a worker and the check
    out, raw = tmp_path / "benchmarks.md", tmp_path / "raw.json"
    out.write_text(f"# Benchmarks\n\n## Other (someone else)\nkeep me\n\n{SECTION}\nstale text\n\n## Later\nkeep me too\n")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--json", str(raw), "--retries", "0",
           "--tools", "hqctf-native", "hqctf-adjoint", "pennylane", *aer]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
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
    header = next(line for line in mine.splitlines() if line.startswith("| n | L | C |"))
    for col in ("qulacs s", "lightning.qubit (adjoint) s", "Aer (forward only) s", "speedup vs fastest anchor",
                "hqctf fwd+bwd vs Aer fwd only", "/ qulacs / lightning / Aer (fwd only) |"):
        assert col in header
    assert "- built-in engine >= 3x faster than the fastest of qulacs, lightning.qubit (adjoint), PennyLane " \
           "default.qubit and TorchQuantum on every grid case (forward + backward); Aer forward-only shown for " \
           "reference, compared with hqctf's forward+backward: **met** in 1/1 cases." in mine
    assert "not measured: TorchQuantum, qulacs, lightning.qubit (adjoint)" in mine
    if aer:
        check = json.loads(raw.read_text())["checks"]["aer"]
        assert check["probs"] < 1e-6 and check["grad"] is None and "aer: probs" in mine
        assert "grads n/a (forward only)" in mine and "- Reference, no target: hqctf native" in mine


@pytest.mark.parametrize("tool", sorted(NEW_TOOLS))
def test_anchor_agrees_with_hqctf_in_the_check(tool):
    if not _installed(NEW_TOOLS[tool]):
        pytest.skip(f"{tool} not installed")
    bench = _load()
    diffs = bench.check_diffs(bench.check_run(tool, seed=0), bench.check_reference(seed=0))
    assert diffs["probs"] < 1e-6, diffs
    if tool == "aer":
        assert diffs["grad"] is None  # forward only
    else:
        assert diffs["grad"] < 1e-6, diffs


def _row(n, **secs):
    return {"n": n, "L": 4, "C": 32, "floor_s": 1e-4,
            "tools": {tool: {"seconds": s, "peak_mb": 1.0, "others_cpu": 0.0} for tool, s in secs.items()}}


def test_targets_and_table_cover_the_anchors_and_rows_without_them():
    bench = _load()
    rows = [_row(8, **{"hqctf-native": 1e-3, "pennylane": 0.05, "qulacs": 2e-3, "lightning": 0.01, "aer": 5e-4}),
            _row(10, **{"hqctf-native": 1e-3, "pennylane": 0.05})]  # as in a --reuse JSON from before the anchors
    targets = bench._targets(rows)
    anchor = next(line for line in targets if line.startswith("- built-in engine >= 3x"))
    assert "**partly met** in 1/2 cases; missed at (n=8, L=4, C=32: 2.00x vs qulacs)." in anchor
    note = targets[targets.index(anchor) + 1]
    assert "not measured: TorchQuantum" in note and "missing in some cases: qulacs, lightning.qubit (adjoint)" in note
    assert any("Aer forward only: 0.5x to 0.5x" in line and "in 0/1 cases" in line for line in targets)
    result = {"rows": rows, "checks": {"aer": {"probs": 1e-8, "grad": None, "version": "0"}},
              "args": types.SimpleNamespace(repeats=5, retries=2, max_disturbance=0.05, threads=2,
                                            max_case_seconds=60.0, max_case_mb=4000.0),
              "bandwidth": {"array_mb": 256, "copy_gbs": 20.0, "add_gbs": 20.0}, "bandwidth_bps": 2e10,
              "runs": [{"command": "python benchmarks/simulator.py", "minutes": 1.0}], "elapsed_s": 60.0,
              "waited_s": 0.0, "load_start": 0.0, "others_cpu": 0.0, "notes": ["qulacs not measured: x"],
              "tq_python": None}
    text = bench.render(result, "python benchmarks/simulator.py")
    table = [line for line in text.splitlines() if line.startswith("| 8 |") or line.startswith("| 10 |")]
    assert "| 2.0x (qulacs) | 0.5x |" in table[0]
    assert "| 50.0x (PennyLane) | – |" in table[1]
    assert "aer: probs 1.0e-08, grads n/a (forward only)" in text and "**qulacs not measured: x**" in text


def test_missing_optional_tool_is_reported(monkeypatch):
    bench = _load()
    monkeypatch.setitem(bench.OPTIONAL_MODULES, "qulacs", ("no_such_module_hqctf",))
    assert bench._unavailable("qulacs").startswith("qulacs not measured: no_such_module_hqctf not installed")
    assert bench._unavailable("hqctf-native") is None
