"""Bundled example configs (``hqctf/configs``): they load, resolve by name or path, and train on the real data."""

import json
import warnings

import pytest
from torch.utils.data import DataLoader

from hqctf.train.bundled import bundled_configs, bundled_dir, resolve_config_path
from hqctf.train.config import ConfigError, TrainConfig, load_config
from hqctf.train.trainer import data_workers, train_run

EXPECTED = ["ibsi-sarcoma-2d", "kits19-png-2d", "openkbp-2d", "openkbp-3d"]

#: ``--set`` overrides that shrink a bundled config to a run of a few seconds on 2 CPU cores. data.path, out
#: and data.cache stay as the config has them (relative, so they resolve against the test's working folder).
#: The patch size stays too: validation slides it over a whole case, and 32 x 32 windows need 4-16x more
#: forward passes than the configs' whole-slice patches (several times slower overall on 2 cores).
TINY = ["optim.epochs=1", "data.samples_per_epoch=8", "optim.batch_size=4", "model.features=[4, 4, 8, 8, 16, 4]",
        "data.max_cases=6", "data.workers=0", "validation.max_cases=1", "validation.overlays=1", "device=cpu"]


def test_the_bundled_configs_are_installed():
    assert bundled_configs() == EXPECTED
    assert all((bundled_dir() / f"{name}.yaml").is_file() for name in EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_bundled_config_loads_and_checks(name):
    config = load_config(resolve_config_path(name))
    assert isinstance(config, TrainConfig) and config.check() is config
    assert config.data.path.startswith("../shared/data/")  # relative: resolved against the working folder
    switched = load_config(resolve_config_path(name), ["mode.name=classical"] if config.mode.name != "classical"
                           else ["mode.name=qpg"])
    assert switched.mode.name != config.mode.name


@pytest.mark.parametrize("name", EXPECTED)
def test_bundled_workers_fit_this_machine(name):
    """``workers: auto`` resolves from the usable CPU cores: the DataLoader does not warn about too many workers."""
    workers = load_config(resolve_config_path(name)).data.workers
    assert workers == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when num_workers exceeds the cores this process may use
        batches = list(DataLoader(list(range(4)), batch_size=2, num_workers=data_workers(workers)))
    assert len(batches) == 2
    assert data_workers("auto", processes=64) == 0  # cores shared by many training processes: no workers
    assert data_workers(3) == 3 and data_workers(0) == 0
    assert load_config(resolve_config_path(name), ["data.workers=2"]).data.workers == 2


def test_resolve_by_name_and_by_path(tmp_path, monkeypatch):
    bundled = resolve_config_path("openkbp-2d")
    assert bundled == bundled_dir() / "openkbp-2d.yaml"
    assert resolve_config_path(str(bundled)) == bundled
    own = tmp_path / "mine.yaml"
    own.write_text("data: {path: /data/x}\n")
    assert resolve_config_path(own) == own
    monkeypatch.chdir(tmp_path)
    (tmp_path / "openkbp-2d").write_text("data: {path: /data/local}\n")
    assert resolve_config_path("openkbp-2d").resolve() == (tmp_path / "openkbp-2d").resolve()  # a file wins
    assert resolve_config_path("mine.yaml") == own.relative_to(tmp_path)


@pytest.mark.parametrize("text", ["nope", "openkbp-2d.yaml", "configs/openkbp-2d", "missing/dir.yaml", "."])
def test_unknown_name_lists_the_bundled_ones(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"bundled train configs: {', '.join(EXPECTED)}"):
        resolve_config_path(text)


@pytest.mark.parametrize("name, run", [("openkbp-2d", "runs/openkbp-2d-qpg"), ("ibsi-sarcoma-2d", "runs/ibsi-sarcoma-2d-qpg")])
def test_bundled_config_trains_one_epoch_on_the_shared_data(name, run, shared_data, tmp_path, monkeypatch):
    # The config's data.path is ../shared/data/<folder>: lay out that neighbourhood and work from "main".
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data, target_is_directory=True)
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    summary = train_run(load_config(resolve_config_path(name), TINY), progress=False)
    folder = tmp_path / "main" / run
    assert json.loads((folder / "summary.json").read_text())["epochs"] == summary["epochs"] == 1
    assert summary["train_cases"] + summary["val_cases"] <= 6 and summary["val_cases"] == 1
    assert any((tmp_path / "main" / ".hqctf-cache").rglob("*.image.npy"))
