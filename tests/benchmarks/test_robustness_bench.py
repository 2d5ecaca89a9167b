"""Smoke test of benchmarks/robustness.py on a tiny trained QPG run: every setting scored, resumable, one section."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "robustness.py"
HEADING = "## Robustness to shots and noise (benchmarks/robustness.py)"


def _run(run: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--run", str(run), "--shots", "10,1000000", "--readout", "0.5",
         "--work", str(tmp_path / "work"), "--image", str(tmp_path / "img" / "r.png"),
         "--out", str(tmp_path / "benchmarks.md")], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_robustness_quick_writes_its_section_and_resumes(qpg_run, tmp_path):
    run = qpg_run
    before = sorted(p.name for p in run.iterdir())
    (tmp_path / "benchmarks.md").write_text("# Benchmarks\n\n## Other\n\nkept\n")
    proc = _run(run, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == before  # evaluated on a copy
    results = {r["setting"]: r["dice"] for r in json.loads((tmp_path / "work" / "results.json").read_text())}
    assert list(results) == ["exact", "shots 10", "shots 1e+06", "readout 0.5"]
    assert abs(results["shots 1e+06"] - results["exact"]) < 0.05  # a million shots are nearly exact
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count(HEADING) == 1 and "## Other\n\nkept" in text and "| readout 0.5 |" in text
    assert (tmp_path / "img" / "r.png").stat().st_size > 0
    again = _run(run, tmp_path)  # everything is in results.json: nothing is evaluated again
    assert again.returncode == 0 and "test Dice" not in again.stdout.split(HEADING)[0]


def test_depolarizing_settings_name_their_backend():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from robustness import settings

    exact = ["qpg.shots=null", "qpg.readout_error=0.0", "qpg.depolarizing=0.0"]
    assert settings([100], [], [0.01], "qiskit") == [
        ("exact", exact), ("shots 100", ["qpg.shots=100", *exact[1:]]),
        ("depolarizing 0.01", [*exact[:2], "qpg.depolarizing=0.01", "qpg.backend=qiskit"])]
    assert settings([], [0.02], [0.01], "builtin")[1:] == [
        ("readout 0.02", [exact[0], "qpg.readout_error=0.02", exact[2]]),
        ("depolarizing 0.01", [*exact[:2], "qpg.depolarizing=0.01"])]


def test_runs_with_the_same_folder_name_get_distinct_labels(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from robustness import run_labels

    a, b = tmp_path / "b-qpg" / "runs" / "unetpp-qpg-n20-seed0", tmp_path / "b-shots" / "runs" / "unetpp-qpg-n20-seed0"
    assert run_labels([a, tmp_path / "other"]) == ["unetpp-qpg-n20-seed0", "other"]
    assert run_labels([a, b]) == ["b-qpg/runs/unetpp-qpg-n20-seed0", "b-shots/runs/unetpp-qpg-n20-seed0"]
    with pytest.raises(ValueError, match="twice"):
        run_labels([a, a])


def test_depolarizing_runs_limit_the_slow_settings(qpg_run, tmp_path):
    first, second = tmp_path / "a" / qpg_run.name, tmp_path / "b" / qpg_run.name
    for target in (first, second):
        shutil.copytree(qpg_run, target)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--run", str(first), "--run", str(second), "--shots", "", "--readout", "",
         "--depolarizing", "0.01", "--depolarizing-run", str(first), "--work", str(tmp_path / "work"),
         "--image", str(tmp_path / "r.png")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = {(r["run"], r["setting"]) for r in json.loads((tmp_path / "work" / "results.json").read_text())}
    a, b = f"a/{qpg_run.name}", f"b/{qpg_run.name}"
    assert done == {(a, "exact"), (a, "depolarizing 0.01"), (b, "exact")}
    assert "| depolarizing 0.01 | " in proc.stdout and "| – | – |" in proc.stdout


def test_a_run_trained_with_shots_is_scored_exactly_in_the_exact_setting(qpg_run, tmp_path):
    trained_exact, trained_shots = tmp_path / "exact" / qpg_run.name, tmp_path / "shots" / qpg_run.name
    for target in (trained_exact, trained_shots):
        shutil.copytree(qpg_run, target)
    config = yaml.safe_load((trained_shots / "config.yaml").read_text())
    config["mode"]["qpg"]["shots"] = 3  # as if trained with 3 shots: scored with them, its Dice would differ
    (trained_shots / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--run", str(trained_exact), "--run", str(trained_shots), "--shots", "3",
         "--readout", "", "--work", str(tmp_path / "work"), "--image", str(tmp_path / "r.png")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    dice = [r["dice"] for r in results if r["setting"] == "exact"]
    assert len(dice) == 2 and dice[0] == dice[1]
    assert next(r["dice"] for r in results if r["setting"] == "shots 3") != dice[0]  # 3 shots would have shown


def test_the_same_run_twice_is_a_one_line_error(tmp_path):
    run = tmp_path / "runs" / "unetpp-qpg-n20-seed0"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--run", str(run), "--run", str(run), "--readout", "0.1",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "the same run is given twice" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "work").exists()
