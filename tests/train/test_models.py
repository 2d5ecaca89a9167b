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


@pytest.mark.parametrize("features", [(16, 16, 32, 64, 128, 16), (32, 32, 64, 128, 256, 32)])  # the two widths
def test_trainable_counts_by_mode(features):
    counts = {m: count_parameters(build_model(ModelConfig(features=features), ModeConfig(name=m), 8))
              for m in ("classical", "qpg", "light")}
    trainable = {m: c[0] for m, c in counts.items()}
    assert counts["classical"][0] == counts["classical"][1] == counts["qpg"][1]  # QPG keeps the full network
    assert trainable["classical"] >= 10 * trainable["qpg"]  # the bar on UNet++
    assert abs(trainable["light"] - trainable["qpg"]) <= 0.1 * trainable["qpg"]  # light matches QPG's budget
    assert counts["light"][0] == counts["light"][1]  # light is an ordinary, smaller network


@pytest.mark.parametrize("mode, inputs", [("hyper", "embedding"), ("hyperprob", "softmax"), ("frozen", "frozen")])
def test_qpg_controls_train_what_they_should(mode, inputs):
    from hqctf.qpg.generator import QPGGenerator

    torch.manual_seed(0)
    qpg = count_parameters(build_model(SMALL, ModeConfig(name="qpg"), 3))
    model = build_model(SMALL, ModeConfig(name=mode), 3)
    generators = [m for m in model.modules() if isinstance(m, QPGGenerator)]
    assert generators and {g.config.inputs for g in generators} == {inputs}
    trainable, total = count_parameters(model)
    assert total == qpg[1]
    if mode == "frozen":  # only mapping networks and gains train (so a few more layers are worth generating)
        assert not any(g.angles.requires_grad for g in generators) and trainable < qpg[0] / 5
    else:
        assert trainable == qpg[0]
    model(torch.randn(2, 1, 32, 32))[0].square().mean().backward()
    assert all(g.embedding.grad.abs().sum() > 0 for g in generators if mode != "frozen")
