import pytest
import torch

from hqctf.qpg import count_parameters
from hqctf.train.config import ModeConfig, ModelConfig
from hqctf.train.models import build_model, logits_of

SMALL = ModelConfig(features=(8, 8, 16, 32, 64, 8))


@pytest.mark.parametrize("name", ["unet", "unetpp"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_logits_shape(name, spatial_dims):
    config = ModelConfig(name=name, spatial_dims=spatial_dims, features=SMALL.features)
    model = build_model(config, ModeConfig(name="qpg"), out_channels=3)
    x = torch.randn(1, 1, *([32] * spatial_dims))
    assert logits_of(model(x)).shape == (1, 3, *([32] * spatial_dims))


def test_trainable_counts_by_mode():
    counts = {m: count_parameters(build_model(ModelConfig(), ModeConfig(name=m), 8)) for m in ("classical", "qpg", "light")}
    trainable = {m: c[0] for m, c in counts.items()}
    assert counts["classical"][0] == counts["classical"][1] == counts["qpg"][1]  # QPG keeps the full network
    assert trainable["classical"] >= 10 * trainable["qpg"]  # the bar on UNet++
    assert abs(trainable["light"] - trainable["qpg"]) <= 0.1 * trainable["qpg"]  # light matches QPG's budget
    assert counts["light"][0] == counts["light"][1]  # light is an ordinary, smaller network
