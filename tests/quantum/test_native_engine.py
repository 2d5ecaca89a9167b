"""The compiled CPU engine against the torch engine, its threading, and its fallbacks."""

import os
import subprocess
import sys

import pytest
import torch

from hqctf.quantum import CircuitSpec, native, simulate

ENGINE_CASES = [
    # n, layers, entangler, ring
    (1, 1, "cnot", True),
    (2, 3, "cnot", False),
    (3, 2, "cnot", True),
    (4, 2, "cnot", True),
    (4, 3, "cz", True),
    (5, 1, "none", False),  # from n = 5 on: the fused entangle + low-qubit vector path
    (5, 2, "cnot", True),
    (6, 1, "cnot", True),
    (6, 4, "cnot", False),
    (7, 3, "cz", False),
    (8, 5, "cz", True),
    (9, 2, "cnot", True),
    (10, 3, "none", False),
    (11, 2, "cnot", True),
    (12, 3, "cnot", True),
]


@pytest.mark.parametrize("engine", ["native"])
@pytest.mark.parametrize("n, layers, entangler, ring", ENGINE_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_matches_torch_engine(n, layers, entangler, ring, dtype, engine, native_engine):
    spec = CircuitSpec(n, layers, entangler=entangler, ring=ring)
    gen = torch.Generator().manual_seed(n * 10 + layers)
    angles = (torch.rand(6, *spec.angle_shape, generator=gen, dtype=dtype) * 6.3).requires_grad_()
    weights = torch.randn(6, 1 << n, generator=gen, dtype=dtype)
    grads = {}
    for eng in ("native", "torch"):
        probs = simulate(angles, spec, engine=eng)
        (grads[eng],) = torch.autograd.grad((probs * weights).sum(), angles)
        grads[eng + "-probs"] = probs.detach()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(grads["native-probs"], grads["torch-probs"], atol=tol, rtol=0)
    torch.testing.assert_close(grads["native"], grads["torch"], atol=tol, rtol=tol)


@pytest.mark.parametrize("engine", ["native"])
@pytest.mark.parametrize("n", [4, 9])
def test_native_at_angles_where_the_scaled_rotation_form_switches(n, engine, native_engine):
    """Angles with cos or sin of the half angle zero, or |cos| = |sin|, switch the engine's rotation form."""
    spec = CircuitSpec(n, 4)
    gen = torch.Generator().manual_seed(n)
    special = torch.tensor([0.0, 0.5, 1.0, 1.5, -1.0, 2.0, -0.5, 3.0], dtype=torch.float64) * torch.pi
    angles = special[torch.randint(0, len(special), (8, *spec.angle_shape), generator=gen)].requires_grad_()
    weights = torch.randn(8, 1 << n, generator=gen, dtype=torch.float64)
    results = []
    for eng in ("native", "torch"):
        probs = simulate(angles, spec, engine=eng)
        results.append((probs.detach(), torch.autograd.grad((probs * weights).sum(), angles)[0]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("engine", ["native"])
def test_threaded_batches_equal_one_thread(engine, native_engine, monkeypatch):
    """A batch split over threads gives bit-identical results to a single-thread run."""
    monkeypatch.setattr(native, "MIN_PARALLEL_WORK", 0)
    spec = CircuitSpec(10, 3)
    angles = (torch.rand(37, *spec.angle_shape, dtype=torch.float64) * 6).requires_grad_()
    weights = torch.randn(37, 1 << 10, dtype=torch.float64)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 3):
            torch.set_num_threads(t)
            probs = simulate(angles, spec, engine="native")
            results.append((probs.detach(), torch.autograd.grad((probs * weights).sum(), angles)[0]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("engine", ["native"])
def test_native_gradcheck(engine, native_engine):
    spec = CircuitSpec(5, 3)
    angles = (torch.rand(2, *spec.angle_shape, dtype=torch.float64) * 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: simulate(a, spec, engine="native"), (angles,))


def test_native_engine_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="RY-only circuits with the adjoint backward"):
        simulate(torch.zeros(1, 1, 2, 3), CircuitSpec(3, 1, ("rx", "ry")), engine="native")
    with pytest.raises(ValueError, match="RY-only circuits with the adjoint backward"):
        simulate(torch.zeros(1, 1, 1, 3), CircuitSpec(3, 1), backward="autograd", engine="native")
    with pytest.raises(ValueError, match=r"unknown engine 'gpu'; choose from \['auto', 'native', 'torch'\]"):
        simulate(torch.zeros(1, 1, 1, 3), CircuitSpec(3, 1), engine="gpu")


_PROBE = """
import logging, torch
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from hqctf.quantum import CircuitSpec, native, simulate
spec = CircuitSpec(4, 2)
angles = torch.linspace(0, 3, 8, dtype=torch.float64).reshape(1, 2, 1, 4)
try:
    native.library()
    built = True
except native.NativeUnavailable:
    built = False
print(built, float(simulate(angles, spec)[0, 5]), float(simulate(angles, spec, engine="torch")[0, 5]))
"""


def _probe(tmp_path, **env):
    full = {**os.environ, "HQCTF_NATIVE_DIR": str(tmp_path / "native"), **env}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=full, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), done.stderr


@pytest.mark.parametrize(
    "env, reason",
    [({"HQCTF_NATIVE": "0"}, "disabled by HQCTF_NATIVE=0"), ({"CXX": "/nonexistent/c++"}, "no C++ compiler")],
    ids=["disabled", "no-compiler"],
)
def test_auto_falls_back_to_torch_and_says_why(tmp_path, env, reason):
    (available, auto, torch_path), stderr = _probe(tmp_path, **env)
    assert available == "False" and auto == torch_path
    assert "compiled kernels quantum/kernels.cpp unavailable, using the torch path" in stderr and reason in stderr
    assert stderr.count("unavailable, using the torch path") == 1  # the failure is remembered, not retried
    assert not (tmp_path / "native").exists() or not any((tmp_path / "native").iterdir())


@pytest.mark.parametrize("engine", ["native"])
def test_library_is_compiled_once_into_the_cache(tmp_path, engine, native_engine):
    (available, auto, torch_path), _ = _probe(tmp_path)
    assert available == "True" and abs(float(auto) - float(torch_path)) < 1e-12
    built = sorted((tmp_path / "native").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    _probe(tmp_path)
    assert sorted((tmp_path / "native").iterdir()) == built and built[0].stat().st_mtime_ns == stamp


_NO_OPENMP_PROBE = """
import torch
from hqctf.quantum import CircuitSpec, native, simulate
torch.set_num_threads(2)
native.MIN_PARALLEL_WORK = 0  # two parts, which run one after the other without OpenMP
spec = CircuitSpec(6, 3)
angles = torch.rand(5, *spec.angle_shape, dtype=torch.float64) * 6
diff = (simulate(angles, spec, engine="native") - simulate(angles, spec, engine="torch")).abs().max()
print(float(diff))
"""


@pytest.mark.parametrize("engine", ["native"])
def test_compiler_without_openmp_builds_a_one_thread_library(tmp_path, engine, native_engine):
    """A compiler that rejects -fopenmp (e.g. Apple clang) still gets the compiled engine, on one thread."""
    real = os.environ.get("CXX", "c++")
    wrapper = tmp_path / "cxx-no-openmp"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && {{ echo "unsupported: $a" >&2; exit 1; }}; done\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "CXX": str(wrapper), "HQCTF_NATIVE_DIR": str(tmp_path / "native")}
    done = subprocess.run([sys.executable, "-c", _NO_OPENMP_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1e-12
    assert len(list((tmp_path / "native").glob("*.so"))) == 1


_FORK = """
import os, torch
from hqctf.quantum import native
torch.set_num_threads(2)
native.MIN_PARALLEL_WORK = 0  # split even this small batch over OpenMP threads
theta = torch.full((64, 2, 10), 0.3)
parent = float(native.forward(theta, "cnot_ring", None)[1].numpy().sum())
pid = os.fork()
if pid == 0:  # numpy sums: torch's own OpenMP pool is not fork-safe, which is not what this tests
    child = float(native.forward(theta, "cnot_ring", None)[1].numpy().sum())
    os._exit(0 if abs(child - parent) < 1e-3 else 3)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), parent)
"""


@pytest.mark.parametrize("engine", ["native"])
def test_forked_children_compute_on_one_thread(engine, native_engine):
    """A child forked after the parent ran OpenMP threads computes on one thread instead of hanging."""
    done = subprocess.run([sys.executable, "-c", _FORK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    code, total = done.stdout.split()
    assert code == "0" and abs(float(total) - 64) < 1e-3


_ONE_OPENMP = """
import torch
from hqctf.quantum import native
native.library()
libs = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
print(len(libs), *sorted(libs))
"""


@pytest.mark.parametrize("engine", ["native"])
def test_kernels_share_torchs_openmp_runtime(engine, native_engine):
    """Where torch ships GNU OpenMP, the kernels load no second copy: they run on torch's own threads."""
    if not sys.platform.startswith("linux") or not any("libgomp" in line for line in open("/proc/self/maps")):
        pytest.skip("torch does not use GNU OpenMP here")
    done = subprocess.run([sys.executable, "-c", _ONE_OPENMP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "1", done.stdout
