"""Shared fixtures: the read-only real CT data in ``../shared/data`` (override with HQCTF_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_CANDIDATES = [Path(__file__).resolve().parents[1].parent / "shared" / "data", Path("/work/shared/data")]
SHARED_DATA = Path(os.environ["HQCTF_SHARED_DATA"]) if "HQCTF_SHARED_DATA" in os.environ else next(
    (p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0]
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the shared real datasets; tests that need it are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
