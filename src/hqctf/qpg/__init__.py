"""Generated weights for existing networks: QPG (quantum parameter generation) and its LoRA / low-rank baselines.

``wrap`` injects generators into target layers by name, ``merge`` writes the generated weights back
into a plain network, ``trainable_report`` shows what is trained.
"""

from .config import LoRAConfig, LowRankConfig, QPGConfig, TargetConfig
from .rank import effective_rank, weight_effective_rank
from .targets import TargetError
from .tuner import count_parameters, merge, trainable_report, wrap

__all__ = [
    "QPGConfig",
    "LoRAConfig",
    "LowRankConfig",
    "TargetConfig",
    "TargetError",
    "wrap",
    "merge",
    "trainable_report",
    "count_parameters",
    "effective_rank",
    "weight_effective_rank",
]
