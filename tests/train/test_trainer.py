"""``hqctf train`` end to end on a tiny OpenKBP dataset: artefacts, modes, resume, bad configs, NaN loss."""

import csv
import json
import shutil

import pytest
import torch

from hqctf.cli import main
from hqctf.train.config import ConfigError, load_config
from hqctf.train.trainer import Trainer, train_run

ARTEFACTS = ("config.yaml", "metrics.csv", "last.pt", "best.pt", "curves.png", "train.log", "summary.json", "splits.json")


def _rows(run):
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("mode", ["classical", "qpg", "lora", "lowrank", "light"])
def test_every_mode_learns_and_writes_the_run_folder(mode, tiny_dataset, tiny_overrides, tmp_path):
    run = tmp_path / mode
    config = load_config(None, tiny_overrides(tiny_dataset, run, tmp_path / "cache", mode, **{"optim.epochs": 4}))
    summary = train_run(config, progress=False)
    for name in ARTEFACTS:
        assert (run / name).is_file(), name
    assert list((run / "overlays").glob("*.png")) and list((run / "tensorboard").iterdir())
    rows = _rows(run)
    assert len(rows) == 4 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert 0.0 <= float(rows[-1]["val_dice"]) <= 1.0
    saved = json.loads((run / "summary.json").read_text())
    assert saved["trainable_parameters"] == summary["trainable_parameters"] <= saved["total_parameters"]
    assert saved["mode"] == mode and saved["best_epoch"] in (1, 2, 3, 4)


def test_resume_after_a_crash_mid_epoch_gives_the_same_weights(tiny_dataset, tiny_overrides, tmp_path, monkeypatch):
    overrides = tiny_overrides(tiny_dataset, tmp_path / "whole", tmp_path / "cache", "qpg",
                               **{"validation.every": 3, "data.augment": "true"})
    train_run(load_config(None, overrides), progress=False)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)

    crashed = load_config(None, [*overrides, f"out={tmp_path / 'crashed'}"])
    step = Trainer._train_step
    calls = {"n": 0}

    def crash_in_epoch_two(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # the first step of epoch 2 has run; the second is under way
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "_train_step", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_run(crashed, progress=False)
    monkeypatch.setattr(Trainer, "_train_step", step)
    assert torch.load(tmp_path / "crashed" / "last.pt", weights_only=False)["epoch"] == 1
    assert main(["train", "--resume", str(tmp_path / "crashed"), "--no-progress"]) == 0
    resumed = torch.load(tmp_path / "crashed" / "last.pt", weights_only=False)
    assert resumed["step"] == whole["step"]
    for key, value in whole["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)
    timeless = lambda run: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in _rows(run)]  # noqa: E731
    assert timeless(tmp_path / "crashed") == timeless(tmp_path / "whole")  # same losses and validation metrics


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_dataset, tiny_overrides, tmp_path, monkeypatch, capsys):
    run = tmp_path / "nan"
    config = load_config(None, tiny_overrides(tiny_dataset, run, tmp_path / "cache"))
    loss = Trainer.__init__

    def poisoned(self, *args, **kwargs):
        loss(self, *args, **kwargs)
        original = self.loss_fn.forward
        self.loss_fn.forward = lambda *a: original(*a) * (float("nan") if self.step >= 2 else 1.0)

    monkeypatch.setattr(Trainer, "__init__", poisoned)
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 2, step 3; .*last.pt"):
        train_run(config, progress=False)
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"data.path": "/no/such/dataset"}, "/no/such/dataset: not found"),
        ({"data.patch_size": "[256, 256]"}, "impossible for this data"),
        ({"data.n_folds": 9}, "data.n_folds"),
    ],
)
def test_bad_config_fails_at_start(extra, message, tiny_dataset, tiny_overrides, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("")
    argv = ["train", str(config), "--no-progress"]
    for item in tiny_overrides(tiny_dataset, tmp_path / "run", tmp_path / "cache", **extra):
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "run").exists()  # nothing half-made left behind


def test_failed_start_leaves_nothing_and_the_corrected_retry_runs(tiny_dataset, tiny_overrides, tmp_path, capsys):
    broken = tmp_path / "Dataset901_NoJson"
    shutil.copytree(tiny_dataset, broken)
    (broken / "dataset.json").unlink()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for run in (tmp_path / "new" / "run", existing):
        argv = ["train", "--no-progress"]
        for item in tiny_overrides(broken, run, tmp_path / "cache", **{"optim.epochs": 1}):
            argv += ["--set", item]
        config = tmp_path / "c.yaml"
        config.write_text("")
        assert main([*argv[:1], str(config), *argv[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(broken) in err and "cannot tell the format" in err
    assert not (tmp_path / "new").exists()
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]  # a folder that existed keeps exactly its files
    shutil.copy(tiny_dataset / "dataset.json", broken)
    train_run(load_config(None, tiny_overrides(broken, existing, tmp_path / "cache", **{"optim.epochs": 1})),
              progress=False)
    assert (existing / "last.pt").is_file() and (existing / "notes.txt").read_text() == "mine"


def test_existing_run_is_not_overwritten(tiny_dataset, tiny_overrides, tmp_path):
    overrides = tiny_overrides(tiny_dataset, tmp_path / "run", tmp_path / "cache", **{"optim.epochs": 1})
    train_run(load_config(None, overrides), progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(load_config(None, overrides), progress=False)


@pytest.mark.parametrize("min_epochs, epochs, best_epoch, stopped", [
    (0, 4, 1, "patience"), (5, 5, 1, "patience"), (6, 9, 6, "patience"), (12, 10, 10, "epochs")])
def test_patience_stops_when_validation_stalls(min_epochs, epochs, best_epoch, stopped, tiny_dataset, tiny_overrides, tmp_path,
                                               monkeypatch):
    # best at epoch 1, then 3 epochs without improvement; a new best at 6 for a run that min_epochs kept going
    scores = iter([0.5, 0.4, 0.45, 0.3, 0.2, 0.9, 0.8, 0.7, 0.6, 0.95])
    monkeypatch.setattr(Trainer, "_validate", lambda self, on_case=None: {"dice": next(scores)})
    run = tmp_path / "patience"
    config = load_config(None, tiny_overrides(tiny_dataset, run, tmp_path / "cache",
                                              **{"optim.epochs": 10, "optim.patience": 3,
                                                 "optim.min_epochs": min_epochs}))
    summary = train_run(config, progress=False)
    assert (summary["epochs"], summary["best_epoch"], summary["stopped"]) == (epochs, best_epoch, stopped)
    assert len(_rows(run)) == epochs


def test_training_subsets_nest_and_splits_stay_fixed_across_seeds(tiny_dataset, tiny_overrides, tmp_path):
    def trainer(seed, n):
        return Trainer(load_config(None, tiny_overrides(
            tiny_dataset, tmp_path / f"s{seed}-n{n}", tmp_path / "cache",
            **{"seed": seed, "data.split_seed": 0, "data.train_cases": n})), progress=False)

    small, large, other_seed = trainer(0, 1), trainer(0, 2), trainer(1, 1)
    ids = lambda t: [c.case_id for c in t.train_cases]  # noqa: E731
    assert len(ids(small)) == 1 and set(ids(small)) < set(ids(large))
    assert ids(other_seed) == ids(small)
    assert json.loads((tmp_path / "s0-n1" / "splits.json").read_text())[0]["test"] == \
        json.loads((tmp_path / "s1-n1" / "splits.json").read_text())[0]["test"]
    with pytest.raises(ConfigError, match="data.train_cases 99: fold 0 has only"):
        trainer(0, 99)


def test_spectra_are_saved_at_the_start_and_each_validation(tiny_dataset, tiny_overrides, tmp_path):
    run = tmp_path / "spectra"
    config = load_config(None, tiny_overrides(tiny_dataset, run, tmp_path / "cache", "qpg",
                                              **{"validation.spectra": "true", "validation.every": 2,
                                                 "optim.epochs": 4}))
    trainer = Trainer(config, progress=False)
    trainer.fit()
    record = json.loads((run / "spectra.json").read_text())
    assert record["epochs"] == [0, 2, 4]
    from hqctf.qpg import merge
    from hqctf.qpg.bank import generators

    assert set(record["layers"]) == set(generators(trainer.model))
    merged = merge(trainer.model)  # the network an export would write
    for name, series in record["layers"].items():
        layer = merged.get_submodule(name)
        weight = layer.weight.detach().double()
        if isinstance(layer, torch.nn.modules.conv._ConvTransposeNd):  # output channels are dim 1
            weight = weight.transpose(0, 1)
        expected = torch.linalg.svdvals(weight.reshape(weight.shape[0], -1))
        assert len(series) == 3 and series[-1] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-5)


def test_resume_of_a_copied_run_writes_into_the_copy(tiny_dataset, tiny_overrides, tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    train_run(load_config(None, tiny_overrides(tiny_dataset, original, tmp_path / "cache", **{"optim.epochs": 1})),
              progress=False)
    shutil.copytree(original, copy)
    before = {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()}
    copied_log = (copy / "train.log").read_bytes()
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()} == before
    assert (copy / "train.log").read_bytes().startswith(copied_log) and b"resumed from" in (copy / "train.log").read_bytes()
    assert str(copy) in (copy / "train.log").read_text()
    # --set with --resume: optim.epochs trains longer (it was silently ignored), anything else is refused
    assert main(["train", "--resume", str(copy), "--set", "optim.lr=1", "--no-progress"]) == 2
    assert main(["train", "--resume", str(copy), "--set", "optim.epochs=2", "--no-progress"]) == 0
    assert "epoch 2:" in (copy / "train.log").read_text() and "epochs: 2" in (copy / "config.yaml").read_text()


@pytest.mark.parametrize("history, shown", [
    ([], "not validated yet"),
    ([{"epoch": 1, "loss": 1.0}], "not validated yet"),
    ([{"epoch": 1, "val_dice": 0.25}, {"epoch": 2, "loss": 0.9}], "val Dice 0.250 (epoch 1)"),  # not nan, not stale
    ([{"epoch": 1, "val_dice": 0.25}, {"epoch": 2, "val_dice": 0.5}], "val Dice 0.500 (epoch 2)"),
])
def test_progress_bar_shows_the_latest_validation(history, shown):
    from hqctf.train.trainer import validated

    assert validated(history) == shown
