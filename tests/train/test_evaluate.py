"""``hqctf evaluate`` and ``hqctf compare`` on tiny trained runs."""

import csv
import json

import numpy as np
import pytest

from hqctf.cli import main
from hqctf.train.config import ConfigError, load_config
from hqctf.train.evaluate import compare_runs, evaluate_run
from hqctf.train.trainer import train_run


@pytest.fixture(scope="module")
def runs(tiny_dataset, tiny_overrides, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for mode in ("classical", "qpg"):
        overrides = tiny_overrides(tiny_dataset, root / mode, root / "cache", mode, **{"optim.epochs": 2})
        train_run(load_config(None, overrides), progress=False)
        out[mode] = root / mode
    return out


def test_evaluate_writes_per_case_and_summary_tables(runs, capsys):
    run = runs["qpg"]
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "test (1 cases) Dice" in out and "nan" not in out  # one case: no sd, not '± nan'
    assert not any("nan" in str(v) for v in compare_runs([run], split="test")[0].values())
    folder = run / "evaluation" / "test"
    for name in ("per_case.csv", "per_case.md", "summary.csv", "summary.md"):
        assert (folder / name).is_file()
    rows = list(csv.DictReader((folder / "per_case.csv").open()))
    test_ids = {r["case"] for r in rows}
    assert test_ids == set(json.loads((run / "splits.json").read_text())[0]["test"])
    # the mean row of each case is the NaN-ignoring mean of its structures
    for case in test_ids:
        structures = [float(r["dice"]) for r in rows if r["case"] == case and r["structure"] != "mean"]
        mean = next(float(r["dice"]) for r in rows if r["case"] == case and r["structure"] == "mean")
        assert mean == pytest.approx(np.nanmean(structures))
    summary = list(csv.DictReader((folder / "summary.csv").open()))
    assert summary[-1]["structure"] == "mean" and {"dice_mean", "dice_sd", "hd95_mean", "n"} <= set(summary[-1])


def test_compare_lists_runs_side_by_side(runs, capsys):
    evaluate_run(runs["classical"], split="val")
    evaluate_run(runs["qpg"], split="val")
    rows = compare_runs([runs["classical"], runs["qpg"]], split="val")
    assert [r["mode"] for r in rows] == ["classical", "qpg"]
    assert rows[0]["trainable"] > rows[1]["trainable"]
    assert "±" in rows[0]["dice"] and rows[0]["source"].startswith("val")
    assert main(["compare", str(runs["classical"]), str(runs["qpg"]), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "classical" in out and "qpg" in out


def test_evaluate_bad_requests(runs, tmp_path):
    with pytest.raises(ConfigError, match="not found; is .* a run folder"):
        evaluate_run(tmp_path)
    with pytest.raises(ConfigError, match="choose one of test, val, train, all"):
        evaluate_run(runs["qpg"], split="holdout")


def test_evaluate_shows_progress_per_case(runs, capsys):
    assert main(["evaluate", str(runs["classical"]), "--split", "val"]) == 0
    out = capsys.readouterr().out
    n = len(json.loads((runs["classical"] / "splits.json").read_text())[0]["val"])
    assert "evaluating val" in out and f"{n}/{n}" in out
    assert main(["evaluate", str(runs["classical"]), "--split", "val", "--no-progress"]) == 0
    assert "evaluating" not in capsys.readouterr().out
