"""A tiny bench: two modes, one seed, two training-set sizes, runs of seconds on the tiny dataset."""

import pytest
import yaml

from hqctf.train.config import load_config


@pytest.fixture
def tiny_bench(tiny_dataset, tiny_overrides, tmp_path):
    """Function writing a bench YAML (extra bench keys as keyword arguments); returns its path."""
    train = tmp_path / "tiny-train.yaml"
    overrides = tiny_overrides(tiny_dataset, tmp_path / "unused", tmp_path / "cache",
                               **{"data.test_fraction": 0.34, "validation.spectra": "true", "validation.overlays": 0})
    train.write_text(yaml.safe_dump(load_config(None, overrides).to_dict()))

    def write(name="tiny.yaml", **bench):
        values = {"train": str(train), "modes": ["classical", "qpg"], "models": ["unetpp"], "sizes": [1, "all"],
                  "seeds": [0], "patience": 1, "max_epochs": 2, "reference": "qpg", **bench}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(values))
        return path

    return write
