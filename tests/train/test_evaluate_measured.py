"""``hqctf evaluate --set qpg.*``: a trained QPG run re-measured on another back-end, with shots or noise."""

import csv
import re
import sys

import pytest
import torch

from hqctf.cli import main
from hqctf.qpg.bank import generate, generators
from hqctf.train.config import ConfigError, load_config
from hqctf.train.evaluate import measured_config
from hqctf.train.models import build_model
from hqctf.train.trainer import CHECKPOINT_BEST, resume_config, train_run

pytest.importorskip("qiskit_aer")


@pytest.fixture(scope="module")
def run(tiny_dataset, tiny_overrides, tmp_path_factory):
    root = tmp_path_factory.mktemp("measured")
    overrides = tiny_overrides(tiny_dataset, root / "qpg", root / "cache", "qpg",
                               **{"optim.epochs": 1, "mode.qpg.chunk": 4})
    train_run(load_config(None, overrides), progress=False)
    return root / "qpg"


def _dice(folder) -> float:
    rows = csv.DictReader((folder / "summary.csv").open())
    return float(next(r for r in rows if r["structure"] == "mean")["dice_mean"])


def _weights(run, overrides: list[str]) -> dict[str, torch.Tensor]:
    """The generated weights of the run's best checkpoint, measured as ``overrides`` say."""
    config = measured_config(resume_config(run), overrides)
    model = build_model(config.model, config.mode, 8)
    model.load_state_dict(torch.load(run / CHECKPOINT_BEST, weights_only=False)["model"])
    with torch.no_grad():
        return generate(generators(model))


def test_measured_weights(run):
    exact, aer = _weights(run, []), _weights(run, ["qpg.backend=qiskit"])
    noisy = _weights(run, ["qpg.shots=64", "qpg.readout_error=0.2"])
    assert exact.keys() == aer.keys() == noisy.keys() and len(exact) > 3
    for name, weight in exact.items():
        assert torch.allclose(aer[name], weight, atol=1e-5)
        assert (noisy[name] - weight).abs().max() > 1e-3


def test_reevaluated_on_aer_without_retraining(run, capsys):
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--no-progress", "--set", "qpg.backend=qiskit"]) == 0
    aer = run / "evaluation" / "test+backend=qiskit"
    assert str(aer) in capsys.readouterr().out
    exact = _dice(run / "evaluation" / "test")
    assert _dice(aer) == pytest.approx(exact, abs=1e-6)  # exact Aer: the same weights
    noisy = ["--set", "qpg.shots=64", "--set", "mode.qpg.readout_error=0.2"]  # mode.qpg.*, as in training, too
    assert main(["evaluate", str(run), "--no-progress", *noisy]) == 0
    assert _dice(run / "evaluation" / "test+shots=64+readout_error=0.2") != exact
    assert (run / "evaluation" / "test" / "summary.csv").is_file()  # the exact results are kept


@pytest.mark.parametrize("override,message", [
    ("qpg.chunk=8", "evaluate overrides only how circuits are measured: qpg.backend"),
    ("qpg.backend=cirq", "unknown backend 'cirq'"),
    ("qpg.depolarizing=2", r"depolarizing must be a probability in \[0, 1\]"),
    ("qpg.backend=pennylane", "needs pennylane"),
])
def test_bad_overrides_exit_2_and_write_nothing(run, capsys, monkeypatch, override, message):
    if override == "qpg.backend=pennylane":
        monkeypatch.setitem(sys.modules, "pennylane", None)  # an install without the extra
    before = sorted(p.name for p in (run / "evaluation").iterdir()) if (run / "evaluation").is_dir() else []
    assert main(["evaluate", str(run), "--no-progress", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    after = sorted(p.name for p in (run / "evaluation").iterdir()) if (run / "evaluation").is_dir() else []
    assert after == before


@pytest.mark.parametrize("mode", ["classical", "hyper", "hyperprob", "lora"])
def test_overrides_need_circuits(mode):
    config = load_config(None, ["data.path=x", f"mode.name={mode}"])
    with pytest.raises(ConfigError, match=f"this run's mode {mode} has no circuits to measure"):
        measured_config(config, ["qpg.shots=10"])
