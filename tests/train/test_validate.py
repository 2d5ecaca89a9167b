"""Whole-case prediction: whole-slice windows where they fit, sliding windows elsewhere; the CPU layout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus

from hqctf.train.models import logits_of
from hqctf.train.norm_act import NormAct
from hqctf.train.validate import cpu_inference_network, predict_volume, slice_window


@pytest.mark.parametrize("shape, patch, window", [
    ((66, 52), (64, 64), (80, 64)),     # a body-cropped OpenKBP slice: whole, padded to multiples of 16
    ((64, 64), (64, 64), (64, 64)),
    ((40, 30), (64, 64), (64, 64)),     # smaller than the patch: the patch
    ((512, 512), (64, 64), (64, 64)),   # 64x the patch's pixels: sliding windows
    ((512, 512), (256, 256), (512, 512)),
])
def test_slice_window(shape, patch, window):
    assert slice_window(shape, patch) == window


def _net():
    torch.manual_seed(0)
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4)).eval()


def test_a_slice_that_fits_is_predicted_in_one_padded_window():
    net, image = _net(), np.random.default_rng(0).normal(size=(66, 52, 5)).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[:, None]
    with torch.no_grad():  # MONAI pads symmetrically to the window, then crops back
        logits = net(F.pad(x, (6, 6, 7, 7)))[..., 7:-7, 6:-6]
    expected = logits.argmax(1).permute(1, 2, 0).numpy()
    assert np.array_equal(predict_volume(net, image, 2, (64, 64)), expected)


def test_a_large_slice_is_tiled_by_the_patch():
    net, image = _net(), np.random.default_rng(1).normal(size=(160, 144, 3)).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[:, None]
    with torch.no_grad():
        expected = sliding_window_inference(x, (32, 32), 8, net, overlap=0.25).argmax(1).permute(1, 2, 0).numpy()
    assert np.array_equal(predict_volume(net, image, 2, (32, 32)), expected)


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
    x = torch.randn(2, 1, *(32,) * dims)
    with torch.no_grad():
        expected, got = logits_of(net(x)), logits_of(fast(x))
    if dims == 2:  # every 2D layer keeps channels-last through to the logits
        assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in net.modules())  # a copy
