"""``run_demo`` end to end on a tiny configuration, and the ``hqctf demo`` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hqctf.cli import main
from hqctf.train.demo import centre_crop, run_demo

OUTPUTS = ("demo.log", "results.json", "overlay.png", "curves.png")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    results = run_demo(out, steps=3, seed=0, size=64, crop=48, max_cases=2, slices_per_case=2, batch_size=2,
                       features=(4, 4, 8, 8, 16, 4))
    return out, results


def test_demo_writes_all_outputs(tiny_run: tuple[Path, dict]) -> None:
    out, results = tiny_run
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text()) == results
    log = (out / "demo.log").read_text()
    assert "trainable" in log and "validation mean Dice" in log


def test_results_have_both_modes(tiny_run: tuple[Path, dict]) -> None:
    _, results = tiny_run
    assert results["train_cases"] == ["pt_4"] and results["val_cases"] == ["pt_13"]
    organs = results["label_names"][1:]
    for mode in ("classical", "qpg"):
        r = results["modes"][mode]
        assert 0 < r["trainable_params"] <= r["total_params"]
        assert set(r["val_dice"]) == set(organs)
        assert all(d is None or 0.0 <= d <= 1.0 for d in r["val_dice"].values())
        assert 0.0 <= r["val_mean_dice"] <= 1.0
        assert r["seconds"] >= r["train_seconds"] > 0
    classical, qpg = results["modes"]["classical"], results["modes"]["qpg"]
    assert classical["total_params"] == classical["trainable_params"] == qpg["total_params"]
    assert qpg["trainable_params"] < classical["trainable_params"]
    assert qpg["merge_max_abs_diff"] < 1e-4


def test_centre_crop() -> None:
    import torch

    x = torch.arange(36.0).reshape(1, 6, 6)
    assert centre_crop(x, 2).tolist() == [[[14.0, 15.0], [20.0, 21.0]]]
    assert centre_crop(x, None) is x
    with pytest.raises(ValueError, match="crop"):
        centre_crop(x, 7)


def test_cli_bad_data_path_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", "/nonexistent", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nonexistent" in err and "Traceback" not in err


def test_cli_short_output_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-o`` names the output folder, as in every other verb."""
    from hqctf.cli import _parser

    assert _parser().parse_args(["demo", "-o", "elsewhere"]).out == "elsewhere"
    assert main(["demo", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "missing" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_rejects_non_positive_steps(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["demo", "--steps", "0"])
    assert excinfo.value.code == 2
    assert "--steps" in capsys.readouterr().err


def test_python_dash_m_help() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hqctf", "demo", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--steps" in done.stdout and "--data" in done.stdout
