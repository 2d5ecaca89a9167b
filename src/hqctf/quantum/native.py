"""The compiled CPU engine for real circuits: builds ``kernels.cpp`` once per machine and calls it through ctypes.

The library is compiled on first use with the system C++ compiler (``$CXX`` or ``c++``) into a
per-user cache (``$HQCTF_NATIVE_DIR``, else ``$XDG_CACHE_HOME/hqctf/native``), keyed by the source,
the compiler and the CPU, and written atomically so concurrent processes can race safely. Without a
compiler, or with ``HQCTF_NATIVE=0``, :func:`available` is False and the simulator uses its torch
path. Work is split over ``torch.get_num_threads()`` threads; ctypes releases the GIL during calls.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c++17")
KINDS = {"none": 0, "cnot": 1, "cz": 2, "cnot_ring": 3}
MIN_PARALLEL_AMPLITUDES = 1 << 16  # below this much work per call, one thread is faster

log = logging.getLogger(__name__)


class NativeUnavailable(RuntimeError):
    """The compiled engine cannot be built or loaded here."""


def _cache_dir() -> Path:
    if os.environ.get("HQCTF_NATIVE_DIR"):
        return Path(os.environ["HQCTF_NATIVE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hqctf" / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return os.uname().machine


def _compile(compiler: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise NativeUnavailable(f"{compiler} failed on {SOURCE}: {done.stderr.strip().splitlines()[-1:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """The loaded kernel library, compiled first if this machine has none cached yet."""
    if os.environ.get("HQCTF_NATIVE", "1") == "0":
        raise NativeUnavailable("disabled by HQCTF_NATIVE=0")
    compiler = os.environ.get("CXX", "c++")
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeUnavailable(f"no C++ compiler {compiler!r}: {exc}") from exc
    key = hashlib.sha256("\0".join((SOURCE.read_text(), " ".join(FLAGS), version, _cpu_flags())).encode())
    path = _cache_dir() / f"hqctf-kernels-{key.hexdigest()[:16]}.so"
    if not path.exists():
        log.info("compiling %s -> %s", SOURCE.name, path)
        _compile(compiler, path)
    lib = ctypes.CDLL(str(path))
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in ("f32", "f64"):
        getattr(lib, f"hq_forward_{suffix}").argtypes = [ptr, i64, i64, i32, i32, i32, ptr, ptr, ptr]
        getattr(lib, f"hq_backward_{suffix}").argtypes = [ptr, i64, i64, i32, i32, i32, ptr, ptr, ptr, ptr]
    return lib


def available() -> bool:
    """True when the compiled engine loads (compiling it on first call); logs why not otherwise."""
    try:
        library()
    except (NativeUnavailable, OSError) as exc:
        if not getattr(available, "_warned", False):
            log.warning("hqctf native simulator unavailable, using the torch path: %s", exc)
            available._warned = True
        return False
    return True


@lru_cache(maxsize=1)
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """One pool per thread count and process (a forked child must not reuse its parent's dead threads)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="hqctf-sim")


def _run(name: str, batch: int, amplitudes: int, args: tuple) -> None:
    """Call kernel ``name`` over circuits [0, batch), split into contiguous ranges across threads."""
    fn = getattr(library(), name)
    threads = min(torch.get_num_threads(), batch)
    if threads <= 1 or batch * amplitudes < MIN_PARALLEL_AMPLITUDES:
        bounds = [(0, batch)]
    else:
        edges = [batch * i // threads for i in range(threads + 1)]
        bounds = list(zip(edges[:-1], edges[1:]))

    def call(bound: tuple[int, int]) -> int:
        return fn(args[0], bound[0], bound[1], *args[1:])

    codes = [call(bounds[0])] if len(bounds) == 1 else list(_pool(len(bounds), os.getpid()).map(call, bounds))
    if any(codes):
        raise MemoryError(f"{name}: could not allocate work buffers")


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"native simulator supports float32 and float64, got {dtype}")


def forward(theta: torch.Tensor, kind: str, sign: torch.Tensor | None):
    """States and probabilities (C, 2^n) of circuits theta (C, L, n) on the CPU.

    ``kind``: ``none``, ``cnot`` (ladder), ``cnot_ring`` or ``cz`` (ladder or ring, given as ``sign`` (2^n,)).
    """
    theta = theta.contiguous()
    batch, n_layers, n = theta.shape
    states = torch.empty(batch, 1 << n, dtype=theta.dtype)
    probs = torch.empty_like(states)
    _run(
        f"hq_forward_{_suffix(theta.dtype)}",
        batch,
        n_layers * n << n,
        (theta.data_ptr(), n_layers, n, KINDS[kind], _ptr(sign), states.data_ptr(), probs.data_ptr()),
    )
    return states, probs


def backward(
    theta: torch.Tensor,
    kind: str,
    sign: torch.Tensor | None,
    states: torch.Tensor,
    grad_probs: torch.Tensor,
) -> torch.Tensor:
    """Gradient (C, L, n) of a loss with respect to theta, given its gradient w.r.t. the probabilities."""
    theta, grad_probs = theta.contiguous(), grad_probs.contiguous().to(theta.dtype)
    batch, n_layers, n = theta.shape
    grad = torch.empty_like(theta)
    _run(
        f"hq_backward_{_suffix(theta.dtype)}",
        batch,
        n_layers * n << n,
        (
            theta.data_ptr(), n_layers, n, KINDS[kind], _ptr(sign),
            states.data_ptr(), grad_probs.data_ptr(), grad.data_ptr(),
        ),
    )
    return grad


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()
