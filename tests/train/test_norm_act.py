import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hqctf import compiled
from hqctf.train import norm_act
from hqctf.train.norm_act import NormAct, fuse_norm_act


def _reference(x, weight, bias, slope):
    return F.leaky_relu(F.instance_norm(x, weight=weight, bias=bias, eps=1e-5), slope)


@pytest.fixture
def calls(monkeypatch):
    """How many times the compiled kernel ran."""
    count = []
    real = compiled.call
    monkeypatch.setattr(compiled, "call", lambda fn, *args: (count.append(fn), real(fn, *args))[1])
    return count


@pytest.mark.parametrize("shape", [(3, 16, 12, 20), (2, 8, 40, 30), (2, 8, 6, 5, 7), (1, 4, 3, 3)])  # 1,200 positions: several blocks
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("affine, slope", [(True, 0.1), (False, 0.0)])
def test_the_kernel_is_instance_norm_then_leaky_relu(shape, dtype, affine, slope, calls):
    torch.manual_seed(0)
    layout = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    x = (torch.randn(shape, dtype=dtype) * 3 + 2).contiguous(memory_format=layout)
    c = shape[1]
    weight, bias = (torch.randn(c, dtype=dtype), torch.randn(c, dtype=dtype)) if affine else (None, None)
    with torch.inference_mode():
        got = NormAct(c, weight, bias, 1e-5, slope)(x)
    assert calls and got.is_contiguous(memory_format=layout)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, _reference(x, weight, bias, slope), atol=tol, rtol=tol)


def test_a_large_mean_does_not_cancel_the_variance(calls):
    torch.manual_seed(0)  # float32 activations around 1,000 with sd 3: E[x^2] - E[x]^2 in float would lose it
    x = (torch.randn(2, 16, 64, 80) * 3 + 1000).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(16) + 0.5, torch.randn(16)
    with torch.inference_mode():
        got = NormAct(16, weight, bias, 1e-5, 0.1)(x)
    assert calls
    expected = _reference(x.double(), weight.double(), bias.double(), 0.1)
    torch.testing.assert_close(got.double(), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["contiguous", "gradient", "disabled"])
def test_other_inputs_take_the_torch_ops(case, calls, monkeypatch):
    torch.manual_seed(0)
    weight, bias = torch.randn(8), torch.randn(8)
    module = NormAct(8, weight, bias, 1e-5, 0.1)
    x = torch.randn(2, 8, 6, 6)
    if case == "contiguous":  # NCHW, not channels-last
        got = module(x)
    elif case == "gradient":
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        got = module(x)
        got.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    else:
        monkeypatch.setattr(norm_act, "library", lambda: (_ for _ in ()).throw(compiled.NativeUnavailable("off")))
        got = module(x.contiguous(memory_format=torch.channels_last))
    assert not calls
    torch.testing.assert_close(got, _reference(x, weight, bias, 0.1))


def test_fusing_keeps_the_function_and_only_fuses_norm_then_activation():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.InstanceNorm2d(4, affine=True), nn.Dropout(0.2), nn.LeakyReLU(0.1),  # fused
        nn.Conv2d(4, 4, 3), nn.GroupNorm(4, 4), nn.ReLU(),  # fused (slope 0)
        nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(),  # two channels per group: kept
        nn.Conv2d(4, 4, 3), nn.InstanceNorm2d(4), nn.Conv2d(4, 2, 1),  # no activation after: kept
    ).eval()
    for m in net.modules():
        if isinstance(m, nn.InstanceNorm2d | nn.GroupNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.3)
            nn.init.normal_(m.bias, 0.0, 0.3)
    x = torch.randn(2, 1, 20, 20)
    with torch.no_grad():
        expected = net(x)
        fused = fuse_norm_act(net)
        got = fused(x.contiguous(memory_format=torch.channels_last))
    kinds = [type(m).__name__ for m in fused]
    assert kinds == ["Conv2d", "NormAct", "Dropout", "Identity", "Conv2d", "NormAct", "Identity",
                     "Conv2d", "GroupNorm", "ReLU", "Conv2d", "InstanceNorm2d", "Conv2d"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
