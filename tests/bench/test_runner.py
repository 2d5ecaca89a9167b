"""``hqctf bench`` end to end on a tiny bench: runs, report, skip, resume after a kill, shards, bad input."""

import csv
import json

import pytest
import yaml

from hqctf.bench import load_bench_config, run_bench
from hqctf.bench.plan import plan
from hqctf.cli import main
from hqctf.train.trainer import Trainer

RUNS = ["unetpp-classical-n1-seed0", "unetpp-qpg-n1-seed0", "unetpp-classical-all-seed0", "unetpp-qpg-all-seed0"]
REPORT = ["report.md", "runs.csv", "summary.csv", "structures.csv", "tests.csv", "ranks.csv",
          "dice_vs_parameters.png", "dice_vs_size.png", "learning_curves.png", "spectra.png"]


def _mtimes(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in (folder / "runs").rglob("*") if p.is_file()}


def test_bench_trains_every_run_reports_and_skips_finished_runs(tiny_bench, tmp_path):
    bench, doc = tmp_path / "bench", tmp_path / "docs" / "benchmarks.md"
    assert main(["bench", str(tiny_bench()), "-o", str(bench), "--no-progress", "--out", str(doc)]) == 0
    assert sorted(p.name for p in (bench / "runs").iterdir()) == sorted(RUNS)
    for name in REPORT:
        assert (bench / "report" / name).stat().st_size > 0, name
    assert (bench / "report" / "spectra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((bench / "report" / "runs.csv").open()))
    assert [r["run"] for r in rows] == RUNS
    assert {int(r["train_cases"]) for r in rows if r["size"] == "1"} == {1}
    assert all(0.0 <= float(r["dice"]) <= 1.0 and int(r["epochs"]) <= 2 for r in rows)
    seconds = [json.loads((bench / "runs" / r / "bench-time.json").read_text())["seconds"] for r in RUNS]
    assert all(s > 0 for s in seconds) and [float(r["wall_seconds"]) for r in rows] == seconds
    assert f"Run time: {sum(seconds) / 60:.0f} min summed over 4 runs" in (bench / "report" / "report.md").read_text()
    tests = list(csv.DictReader((bench / "report" / "tests.csv").open()))
    assert [(t["size"], t["comparison"]) for t in tests] == [("1", "qpg vs classical"), ("all", "qpg vs classical")]
    ranks = list(csv.DictReader((bench / "report" / "ranks.csv").open()))
    assert {r["epoch"] for r in ranks} >= {"0", "1"} and {r["mode"] for r in ranks} == {"classical", "qpg"}
    section = doc.read_text()
    assert "## Bench tiny (hqctf bench)" in section and "img/bench-tiny-dice_vs_size.png" in section
    assert (doc.parent / "img" / "bench-tiny-learning_curves.png").is_file()

    before = _mtimes(bench)
    assert main(["bench", str(tiny_bench()), "-o", str(bench), "--no-progress"]) == 0
    assert _mtimes(bench) == before  # nothing retrained or re-evaluated

    assert main(["bench", str(tiny_bench()), "-o", str(bench), "--no-progress", "--out", str(doc),
                 "--name", "tiny-again"]) == 0  # a second section, the first one kept
    section = doc.read_text()
    assert "## Bench tiny (hqctf bench)" in section and "## Bench tiny-again (hqctf bench)" in section
    assert "img/bench-tiny-again-spectra.png" in section and (doc.parent / "img" / "bench-tiny-again-spectra.png").is_file()
    assert (bench / "report" / "report.md").read_text().startswith("# Bench tiny-again")
    assert _mtimes(bench) == before


def test_an_interrupted_bench_resumes_where_it_stopped(tiny_bench, tmp_path, monkeypatch):
    config, bench = load_bench_config(tiny_bench()), tmp_path / "bench"
    step, calls = Trainer._train_step, {"n": 0}

    def killed_in_the_second_run(self, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # run 1 took 4 steps (2 epochs x 2 batches); run 2 has finished its first epoch
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "_train_step", killed_in_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, bench, progress=False)
    monkeypatch.setattr(Trainer, "_train_step", step)
    first = bench / "runs" / RUNS[0]
    done = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    assert json.loads((first / "summary.json").read_text())["epochs"] == 2
    assert not (bench / "runs" / RUNS[1] / "summary.json").exists() and (bench / "runs" / RUNS[1] / "last.pt").is_file()
    killed = json.loads((bench / "runs" / RUNS[1] / "bench-time.json").read_text())["seconds"]  # the attempt's time

    assert run_bench(config, bench, progress=False) == bench / "report"
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == done
    assert f"{RUNS[1]}: resuming" in (bench / "bench.log").read_text()
    assert json.loads((bench / "runs" / RUNS[1] / "bench-time.json").read_text())["seconds"] > killed  # summed
    assert all((bench / "runs" / r / "evaluation" / "test" / "summary.csv").is_file() for r in RUNS)


def test_shards_split_the_runs_and_the_last_one_writes_the_report(tiny_bench, tmp_path):
    config, bench = load_bench_config(tiny_bench()), tmp_path / "bench"
    assert run_bench(config, bench, (1, 2), progress=False) is None
    assert sorted(p.name for p in (bench / "runs").iterdir()) == sorted(RUNS[0::2])
    assert not (bench / "report").exists()
    assert run_bench(config, bench, (2, 2), progress=False) == bench / "report"
    assert sorted(p.name for p in (bench / "runs").iterdir()) == sorted(RUNS)
    assert [s.name for s in plan(config)] == RUNS


@pytest.mark.parametrize("bench_keys, extra, message", [
    ({"modes": []}, [], "modes: empty"),
    ({"modes": ["classical", "quantum"]}, [], "modes: unknown value 'quantum'"),
    ({"seeds": []}, [], "seeds: empty"),
    ({"seeds": [0, 0]}, [], "seeds: [0, 0] lists a value twice"),
    ({"sizes": [0]}, [], "sizes: '0' is neither"),
    ({"sizes": ["some"]}, [], "sizes: 'some' is neither"),
    ({"sizes": [50]}, [], "sizes: 50 is more than the"),
    ({}, ["--set", "patience=0"], "patience must be >= 1"),
    ({}, ["--set", "min_epochs=-1"], "min_epochs must be >= 0, got -1"),
    ({}, ["--shard", "3/2"], "--shard '3/2'"),
    ({}, ["--name", "a/b"], "--name 'a/b': use letters"),
    ({}, ["--set", "data.patch_size=[30, 30]"], "multiple of 16"),
])
def test_bad_bench_input_is_one_line_exit_2_and_creates_nothing(bench_keys, extra, message, tiny_bench, tmp_path,
                                                                 capsys):
    bench = tmp_path / "bench"
    assert main(["bench", str(tiny_bench(**bench_keys)), "-o", str(bench), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("hqctf bench: error:")
    assert not bench.exists()


def test_a_folder_holding_another_bench_or_other_files_is_refused(tiny_bench, tmp_path, capsys):
    bench = tmp_path / "bench"
    assert main(["bench", str(tiny_bench(sizes=["all"], modes=["classical"])), "-o", str(bench), "--no-progress"]) == 0
    before = _mtimes(bench) | {"bench.yaml": (bench / "bench.yaml").read_bytes()}
    capsys.readouterr()
    assert main(["bench", str(tiny_bench(sizes=["all"], modes=["classical"])), "-o", str(bench), "--no-progress",
                 "--set", "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "holds another bench's runs" in err and "optim.lr" in err
    assert _mtimes(bench) | {"bench.yaml": (bench / "bench.yaml").read_bytes()} == before
    # a bench written before an option existed (here: QPG's noise settings) is still this bench
    stored = yaml.safe_load((bench / "bench.yaml").read_text())
    del stored["train"]["mode"]["qpg"]["depolarizing"]
    (bench / "bench.yaml").write_text(yaml.safe_dump(stored))
    assert main(["bench", str(tiny_bench(sizes=["all"], modes=["classical"])), "-o", str(bench), "--no-progress"]) == 0

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["bench", str(tiny_bench()), "-o", str(other), "--no-progress"]) == 2
    assert "holds no bench.yaml" in capsys.readouterr().err and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_bundled_benches_load():
    for name in ("cpu-small", "cpu-controls", "paper"):
        config = load_bench_config(name)
        base = config.base_config()
        assert (base.optim.patience, base.optim.epochs, base.optim.min_epochs) == (config.patience, config.max_epochs,
                                                                               config.min_epochs)
        assert base.validation.spectra and base.data.test_fraction > 0
