import pytest
import yaml

from hqctf.train.config import ConfigError, TrainConfig, load_config


def test_yaml_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "/data/x", "patch_size": [64, 64]}, "mode": {"name": "qpg"}}))
    config = load_config(path, ["mode.qpg.n_layers=3", "optim.lr=0.01", "data.labels={1: GTV}"])
    assert isinstance(config, TrainConfig)
    assert (config.mode.name, config.mode.qpg.n_layers, config.optim.lr) == ("qpg", 3, 0.01)
    assert config.data.patch_size == (64, 64) and config.data.labels == {1: "GTV"}
    saved = tmp_path / "resolved.yaml"
    saved.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(saved) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["mode.name=qgp"], "mode.name: unknown value 'qgp'; choose one of classical, qpg, lora, lowrank, light"),
        (["model.name=vnet"], "model.name: unknown value 'vnet'; choose one of unet, unetpp"),
        (["validation.metric=acc"], "choose one of dice, iou, hd95, surface_dice, loss"),
        (["optim.schedule=step"], "choose one of cosine, plateau"),
        (["model.nme=unet"], "unknown key model.nme; valid keys: name, spatial_dims, features, dropout"),
        (["data.patch_size=[60, 64]"], "multiple of 16"),
        (["model.spatial_dims=3"], "must have 3 sizes"),
        (['data.path=""'], "data.path is required"),
        (["data.path="], "data.path: expected str, got None"),
        (["optim.lr=fast"], "optim.lr: expected float"),
        (["optim.epochs=0"], "optim.epochs must be >= 1"),
        (["optim.min_epochs=-1"], "optim.min_epochs must be >= 0, got -1"),
        (["mode.qpg.transform=cubic"], "unknown transform 'cubic'"),
        (["data.augment=maybe"], "data.augment: expected true or false"),
        (["data.workers=many"], "data.workers: expected auto or a number >= 0, got 'many'"),
        (["data.workers=-1"], "data.workers: expected auto or a number >= 0, got -1"),
    ],
)
def test_bad_values_fail_with_choices(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, ["data.path=/data/x", *overrides])


def test_unreadable_config_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: cannot read config"):
        load_config(path)
