"""A few QPG optimizer steps (default generator, the bundled configs' learning rates) on a real CT slice reduce the
segmentation loss."""

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

from hqctf.data.sample import load_slices, sample_dataset_dir
from hqctf.qpg import QPGConfig, wrap
from hqctf.train.bundled import resolve_config_path
from hqctf.train.config import load_config
from hqctf.train.models import parameter_groups


def test_qpg_training_reduces_loss_on_real_ct_slice():
    images, labels, names = load_slices(sample_dataset_dir(), cases=["pt_4"], slices_per_case=2, seed=0)
    x = torch.from_numpy(images[:2, :, 32:96, 32:96])
    y = torch.from_numpy(labels[:2, None, 32:96, 32:96])
    torch.manual_seed(0)
    model = wrap(BasicUNet(2, 1, len(names), features=(8, 8, 16, 32, 64, 8)), QPGConfig())
    group_lr = load_config(resolve_config_path("openkbp-2d")).optim.group_lr
    opt = torch.optim.AdamW(parameter_groups(model, 3e-3, 0.0, group_lr))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    losses = []
    for _ in range(8):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0] and all(b < a for a, b in zip(losses, losses[1:])), losses
