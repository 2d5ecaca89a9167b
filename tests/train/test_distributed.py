"""Two gloo processes under torchrun train the same parameters as one process with the same global batch."""

import subprocess
import sys

import torch

#: Gradients are averaged in another order (all-reduce of two half-batch means), so they differ by float noise.
#: Conv biases and QPG log-gains feeding an InstanceNorm have a true gradient of zero; Adam with its default eps
#: turns their float-noise gradients into full-size steps in a random direction, which then spread (through the
#: norm's eps) to everything. The test therefore uses eps = 1e-3, far below real gradients' second moments' roots
#: but far above that noise. Both runs use one thread per process (torchrun's default), since sums split over
#: threads round differently too. QPG training still amplifies the all-reduce's rounding: with the current
#: simulator kernels the runs differ by up to ~2e-4 after these 4 steps (the same run on 1 vs 2 threads: ~6e-4);
#: a rank training on its own half batch, or gradients not averaged, moves parameters by ~lr per step instead.
TOLERANCE = 5e-4


def _train(argv, cwd):
    result = subprocess.run([sys.executable, "-m", "hqctf", "train", *argv], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_match_one(tiny_dataset, tiny_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = tmp_path / "tiny.yaml"
    config.write_text("")
    runs = {}
    for nproc in (1, 2):
        run = tmp_path / f"nproc{nproc}"
        argv = [str(config), "--no-progress", "--nproc", str(nproc)]
        for item in tiny_overrides(tiny_dataset, run, tmp_path / "cache", "qpg", **{"optim.epochs": 2, "optim.eps": 1e-3,
                                                                                   "validation.every": 2}):
            argv += ["--set", item]
        _train(argv, tmp_path)
        runs[nproc] = torch.load(run / "last.pt", weights_only=False)
        assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]
        assert (run / "train.log").read_text().count("start:") == 1  # rank 0 alone writes
    assert runs[1]["step"] == runs[2]["step"] == 4
    for key, value in runs[1]["model"].items():
        torch.testing.assert_close(runs[2]["model"][key], value, rtol=0, atol=TOLERANCE, msg=key)
    assert runs[2]["history"][-1]["loss"] == __import__("pytest").approx(runs[1]["history"][-1]["loss"], rel=1e-4)
