"""Whole-case prediction: whole-slice windows where they fit, sliding windows elsewhere."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.networks.nets import BasicUNet

from hqctf.train.validate import predict_volume, slice_window


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
