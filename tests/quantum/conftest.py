"""The compiled engine: tests asking for it skip where no C++ compiler builds it (fail instead with HQCTF_REQUIRE_NATIVE=1)."""

import os

import pytest

from hqctf.quantum import native


@pytest.fixture
def native_engine(request) -> None:
    """Skip (or fail, with HQCTF_REQUIRE_NATIVE=1) a test parametrised with engine="native" where it cannot be built."""
    engine = request.node.callspec.params.get("engine") if hasattr(request.node, "callspec") else "native"
    if engine != "native":
        return
    try:
        native.library()
    except (native.NativeUnavailable, OSError) as exc:
        if os.environ.get("HQCTF_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native engine required but unavailable: {exc}")
        pytest.skip(f"native engine unavailable: {exc}")
