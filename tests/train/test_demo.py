"""``run_demo`` end to end on a tiny configuration through the training pipeline, and the ``hqctf demo`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hqctf.cli import main
from hqctf.data import sample_dataset_dir
from hqctf.data.formats import open_source
from hqctf.train.bundled import resolve_config_path
from hqctf.train.config import load_config
from hqctf.train.demo import run_demo

OUTPUTS = ("demo.log", "results.json", "overlay.png", "curves.png")
TINY = dict(epochs=1, seed=0, max_cases=2, steps_per_epoch=2, batch_size=2, features=(4, 4, 8, 8, 16, 4),
            patch=(32, 32), progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, **TINY)


def test_demo_writes_all_outputs(tiny_run: tuple[Path, dict]) -> None:
    out, results = tiny_run
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text()) == results
    log = (out / "demo.log").read_text()
    assert "trainable" in log and "validation mean Dice" in log and "openkbp-2d" in log


def test_results_have_both_modes(tiny_run: tuple[Path, dict]) -> None:
    _, results = tiny_run
    first_two = open_source(sample_dataset_dir(), format="nnunet").case_ids()[:2]
    assert sorted(results["train_cases"] + results["val_cases"]) == sorted(first_two)
    assert len(results["train_cases"]) == len(results["val_cases"]) == 1
    organs = results["label_names"][1:]
    for mode in ("classical", "qpg"):
        r = results["modes"][mode]
        assert 0 < r["trainable_params"] <= r["total_params"]
        assert set(r["val_dice"]) == set(organs)
        assert all(d is None or 0.0 <= d <= 1.0 for d in r["val_dice"].values())
        assert 0.0 <= r["val_mean_dice"] <= 1.0
        assert r["seconds"] >= r["train_seconds"] > 0 and len(r["epoch_losses"]) == 1
    classical, qpg = results["modes"]["classical"], results["modes"]["qpg"]
    assert classical["total_params"] == classical["trainable_params"] == qpg["total_params"]
    assert qpg["trainable_params"] < classical["trainable_params"]
    assert qpg["merge_max_abs_diff"] < 1e-4


def test_both_modes_are_runs_of_the_bundled_config(tiny_run: tuple[Path, dict]) -> None:
    """The demo trains through `Trainer`: each mode is a run folder of openkbp-2d with the demo's overrides, the
    same patients and settings but for the mode."""
    out, results = tiny_run
    bundled = load_config(resolve_config_path("openkbp-2d"))
    configs = {}
    for mode in ("classical", "qpg"):
        run = Path(results["modes"][mode]["run"])
        assert run == out / "runs" / mode
        assert json.loads((run / "summary.json").read_text())["steps"] == 2
        configs[mode] = yaml.safe_load((run / "config.yaml").read_text())
        assert configs[mode]["mode"]["name"] == mode
        assert configs[mode]["data"]["preprocess"] == bundled.to_dict()["data"]["preprocess"]
        assert configs[mode]["optim"]["group_lr"] == bundled.optim.group_lr
    for config in configs.values():
        config.pop("out"), config["mode"].pop("name")
    assert configs["classical"] == configs["qpg"]
    assert (out / "runs" / "classical" / "splits.json").read_text() == (out / "runs" / "qpg" / "splits.json").read_text()


def test_demo_run_again_replaces_its_runs(tmp_path: Path) -> None:
    run_demo(tmp_path, **TINY)
    first = (tmp_path / "runs" / "qpg" / "last.pt").stat().st_mtime_ns
    again = run_demo(tmp_path, **TINY)  # a finished run in runs/ would block a plain `hqctf train`; the demo replaces it
    assert (tmp_path / "runs" / "qpg" / "last.pt").stat().st_mtime_ns != first
    assert json.loads((tmp_path / "results.json").read_text()) == again


def test_cli_bad_data_path_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", "/nonexistent", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nonexistent" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_short_output_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-o`` names the output folder, as in every other verb."""
    from hqctf.cli import _parser

    assert _parser().parse_args(["demo", "-o", "elsewhere"]).out == "elsewhere"
    assert main(["demo", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "missing" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_rejects_non_positive_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["demo", "--epochs", "0"])
    assert excinfo.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def test_python_dash_m_help() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hqctf", "demo", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--epochs" in done.stdout and "--data" in done.stdout
