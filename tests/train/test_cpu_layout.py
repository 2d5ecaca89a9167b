"""The CPU inference layout computes the same logits as the network it copies."""

import pytest
import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus

from hqctf.train.cpu_layout import cpu_inference_network
from hqctf.train.models import logits_of
from hqctf.train.norm_act import NormAct
from hqctf.train.split_concat import SplitUpCat


@pytest.mark.parametrize("dims, net", [
    (2, lambda: BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4))),
    (2, lambda: BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4),
                          norm=("instance", {"affine": False}))),
    (3, lambda: BasicUNet(spatial_dims=3, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4))),
])
def test_the_cpu_inference_network_computes_the_same_logits(dims, net):
    torch.manual_seed(0)
    net = net().eval()
    for module in net.modules():  # trained-looking norm parameters, so a lost affine would show
        if isinstance(module, torch.nn.InstanceNorm2d | torch.nn.InstanceNorm3d) and module.affine:
            torch.nn.init.normal_(module.weight, 1.0, 0.3)
            torch.nn.init.normal_(module.bias, 0.0, 0.3)
    fast = cpu_inference_network(net, dims)
    assert not any(isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in fast.modules())
    assert sum(isinstance(m, NormAct) for m in fast.modules()) == sum(
        isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in net.modules())  # every ADN fused
    assert any(isinstance(m, SplitUpCat) for m in fast.modules())  # concatenations as sums of convolutions
    x = torch.randn(2, 1, *(32,) * dims)
    with torch.no_grad():
        expected, got = logits_of(net(x)), logits_of(fast(x))
    if dims == 2:  # every 2D layer keeps channels-last through to the logits
        assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in net.modules())  # a copy
