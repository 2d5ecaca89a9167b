"""Compiled CPU kernels: build a C++ source once per machine, load it with ctypes, pick its thread count.

A source is compiled on first use with the system C++ compiler (``$CXX`` or ``c++``) into a per-user
cache (``$HQCTF_NATIVE_DIR``, else ``$XDG_CACHE_HOME/hqctf/native``), keyed by the source, the
compiler and the CPU, and renamed into place atomically so concurrent processes can race safely.
Without a compiler, or with ``HQCTF_NATIVE=0``, loading raises :class:`NativeUnavailable` and callers
use their torch path. Kernels split their work over OpenMP threads (``parallel.h``): with torch's
libgomp already loaded they share torch's thread pool instead of competing with its spinning workers.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

ENGINES = ("auto", "native", "torch")  # auto: compiled where it applies and builds, else torch
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fPIC", "-shared", "-std=c++17")
THREADING = (("-fopenmp",), ("-fopenmp-simd",))  # tried in turn: OpenMP threads, else one thread per call
HEADER = Path(__file__).with_name("parallel.h")

log = logging.getLogger(__name__)


class NativeUnavailable(RuntimeError):
    """A compiled kernel library cannot be built or loaded here."""


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


def _compile(compiler: str, source: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        for threading in THREADING:
            done = subprocess.run(
                [compiler, *FLAGS, *threading, str(source), "-o", tmp], capture_output=True, text=True, timeout=300
            )
            if done.returncode == 0:
                break
        else:
            raise NativeUnavailable(f"{compiler} failed on {source}: {done.stderr.strip().splitlines()[-1:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


POINTER, INT64, INT32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def load(source: Path, signatures: tuple[tuple[str, tuple], ...]) -> ctypes.CDLL:
    """The library built from ``source``, compiled first if this machine has none cached yet.

    ``signatures``: (name, argument ctypes) of its functions; each exists as ``name_f32`` and ``name_f64``.
    A failure is remembered too, so callers on a hot path never retry the compiler.
    """
    result = _load(source, signatures)
    if isinstance(result, Exception):
        raise NativeUnavailable(str(result))
    return result


@lru_cache(maxsize=None)
def _load(source: Path, signatures: tuple[tuple[str, tuple], ...]) -> ctypes.CDLL | Exception:
    try:
        if os.environ.get("HQCTF_NATIVE", "1") == "0":
            raise NativeUnavailable("disabled by HQCTF_NATIVE=0")
        compiler = os.environ.get("CXX", "c++")
        try:
            version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NativeUnavailable(f"no C++ compiler {compiler!r}: {exc}") from exc
        text = (source.read_text(), HEADER.read_text(), " ".join(FLAGS), repr(THREADING), version, _cpu_flags())
        key = hashlib.sha256("\0".join(text).encode())
        path = _cache_dir() / f"hqctf-{source.parent.name}-{source.stem}-{key.hexdigest()[:16]}.so"
        if not path.exists():
            log.info("compiling %s -> %s", source, path)
            _compile(compiler, source, path)
        lib = ctypes.CDLL(str(path))
    except (NativeUnavailable, OSError) as exc:
        log.warning("hqctf compiled kernels %s/%s unavailable, using the torch path: %s", source.parent.name, source.name, exc)
        return exc
    for name, argtypes in signatures:
        for suffix in ("f32", "f64"):
            getattr(lib, f"{name}_{suffix}").argtypes = list(argtypes)
    return lib


def use_native(engine: str, fits: bool, library: Callable[[], ctypes.CDLL], refusal: str) -> bool:
    """Whether to run the compiled kernels for ``engine`` (one of ENGINES) on work they can (``fits``) or cannot do.

    ``native`` insists: ``refusal`` (a ValueError) when they cannot do it, NativeUnavailable when they do not
    build; ``auto`` falls back to torch in both cases (the build failure is logged once).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {list(ENGINES)}")
    if engine == "torch":
        return False
    if engine == "native":
        if not fits:
            raise ValueError(refusal)
        library()
        return True
    if not fits:
        return False
    try:
        library()
    except NativeUnavailable:
        return False
    return True


_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def threads(work: int, min_parallel_work: int) -> int:
    """Threads for one kernel call: torch's thread count, or 1 for work under ``min_parallel_work`` and in a
    forked child (GNU OpenMP hangs in a child whose parent had started its threads)."""
    if _forked or work < min_parallel_work:
        return 1
    return torch.get_num_threads()


def call(fn, *args) -> None:
    """``fn(*args)``; a non-zero return code (a failed allocation of work buffers) raises MemoryError."""
    if fn(*args):
        raise MemoryError(f"{getattr(fn, '__name__', fn)}: could not allocate work buffers")


def suffix(dtype: torch.dtype) -> str:
    """Kernel name suffix of a floating dtype."""
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"compiled kernels support float32 and float64, got {dtype}")


def pointer(t: torch.Tensor | None) -> int | None:
    """Data pointer of a contiguous CPU tensor, or NULL."""
    return None if t is None else t.data_ptr()
