import copy

import pytest
import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus
from monai.networks.nets.basic_unet import UpCat

from hqctf.train.split_concat import SplitUNetPlusPlus, SplitUpCat, split_concatenations

FEATURES = (4, 4, 8, 8, 16, 4)


@pytest.mark.parametrize("net, shape", [
    (lambda: BasicUNetPlusPlus(2, 1, 3, FEATURES), (2, 1, 32, 48)),
    (lambda: BasicUNetPlusPlus(2, 1, 3, FEATURES, deep_supervision=True), (2, 1, 32, 48)),  # every head
    (lambda: BasicUNetPlusPlus(2, 1, 3, FEATURES), (1, 1, 40, 24)),  # 5 -> 2 pixels at level 3: padded
    (lambda: BasicUNetPlusPlus(3, 1, 2, FEATURES, upsample="nontrainable"), (1, 1, 32, 32, 32)),
    (lambda: BasicUNet(2, 1, 3, FEATURES), (2, 1, 40, 24)),
    (lambda: BasicUNet(3, 1, 3, FEATURES), (1, 1, 32, 48, 32)),
])
def test_sums_of_convolutions_are_the_network_without_concatenating(net, shape, monkeypatch):
    torch.manual_seed(0)
    net = net().eval()
    split = split_concatenations(copy.deepcopy(net)).eval()
    assert not any(isinstance(m, UpCat) for m in split.modules())
    assert sum(isinstance(m, SplitUpCat) for m in split.modules()) == sum(isinstance(m, UpCat) for m in net.modules())
    x = torch.randn(shape)
    with torch.no_grad():
        expected = net(x)
        cats = []
        real_cat = torch.cat
        monkeypatch.setattr(torch, "cat", lambda *a, **k: (cats.append(1), real_cat(*a, **k))[1])
        got = split(x)
    assert not cats  # no concatenation left
    expected, got = [expected] if torch.is_tensor(expected) else expected, [got] if torch.is_tensor(got) else got
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_the_split_follows_the_inputs_layout_and_passes_gradients():
    torch.manual_seed(0)
    net = BasicUNetPlusPlus(2, 1, 3, FEATURES).eval()
    split = split_concatenations(copy.deepcopy(net).to(memory_format=torch.channels_last))
    assert isinstance(split, SplitUNetPlusPlus)
    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = split(x)[-1]
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, net(x)[-1], atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in split.named_parameters() if "upcat" in n)


def test_other_networks_are_left_as_they_are():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    assert split_concatenations(net) is net
