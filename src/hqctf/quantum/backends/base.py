"""What every back-end shares: its error type and the import of an optional quantum package."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRA = 'pip install "hqctf[quantum]"'


class BackendError(ValueError):
    """A back-end cannot run the circuits as asked (unknown device, missing package, too few wires)."""


def require(module: str, backend: str) -> ModuleType:
    """Import ``module`` or raise a one-line `BackendError` naming the ``quantum`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendError(f"backend {backend} needs {module}, which is not installed: {EXTRA}") from None
