import pytest
import torch
from monai.losses import DiceCELoss

from hqctf.train.loss import MarginalDiceCELoss


@pytest.mark.parametrize("shape", [(3, 4, 16, 12), (2, 3, 6, 5, 4)])
def test_equals_monai_dicece_when_everything_is_known(shape):
    torch.manual_seed(0)
    logits = torch.randn(shape, dtype=torch.float64)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    ours = MarginalDiceCELoss()(logits, target)
    monai = DiceCELoss(to_onehot_y=True, softmax=True)(logits, target[:, None])
    assert ours.item() == pytest.approx(monai.item(), rel=1e-6)


def test_unknown_structure_is_not_pushed_towards_background():
    """Where structure 2 is unknown, predicting 2 on voxels labelled background costs the same as predicting background."""
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, :4] = 1
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 1, :4] = 5.0
    logits[:, 2, 4:] = 5.0  # confidently predicts structure 2 where the label says background
    known = torch.tensor([[True, True, False]])
    loss = MarginalDiceCELoss()
    swapped = logits.clone()
    swapped[:, [0, 2]] = swapped[:, [2, 0]]  # the same confidence, on background instead of structure 2
    assert loss(logits, target, known).item() == pytest.approx(loss(swapped, target, known).item(), rel=1e-6)
    assert loss(logits, target, known) < loss(logits, target)  # treated as background, 2 would be penalised


def test_gradients_are_finite_with_unknown_channels():
    logits = torch.randn(2, 4, 6, 6, requires_grad=True)
    target = torch.randint(0, 2, (2, 6, 6))
    known = torch.tensor([[True, True, False, False], [True, True, True, True]])
    MarginalDiceCELoss()(logits, target, known).backward()
    assert torch.isfinite(logits.grad).all()
