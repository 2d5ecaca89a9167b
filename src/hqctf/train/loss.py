"""DiceCE loss that leaves structures out where they were not contoured (marginal loss).

Where structure c was not contoured in a case, a voxel labelled background may really be c. The marginal loss
(Shi et al., Med. Image Anal. 2021) therefore scores background in that case by the merged probability
p(background) + sum of p(unknown structures), and leaves the unknown structures' own Dice terms out. With every
structure known it equals MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def merge_unknown(logits: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is the marginal distribution: channel 0 = background + unknown, unknown channels -inf.

    Args:
        logits: (B, C, *spatial).
        known: (B, C) bool; ``known[:, 0]`` must be True.
    """
    view = known.shape + (1,) * (logits.ndim - 2)
    unknown = ~known.view(view)
    background = torch.zeros_like(unknown)
    background[:, 0] = True
    neg_inf = torch.finfo(logits.dtype).min
    merged_bg = torch.logsumexp(logits.masked_fill(~(unknown | background), neg_inf), dim=1, keepdim=True)
    return torch.cat([merged_bg, logits[:, 1:]], dim=1).masked_fill(unknown, neg_inf)


class MarginalDiceCELoss(nn.Module):
    """Soft Dice + cross-entropy over the classes known in each sample.

    Args:
        smooth: added to numerator and denominator of each Dice term (MONAI's default 1e-5).
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
    """

    def __init__(self, smooth: float = 1e-5, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        super().__init__()
        self.smooth, self.lambda_dice, self.lambda_ce = smooth, lambda_dice, lambda_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Loss for logits (B, C, *spatial), integer target (B, *spatial) and ``known`` (B, C) (None: all known)."""
        if known is None:
            known = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
        merged = merge_unknown(logits.float(), known)
        log_probs = F.log_softmax(merged, dim=1)
        ce = F.nll_loss(log_probs, target.long())
        probs = log_probs.exp()
        onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(probs.dtype)
        dims = tuple(range(2, logits.ndim))
        intersection = (probs * onehot).sum(dims)
        denominator = probs.sum(dims) + onehot.sum(dims)
        dice = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        dice = dice[known].mean()
        return self.lambda_dice * dice + self.lambda_ce * ce
