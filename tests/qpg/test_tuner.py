"""wrap / merge / report on MONAI networks, and the LoRA and low-rank baselines."""

import subprocess
import sys
import textwrap

import pytest
import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus
from torch import nn

from hqctf.qpg import LoRAConfig, LowRankConfig, QPGConfig, merge, trainable_report, weight_effective_rank, wrap
from hqctf.qpg.bank import generators
from hqctf.qpg.targets import out_channel_dim

FEATURES = (4, 4, 8, 8, 16, 4)
NETS = {
    "unet2d": (lambda: BasicUNet(2, 1, 3, features=FEATURES), (2, 1, 32, 32)),
    "unet3d": (lambda: BasicUNet(3, 1, 3, features=FEATURES), (1, 1, 32, 32, 32)),
    "unetpp2d": (lambda: BasicUNetPlusPlus(2, 1, 3, features=FEATURES), (2, 1, 32, 32)),
    "unetpp3d": (lambda: BasicUNetPlusPlus(3, 1, 3, features=FEATURES), (1, 1, 32, 32, 32)),
}


def _out(y):
    return y[0] if isinstance(y, (list, tuple)) else y


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("config", [QPGConfig(min_compression=0), LoRAConfig(r=2), LowRankConfig(r=2)], ids=["qpg", "lora", "lowrank"])
def test_merge_equals_wrapped_and_keeps_names(net, config):
    make, shape = NETS[net]
    torch.manual_seed(0)
    model = make()
    names = {n for n, _ in model.named_modules()}
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrap(model, config)
    assert names <= {n for n, _ in model.named_modules()}
    if isinstance(config, LoRAConfig):  # give the update something to merge
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.1)
    model.eval()
    x = torch.randn(shape)
    y = _out(model(x))
    merged = merge(model)
    assert not any("qpg" in n for n, _ in merged.named_modules())
    assert not merged._forward_hooks and not merged._forward_pre_hooks
    assert {k: v.shape for k, v in merged.state_dict().items()} == shapes
    assert all(p.is_contiguous() for p in merged.parameters())  # strided weights would slow every forward
    torch.testing.assert_close(_out(merged(x)), y, atol=1e-5, rtol=0)
    fresh = make().eval()
    fresh.load_state_dict(merged.state_dict())
    torch.testing.assert_close(_out(fresh(x)), y, atol=1e-5, rtol=0)


def test_merged_model_runs_without_hqctf(tmp_path):
    """The merged network is a plain MONAI module: it loads and predicts where hqctf cannot be imported."""
    torch.manual_seed(0)
    model = wrap(BasicUNetPlusPlus(2, 1, 3, features=FEATURES), QPGConfig(min_compression=0)).eval()
    x = torch.randn(1, 1, 32, 32)
    torch.save({"state": merge(model).state_dict(), "x": x, "y": _out(model(x))}, tmp_path / "merged.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hqctf"] = None  # any import of hqctf now fails
        import torch
        from monai.networks.nets import BasicUNetPlusPlus
        blob = torch.load({str(tmp_path / "merged.pt")!r})
        net = BasicUNetPlusPlus(2, 1, 3, features={FEATURES}).eval()
        net.load_state_dict(blob["state"])
        err = (net(blob["x"])[0] - blob["y"]).abs().max().item()
        assert err < 1e-5, err
        print("ok")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr


@pytest.mark.parametrize("net", NETS)
def test_generated_weights_have_high_effective_rank_at_init(net):
    torch.manual_seed(0)
    model = wrap(NETS[net][0](), QPGConfig(min_compression=0))
    for name in generators(model):
        layer = model.get_submodule(name)
        rank, max_rank = weight_effective_rank(layer.weight, out_channel_dim(layer))
        assert rank >= 0.5 * max_rank, (name, rank, max_rank)


def test_default_unetpp_rank_and_budget():
    """Default-width 2D UNet++: every layer keeps >= half its rank, >= 10x fewer trainable parameters."""
    torch.manual_seed(0)
    model = BasicUNetPlusPlus(2, 1, 8)
    classical = sum(p.numel() for p in model.parameters())
    wrap(model, QPGConfig(min_compression=0))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable * 10 <= classical
    for name in generators(model):
        layer = model.get_submodule(name)
        rank, max_rank = weight_effective_rank(layer.weight, out_channel_dim(layer))
        assert rank >= 0.5 * max_rank, (name, rank, max_rank)


def test_trainable_report_lists_every_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    wrap(model, QPGConfig(min_compression=0, exclude_modules=("2",)))
    report = trainable_report(model)
    lines = report.splitlines()
    assert lines[1].split()[:3] == ["0", "Conv2d", "qpg"]
    assert lines[2].split() == ["1", "BatchNorm2d", "classical", "8", "8"]
    assert lines[3].split() == ["2", "Conv2d", "classical", "10", "10"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lines[-1].startswith(f"trainable {trainable:,} of {36 + 4 + 8 + 10:,}")


def test_lora_starts_at_the_classical_weight_and_trains_only_the_update():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 9, 9)
    before = model(x)
    wrap(model, LoRAConfig(r=2, alpha=4))
    torch.testing.assert_close(model(x), before)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "0.bias": 8,
        "2.bias": 4,
        "0.qpg.lora_A": 2 * 27,
        "0.qpg.lora_B": 8 * 2,
        "2.qpg.lora_A": 2 * 72,
        "2.qpg.lora_B": 4 * 2,
    }
    model(x).sum().backward()
    assert model[0].qpg.lora_B.grad.abs().sum() > 0


def test_lowrank_weights_have_rank_r_and_classical_scale():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3))
    std = model[0].weight.std().item()
    wrap(model, LowRankConfig(r=3))
    w = model[0].weight
    assert torch.linalg.matrix_rank(w.reshape(32, -1)) == 3
    assert abs(w.std().item() - std) < 1e-4
    assert sum(p.numel() for p in model[0].qpg.parameters()) == 3 * (32 + 144)


def test_weights_are_regenerated_only_when_generators_change(monkeypatch):
    """Evaluation reuses generated weights until an optimizer step (or load) changes a generator."""
    import hqctf.qpg.bank as bank

    torch.manual_seed(0)
    model = wrap(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)), QPGConfig(min_compression=0))
    calls = []
    real_generate = bank.generate
    monkeypatch.setattr(bank, "generate", lambda gens: calls.append(1) or real_generate(gens))
    x = torch.randn(1, 1, 8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().sum().backward()
    with torch.no_grad():
        first = model(x)
        assert len(calls) == 1 and torch.equal(model(x), first)
    assert len(calls) == 1
    opt.step()
    with torch.no_grad():
        stepped = model(x)
    assert len(calls) == 2 and not torch.allclose(stepped, first)
    torch.testing.assert_close(stepped, merge(model)(x))
