"""Batched differentiable statevector simulation of many small independent circuits (no network code)."""

from .circuits import CircuitSpec
from .sampling import sample_probabilities
from .simulator import simulate

__all__ = ["CircuitSpec", "simulate", "sample_probabilities"]
