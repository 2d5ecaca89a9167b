#!/usr/bin/env python
"""Forward + backward wall time and peak memory of batched RY + CNOT-ring circuit simulation.

Compares ``hqctf.quantum.simulate`` (adjoint and autograd backward) with the anchors PennyLane
``default.qubit`` (torch interface, parameter broadcasting, ``diff_method="backprop"``), TorchQuantum
(batched ``QuantumDevice``), qulacs (``ParametricQuantumCircuit.backprop_inner_product``, one circuit
object per circuit) and PennyLane ``lightning.qubit`` (adjoint differentiation of the loss as the
expectation of a diagonal ``SparseHamiltonian``, one tape per circuit), plus Qiskit Aer's statevector
simulator forward only (probabilities, no gradient: shown for reference), next to a memory-bandwidth
floor measured on the same machine, and writes the section ``## Simulator (benchmarks/simulator.py)``
of ``docs/benchmarks.md``. Anchors that are not installed (qulacs, lightning, aer: checked with
``importlib.util.find_spec``; TorchQuantum: its interpreter) are skipped with a note.

Every (tool, case) measurement runs in a fresh subprocess (this same file with ``--worker``), so
peak memory is that process's own peak RSS above its RSS right before the measured calls, and no
tool's allocator state or imports leak into another's numbers. TorchQuantum workers can run under
another interpreter (``--torchquantum-python``), e.g. a separate venv. Every worker runs with
``OMP_NUM_THREADS`` (and ``QULACS_NUM_THREADS``) = ``--threads``.

Usage:
    python benchmarks/simulator.py                      # full grid, writes docs/benchmarks.md
    python benchmarks/simulator.py --torchquantum-python /tmp/tqvenv/bin/python
    python benchmarks/simulator.py --quick --out /tmp/bench.md   # smoke run (seconds)
    python benchmarks/simulator.py --quick --no-write --tools hqctf-native qulacs lightning aer

This file must stay importable by an interpreter that has torch but neither hqctf nor PennyLane
(the TorchQuantum venv): those are imported inside the worker functions that need them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

SECTION = "## Simulator (benchmarks/simulator.py)"
REPO = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH-RESULT "
TOOLS = ("hqctf-native", "hqctf-adjoint", "hqctf-autograd", "pennylane", "torchquantum", "qulacs", "lightning", "aer")
MAIN = "hqctf-native"  # the default engine on the CPU: speedups and the floor ratio use it
HQCTF_MODES = {  # tool -> simulate(backward=..., engine=...)
    "hqctf-native": ("adjoint", "native"),
    "hqctf-adjoint": ("adjoint", "torch"),
    "hqctf-autograd": ("autograd", "torch"),
}
SUBSET_TOOLS = ("pennylane", "torchquantum", "qulacs", "lightning")  # may be measured on fewer circuits and scaled
ANCHORS = ("pennylane", "torchquantum", "qulacs", "lightning")  # forward + backward anchors of the speed target
SHORT = {"hqctf-native": "native", "hqctf-adjoint": "adj", "hqctf-autograd": "autograd", "pennylane": "PL",
         "torchquantum": "TQ", "qulacs": "qulacs", "lightning": "lightning", "aer": "Aer (fwd only)"}
LABELS = {"hqctf-native": "hqctf native", "hqctf-adjoint": "hqctf torch adjoint", "hqctf-autograd": "hqctf torch autograd",
          "pennylane": "PennyLane", "torchquantum": "TorchQuantum", "qulacs": "qulacs",
          "lightning": "lightning.qubit (adjoint)", "aer": "Aer (forward only)"}
OPTIONAL_MODULES = {"qulacs": ("qulacs",), "lightning": ("pennylane", "pennylane_lightning"),
                    "aer": ("qiskit", "qiskit_aer")}  # skipped with a note where these do not import
FULL_GRID = [(n, L, C) for n in (8, 10, 12, 14) for L in (4, 10) for C in (32, 256)]
QUICK_GRID = [(8, 4, 32)]
CHECK_CASE = (5, 3, 4)  # n, L, C of the cross-tool correctness check
PROBE_CIRCUITS = 4
TARGETS = {"pennylane": 20.0, "torchquantum": 3.0, "floor": 5.0, "anchors": 3.0}


# --------------------------------------------------------------------------- process memory


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kb() -> int:
    rss = _status_kb("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS watermark (VmHWM, ru_maxrss) of this process; False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------- workers


def _case_inputs(n: int, layers: int, circuits: int, k: int, seed: int):
    """Angles (k, L, n) and loss weights (k, 2^n): the first k rows of the case's C circuits."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    angles = torch.rand(circuits, layers, n, generator=gen, dtype=torch.float32) * (2 * math.pi)
    weights = torch.rand(circuits, 1 << n, generator=gen, dtype=torch.float32)
    return angles[:k].contiguous(), weights[:k].contiguous()


def _import_torchquantum():
    """Import torchquantum; if the installed torchvision cannot load, stub it (TorchQuantum uses it only
    in its dataset loaders, never in the simulator)."""
    try:
        import torchvision  # noqa: F401

        shimmed = False
    except Exception:  # e.g. a CUDA torchvision wheel next to the CPU torch: "torchvision::nms does not exist"
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

        class _Stub(types.ModuleType):
            def __getattr__(self, attr):
                if attr.startswith("__"):
                    raise AttributeError(attr)
                return _Stub(f"{self.__name__}.{attr}")

        for name in ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.datasets.utils"):
            sys.modules[name] = _Stub(name)
        sys.modules["torchvision.datasets"].VisionDataset = type("VisionDataset", (), {})
        shimmed = True
    import torchquantum as tq
    import torchquantum.functional as tqf

    return tq, tqf, shimmed


def _ring(n: int, layers: int):
    """The benchmark circuit in hqctf's qubit numbering, gate by gate: ("ry", layer, q) and ("cnot", control, target)."""
    for layer in range(layers):
        for q in range(n):
            yield "ry", layer, q
        for q in range(n - 1):
            yield "cnot", q, q + 1
        if n > 2:
            yield "cnot", n - 1, 0


def _build_step(tool: str, n: int, layers: int, angles, weights, need_probs: bool = False):
    """A closure running forward + loss + backward once; returns (probs, grad of the (k, L, n) angles).

    Forward-only tools (aer) return grad None. lightning computes the loss as an expectation value,
    so it returns probs None unless ``need_probs`` (the check), which adds a separate forward for them."""
    k = angles.shape[0]
    info: dict = {}
    if tool in OPTIONAL_MODULES:
        return _build_optional_step(tool, n, layers, angles, weights, need_probs)
    if tool.startswith("hqctf"):
        from hqctf.quantum import CircuitSpec, simulate

        spec = CircuitSpec(n, layers, rotations=("ry",), entangler="cnot", ring=True)
        backward, engine = HQCTF_MODES[tool]
        leaf = angles[:, :, None, :].clone().requires_grad_()

        def step():
            leaf.grad = None
            probs = simulate(leaf, spec, backward=backward, engine=engine)
            (probs * weights).sum().backward()
            return probs, leaf.grad[:, :, 0]

        try:
            from importlib.metadata import version

            info["version"] = version("hqctf")
        except Exception:
            info["version"] = "?"
        import inspect

        info["max_block"] = inspect.signature(simulate).parameters["max_block"].default
        return step, info
    if tool == "pennylane":
        import pennylane as qml

        dev = qml.device("default.qubit", wires=n)

        @qml.qnode(dev, interface="torch", diff_method="backprop")
        def circuit(theta):
            for layer in range(layers):
                for q in range(n):
                    qml.RY(theta[:, layer, q], wires=q)  # broadcast over the leading circuit dimension
                for q in range(n - 1):
                    qml.CNOT(wires=[q, q + 1])
                if n > 2:
                    qml.CNOT(wires=[n - 1, 0])
            return qml.probs(wires=range(n))

        leaf = angles.clone().requires_grad_()

        def step():
            leaf.grad = None
            probs = circuit(leaf)
            (probs * weights).sum().backward()
            return probs, leaf.grad

        info["version"] = qml.__version__
        return step, info
    if tool == "torchquantum":
        tq, tqf, shimmed = _import_torchquantum()
        qdev = tq.QuantumDevice(n_wires=n, bsz=k, device="cpu")
        leaf = angles.clone().requires_grad_()

        def step():
            leaf.grad = None
            qdev.reset_states(k)
            for layer in range(layers):
                for q in range(n):
                    tqf.ry(qdev, wires=q, params=leaf[:, layer, q])
                for q in range(n - 1):
                    tqf.cnot(qdev, wires=[q, q + 1])
                if n > 2:
                    tqf.cnot(qdev, wires=[n - 1, 0])
            probs = qdev.get_states_1d().abs() ** 2
            (probs * weights).sum().backward()
            return probs, leaf.grad

        info["version"] = tq.__version__
        info["torchvision_shim"] = shimmed
        return step, info
    raise ValueError(f"unknown tool {tool!r}")


def _build_optional_step(tool: str, n: int, layers: int, angles, weights, need_probs: bool):
    """_build_step for qulacs, lightning.qubit and Aer. qulacs and Qiskit number qubits from the least significant
    bit, so hqctf's qubit q (the most significant bit) is their qubit n-1-q and the probabilities come out in
    hqctf's order. Angles and weights are converted to float64 numpy inside the step, as a training step would."""
    from importlib.metadata import version

    import numpy as np
    import torch

    k, count = angles.shape[0], layers * n
    if tool == "qulacs":
        import qulacs

        # qulacs has no batch dimension: one circuit object, its parameters set per circuit, and one state.
        # Its RY(t) is exp(+i t Y / 2), hqctf's RY(-t): angles go in negated and their gradients come out negated.
        circ = qulacs.ParametricQuantumCircuit(n)
        for kind, a, b in _ring(n, layers):
            if kind == "ry":
                circ.add_parametric_RY_gate(n - 1 - b, 0.0)
            else:
                circ.add_CNOT_gate(n - 1 - a, n - 1 - b)
        state, bra = qulacs.QuantumState(n), qulacs.QuantumState(n)

        def step():
            theta = angles.detach().double().neg().reshape(k, count).numpy()
            w2 = 2 * weights.detach().double().numpy()
            probs, grad = np.empty((k, 1 << n)), np.empty((k, count))
            for i in range(k):
                for j in range(count):
                    circ.set_parameter(j, theta[i, j])
                state.set_zero_state()
                circ.update_quantum_state(state)
                psi = state.get_vector()
                probs[i] = psi.real ** 2 + psi.imag ** 2
                # d/dt sum_x w_x |psi_x|^2 = Re<2 w psi | d psi/dt>: backprop_inner_product(bra) gives Re<bra|d psi/dt>
                # (it runs the circuit forward again itself, then backward)
                bra.load(w2[i] * psi)
                grad[i] = circ.backprop_inner_product(bra)
            return torch.from_numpy(probs), torch.from_numpy(-grad).reshape(k, layers, n)

        return step, {"version": version("qulacs")}
    if tool == "lightning":
        import pennylane as qml
        import scipy.sparse

        dev = qml.device("lightning.qubit", wires=n)
        config = dev.setup_execution_config(qml.devices.ExecutionConfig(gradient_method="adjoint"))
        cnots = {(a, b): qml.CNOT(wires=[a, b]) for kind, a, b in _ring(n, 1) if kind == "cnot"}

        def tapes(theta, measure):
            for i in range(k):
                ops = [qml.RY(theta[i, a, b], wires=b) if kind == "ry" else cnots[a, b]
                       for kind, a, b in _ring(n, layers)]
                yield qml.tape.QuantumScript(ops, [measure(i)], trainable_params=list(range(count)))

        def step():
            theta = angles.detach().double().numpy()
            w = weights.detach().double().numpy()
            # sum_x w_x |psi_x|^2 = <psi| diag(w) |psi>: the weights stand for the upstream gradient, so the
            # observable is rebuilt every call, as in a training step
            loss = [qml.expval(qml.SparseHamiltonian(scipy.sparse.diags(w[i]).tocsr(), wires=range(n)))
                    for i in range(k)]
            _, jac = dev.execute_and_compute_derivatives(tuple(tapes(theta, loss.__getitem__)), config)
            grad = torch.from_numpy(np.asarray(jac, dtype=np.float64)).reshape(k, layers, n)
            probs = None
            if need_probs:
                probs = dev.execute(tuple(tapes(theta, lambda i: qml.probs(wires=range(n)))))
                probs = torch.from_numpy(np.asarray(probs))
            return probs, grad

        return step, {"version": version("pennylane_lightning"), "pennylane": qml.__version__}
    if tool == "aer":
        import qiskit
        import qiskit_aer
        from qiskit.circuit import ParameterVector

        params = ParameterVector("theta", count)
        circuit = qiskit.QuantumCircuit(n)
        for kind, a, b in _ring(n, layers):
            if kind == "ry":
                circuit.ry(params[a * n + b], n - 1 - b)
            else:
                circuit.cx(n - 1 - a, n - 1 - b)
        circuit.save_probabilities()
        threads = torch.get_num_threads()
        sim = qiskit_aer.AerSimulator(method="statevector", max_parallel_threads=threads,
                                      max_parallel_experiments=threads)

        def step():  # one job: one parametrised circuit with k parameter binds
            theta = angles.detach().double().reshape(k, count).numpy()
            binds = [{p: theta[:, j].tolist() for j, p in enumerate(params)}]
            result = sim.run(circuit, parameter_binds=binds).result()
            return torch.from_numpy(np.stack([result.data(i)["probabilities"] for i in range(k)])), None

        return step, {"version": version("qiskit-aer"), "qiskit": qiskit.__version__}
    raise ValueError(f"unknown tool {tool!r}")


def check_run(tool: str, seed: int) -> dict:
    """One call of `tool` on CHECK_CASE: its probabilities and angle gradients (None: forward only), and its info."""
    n, layers, circuits = CHECK_CASE
    angles, weights = _case_inputs(n, layers, circuits, circuits, seed)
    step, info = _build_step(tool, n, layers, angles, weights, need_probs=True)
    probs, grad = step()
    return dict(info, probs=probs.detach().double().tolist(),
                grad=None if grad is None else grad.detach().double().tolist())


def check_reference(seed: int) -> dict:
    """What check_run results are compared with: hqctf's torch adjoint path on CHECK_CASE (also fixes the qubit order)."""
    from hqctf.quantum import CircuitSpec, simulate

    n, layers, circuits = CHECK_CASE
    angles, weights = _case_inputs(n, layers, circuits, circuits, seed)
    leaf = angles[:, :, None, :].clone().requires_grad_()
    probs = simulate(leaf, CircuitSpec(n, layers), engine="torch")
    (probs * weights).sum().backward()
    return {"probs": probs.detach().double().tolist(), "grad": leaf.grad[:, :, 0].double().tolist()}


def check_diffs(res: dict, ref: dict) -> dict:
    """Max abs differences of a check_run result from check_reference (grad None for forward-only tools), and its
    versions."""
    return {"probs": _max_diff(res["probs"], ref["probs"]),
            "grad": None if res["grad"] is None else _max_diff(res["grad"], ref["grad"]),
            **{key: res[key] for key in ("version", "torch", "torchvision_shim", "pennylane", "qiskit") if key in res}}


def _worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n, layers, circuits = args.n, args.layers, args.circuits
    out = {"tool": args.worker, "mode": args.mode, "torch": torch.__version__, "python": sys.executable,
           "threads": torch.get_num_threads()}
    if args.worker == "bandwidth":
        cpu0 = _cpu_accounting()
        out.update(_bandwidth(args.bandwidth_mb, args.threads))
        out["others_cpu"] = _others_cpu(cpu0, _cpu_accounting())
        return out
    if args.mode == "check":
        out.update(check_run(args.worker, args.seed))
        return out
    k = args.k or circuits
    angles, weights = _case_inputs(n, layers, circuits, k, args.seed)
    step, info = _build_step(args.worker, n, layers, angles, weights)
    out.update(info)
    out["k"] = k
    calls = 2 if args.mode == "probe" else 1 + args.repeats  # the first call is the warm-up
    rss0 = _rss_kb()
    out["peak_reset"] = _reset_peak()
    times = []
    cpu0 = _cpu_accounting()
    for i in range(calls):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if i == 0:
            out["peak_mb"] = max(0, _peak_kb() - rss0) / 1024  # one call (the warm-up) in a fresh process
    out["others_cpu"] = _others_cpu(cpu0, _cpu_accounting())
    out["peak_all_mb"] = max(0, _peak_kb() - rss0) / 1024  # over all calls: adds allocator fragmentation
    out["rss_before_mb"] = rss0 / 1024
    out["warmup_s"] = times[0]
    out["times"] = times[1:]
    out["median_s"] = statistics.median(times[1:])
    return out


def _bandwidth(megabytes: int, threads: int) -> dict:
    """STREAM-like copy (read+write) and add (2 reads + write) bandwidth with torch, best of 10."""
    import torch

    torch.set_num_threads(threads)
    numel = megabytes * (1 << 20) // 4
    a = torch.rand(numel)
    b = torch.rand(numel)
    c = torch.empty(numel)
    res = {}
    for name, fn, nbytes in (
        ("copy", lambda: c.copy_(a), 2 * 4 * numel),
        ("add", lambda: torch.add(a, b, out=c), 3 * 4 * numel),
    ):
        fn()
        best = min(_timed(fn) for _ in range(10))
        res[f"{name}_gbs"] = nbytes / best / 1e9
    res["array_mb"] = megabytes
    return res


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- orchestration


def _cpu_accounting():
    """(wall time, busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return None
    own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return time.perf_counter(), busy, own


def wait_idle(max_wait: float, log, window: float = 1.0, needed: int = 2, threshold: float = 0.05) -> bool:
    """Wait (up to max_wait s) until other processes used < threshold of the CPUs for `needed` windows in a row."""
    deadline, quiet = time.perf_counter() + max_wait, 0
    while time.perf_counter() < deadline:
        start = _cpu_accounting()
        time.sleep(window)
        busy = _others_cpu(start, _cpu_accounting())
        quiet = quiet + 1 if busy is not None and busy < threshold else 0
        if quiet >= needed:
            return True
    log(f"machine not idle after {max_wait:.0f} s; measuring anyway")
    return False


def _others_cpu(start, end) -> float | None:
    """Fraction of all CPUs used by processes outside this run between two _cpu_accounting() samples."""
    if start is None or end is None:
        return None
    wall = end[0] - start[0]
    other = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, other / (wall * (os.cpu_count() or 1)))


class Runner:
    """Runs workers in fresh subprocesses and parses their result line."""

    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.tq_python: str | None = None
        self.waited = 0.0
        self.tq_note = ""

    def run(self, tool: str, python: str | None = None, timeout: float = 900, **kw) -> dict:
        a = self.args
        cmd = [python or sys.executable, "-W", "ignore", str(Path(__file__).resolve()), "--worker", tool,
               "--threads", str(a.threads), "--seed", str(a.seed), "--repeats", str(a.repeats),
               "--bandwidth-mb", str(a.bandwidth_mb)]
        for key, val in kw.items():
            cmd += [f"--{key.replace('_', '-')}", str(val)]
        env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3",
                   OMP_NUM_THREADS=str(a.threads), QULACS_NUM_THREADS=str(a.threads))  # OpenMP tools: torch's threads
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_TAG):
                res = json.loads(line[len(RESULT_TAG):])
                res["process_s"] = time.perf_counter() - t0
                return res
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}

    def measure(self, tool: str, label: str, retries: int | None = None, **kw) -> dict:
        """run() a timed worker; wait for an idle machine first (--wait-idle) and repeat a measurement that
        other processes disturbed (used > --max-disturbance of the CPUs during its timed calls), --retries times."""
        a = self.args
        res: dict = {}
        retries = a.retries if retries is None else retries
        for attempt in range(retries + 1):
            budget = min(a.wait_idle, a.max_wait_total - self.waited)
            if budget > 0:
                t0 = time.perf_counter()
                wait_idle(budget, self.log)
                self.waited += time.perf_counter() - t0
            res = self.run(tool, **kw)
            res["attempts"] = attempt + 1
            others = res.get("others_cpu")
            if "error" in res or others is None or others <= a.max_disturbance:
                break
            self.log(f"{label} {tool}: other processes used {100 * others:.0f}% of the CPUs during the "
                     f"measurement" + ("; measuring again" if attempt < retries else "; keeping it (flagged)"))
        return res

    def detect_torchquantum(self) -> None:
        python = self.args.torchquantum_python or sys.executable
        res = self.run("torchquantum", python=python, timeout=300, mode="check")
        if "error" in res:
            where = "--torchquantum-python " + python if self.args.torchquantum_python else "this interpreter"
            self.tq_note = f"TorchQuantum not measured: it does not import or run under {where} ({res['error']})."
            self.log(self.tq_note)
            return
        self.tq_python = python
        self.tq_check = res


def _unavailable(tool: str) -> str | None:
    """A note if an optional tool's modules are not installed in this interpreter (its workers' interpreter)."""
    from importlib.util import find_spec

    missing = [m for m in OPTIONAL_MODULES.get(tool, ()) if find_spec(m) is None]
    if not missing:
        return None
    return (f"{LABELS[tool]} not measured: {', '.join(missing)} not installed in {sys.executable} "
            "(`pip install -e \".[bench]\"` installs every anchor but TorchQuantum).")


def _max_diff(a, b) -> float:
    import torch

    return float((torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)).abs().max())


def _choose_k(probe: dict, circuits: int, calls: int, max_s: float, max_mb: float) -> int:
    """Largest power-of-two circuit count (or all C) whose linearly extrapolated cost fits the caps."""
    k0 = probe["k"]
    per_circuit_s = probe["median_s"] / k0
    per_circuit_mb = probe["peak_mb"] / k0

    def fits(k):
        return calls * per_circuit_s * k <= max_s and per_circuit_mb * k <= max_mb

    if fits(circuits):
        return circuits
    k = 1 << int(math.log2(circuits))
    while k > 1 and not fits(k):
        k //= 2
    return min(k, circuits)


def _scale(probe: dict, main: dict, circuits: int) -> float:
    """Time for all C circuits from the main run on k circuits: t(C) = a + b C through the probe (k0)
    and the main run (k) (a = per-call overhead, clamped >= 0); proportional t(k) C / k if that fails."""
    k0, t0, k, t = probe["k"], probe["median_s"], main["k"], main["median_s"]
    if k > k0:
        b = (t - t0) / (k - k0)
        a = t - b * k
        if b > 0 and a >= 0:
            return a + b * circuits
    return t * circuits / k


def floor_bytes(n: int, layers: int, circuits: int) -> int:
    """Minimum DRAM traffic of an RY+CNOT fwd+bwd with real float32 amplitudes (see the doc text)."""
    state = circuits * (1 << n) * 4
    return (6 * layers + 4) * state


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 0.001:
        return f"{x:.1e}"
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_x(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _load_previous(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    return json.loads(path.read_text())


def measure_all(args, log, command: str) -> dict:
    runner = Runner(args, log)
    started = time.perf_counter()
    prev = _load_previous(args.reuse)
    limit = args.max_disturbance
    reusable = {}
    for row in prev.get("rows", []):
        for tool, res in row["tools"].items():
            if "error" not in res and (res.get("others_cpu") or 0) <= limit and tool not in args.remeasure:
                reusable[(row["n"], row["L"], row["C"], tool)] = res
    if prev:
        log(f"reusing {len(reusable)} undisturbed measurements from {args.reuse}")
    grid = QUICK_GRID if args.quick else FULL_GRID
    if args.n:
        grid = [c for c in grid if c[0] in args.n]
    if args.layers:
        grid = [c for c in grid if c[1] in args.layers]
    if args.circuits:
        grid = [c for c in grid if c[2] in args.circuits]
    tools = [t for t in TOOLS if t in args.tools]

    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        log(f"warning: load average {load_start[0]:.2f} at start: other processes compete for the CPUs")
    cpu_start = _cpu_accounting()
    log(f"bandwidth: {args.bandwidth_mb} MB arrays, {args.threads} threads")
    bw = prev.get("bandwidth")
    if not bw or (bw.get("others_cpu") or 0) > limit:
        bw = runner.measure("bandwidth", "bandwidth", timeout=600)
    if "error" in bw:
        raise SystemExit(f"bandwidth measurement failed: {bw['error']}")
    bandwidth = max(bw["copy_gbs"], bw["add_gbs"]) * 1e9
    log(f"  copy {bw['copy_gbs']:.1f} GB/s, add {bw['add_gbs']:.1f} GB/s")

    # correctness: every tool's probabilities and angle gradients against hqctf's torch adjoint path, in this process
    ref = check_reference(args.seed)
    checks = {}
    notes = []
    if "torchquantum" in tools:
        runner.detect_torchquantum()
        if runner.tq_python is None:
            tools.remove("torchquantum")
            notes.append(runner.tq_note)
    for tool in [t for t in tools if _unavailable(t)]:
        notes.append(_unavailable(tool))
        log(notes[-1])
        tools.remove(tool)
    for tool in tools:
        res = runner.tq_check if tool == "torchquantum" else runner.run(tool, timeout=300, mode="check")
        if "error" in res:
            checks[tool] = {"error": res["error"]}
        else:
            checks[tool] = check_diffs(res, ref)
        log(f"check {tool}: {checks[tool]}")

    calls = args.repeats + 1
    rows = []
    for n, layers, circuits in grid:
        row = {"n": n, "L": layers, "C": circuits, "floor_s": floor_bytes(n, layers, circuits) / bandwidth, "tools": {}}
        for tool in tools:
            if "error" in checks.get(tool, {}):
                row["tools"][tool] = {"error": "failed the correctness check"}
                continue
            python = runner.tq_python if tool == "torchquantum" else None
            case = dict(n=n, layers=layers, circuits=circuits)
            label = f"n={n} L={layers} C={circuits}"
            if (n, layers, circuits, tool) in reusable:
                row["tools"][tool] = dict(reusable[(n, layers, circuits, tool)], reused=True)
                continue
            probe = None
            k = circuits
            if tool in SUBSET_TOOLS and not args.quick:  # the --quick case is tiny: no probe
                probe = runner.measure(tool, label, retries=0, python=python, mode="probe",
                                       k=min(PROBE_CIRCUITS, circuits), **case)
                if "error" in probe:
                    row["tools"][tool] = probe
                    log(f"n={n} L={layers} C={circuits} {tool}: probe failed: {probe['error']}")
                    continue
                k = _choose_k(probe, circuits, calls, args.max_case_seconds, args.max_case_mb)
            res = runner.measure(tool, label, python=python, mode="time", k=k,
                                 timeout=max(900, 10 * args.max_case_seconds), **case)
            if "error" not in res:
                res["seconds"] = res["median_s"] if k == circuits else _scale(probe, res, circuits)
                res["scaled_from"] = None if k == circuits else k
            row["tools"][tool] = res
            msg = res.get("error") or (f"{res['seconds']:.4f} s, peak {res['peak_mb']:.0f} MB"
                                       + (f" (scaled from {k} circuits)" if k != circuits else ""))
            log(f"n={n} L={layers} C={circuits} {tool}: {msg}  [{time.perf_counter() - started:.0f} s elapsed]")
        rows.append(row)
        if args.json:
            _save_json(args.json, rows, bw, checks, prev, command, started)

    runs = prev.get("runs", []) + [{"command": command, "minutes": (time.perf_counter() - started) / 60}]
    if args.json:
        _save_json(args.json, rows, bw, checks, prev, command, started)
    return {"bandwidth": bw, "bandwidth_bps": bandwidth, "checks": checks, "rows": rows, "tools": tools, "runs": runs,
            "notes": notes, "tq_python": runner.tq_python, "elapsed_s": time.perf_counter() - started,
            "load_start": load_start[0], "waited_s": runner.waited, "others_cpu": _others_cpu(cpu_start, _cpu_accounting()),
            "args": args}


def _save_json(path: Path, rows, bw, checks, prev, command, started) -> None:
    runs = prev.get("runs", []) + [{"command": command, "minutes": (time.perf_counter() - started) / 60}]
    path.write_text(json.dumps({"rows": rows, "bandwidth": bw, "checks": checks, "runs": runs}, indent=1))


# --------------------------------------------------------------------------- report


def _machine() -> dict:
    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    try:
        from importlib.metadata import version

        pl = version("pennylane")  # metadata only: importing PennyLane here would cost seconds
    except Exception:
        pl = "not installed"
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": ram, "torch": torch.__version__, "pennylane": pl,
            "python": platform.python_version()}


def _disturbed(res: dict | None, limit: float) -> bool:
    return bool(res) and "error" not in res and (res.get("others_cpu") or 0) > limit


def _cell_time(res: dict | None, limit: float = 1.0) -> str:
    if res is None:
        return "–"
    if "error" in res:
        return "failed"
    s = _fmt_s(res["seconds"])
    s += f" (scaled from {res['scaled_from']} circuits)" if res.get("scaled_from") else ""
    return s + (f" ⚠{100 * res['others_cpu']:.0f}%" if _disturbed(res, limit) else "")


def _cell_mem(res: dict | None) -> str:
    if res is None or "error" in res:
        return "–"
    s = f"{res['peak_mb']:.0f}"
    return s + (f" ({res['scaled_from']} circ.)" if res.get("scaled_from") else "")


def _secs(row, tool):
    res = row["tools"].get(tool)
    return None if res is None or "error" in res else res["seconds"]


def render(result: dict, command: str) -> str:
    m = _machine()
    rows, checks, args = result["rows"], result["checks"], result["args"]
    bw = result["bandwidth"]
    tq_check = checks.get("torchquantum", {})
    tq_version = tq_check.get("version") if "error" not in tq_check and tq_check else None
    lines = [SECTION, ""]
    lines += [
        "Forward + backward of batched RY + CNOT-ring circuits (|0..0>, L x [RY on every qubit, CNOT 0->1, ..., "
        "n-2->n-1, n-1->0]), loss = sum(probs * fixed random weights), float32 angles, "
        f"median of {args.repeats} calls after one warm-up call (Aer: forward only, probabilities without gradient, "
        "for reference). Produced by"
        + (" (later runs re-measure, with `--reuse`, only what an earlier run's other processes disturbed):"
           if len(result["runs"]) > 1 else ":"),
        "",
        "```bash",
        *[r["command"] + (f"   # {r['minutes']:.0f} min" if len(result["runs"]) > 1 else "") for r in result["runs"]],
        "```",
        "",
        f"- Date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} (last run {result['elapsed_s'] / 60:.1f} min, "
        f"{result['waited_s'] / 60:.1f} min of it waiting for an idle machine)",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['ram']} RAM; {args.threads} torch threads. "
        f"1-min load average before the run {result['load_start']:.2f}; CPU time used by other processes during "
        "the run: " + (f"{100 * result['others_cpu']:.0f}% of all CPUs" if result["others_cpu"] is not None else "?")
        + " (from /proc/stat minus this run's own CPU time; anything above a few % inflates the times).",
        f"- Python {m['python']}, torch {m['torch']}, PennyLane {m['pennylane']}, TorchQuantum "
        + (f"{tq_version} (torch {tq_check.get('torch')}, interpreter `{result['tq_python']}`)" if tq_version
           else "not measured")
        + "".join(f", {name} " + (checks[tool]["version"] if checks.get(tool, {}).get("version") else "not measured")
                  for tool, name in (("qulacs", "qulacs"), ("lightning", "PennyLane-Lightning"), ("aer", "qiskit-aer"))),
        f"- Bandwidth (torch, {bw['array_mb']} MB float32 arrays, {args.threads} threads, best of 10): "
        f"copy {bw['copy_gbs']:.1f} GB/s (read + write), add {bw['add_gbs']:.1f} GB/s (2 reads + write); "
        f"the floor uses the larger, {result['bandwidth_bps'] / 1e9:.1f} GB/s.",
        "",
    ]
    for note in result["notes"]:
        lines += [f"**{note}**", ""]
    lines += ["### Method", ""]
    mb = None
    for row in rows:
        mb = mb or row["tools"].get("hqctf-adjoint", {}).get("max_block")
    lines += [
        "- hqctf: `simulate(angles, CircuitSpec(n, L), backward=..., engine=...)`. *native* (the default on the "
        "CPU) is the compiled engine (`hqctf/quantum/kernels.cpp`, built on first use, one circuit's state kept in "
        "cache through all its layers, circuits split over the torch threads) with the adjoint backward; *adjoint* "
        f"and *autograd* are the torch engine (Kronecker blocks of up to `max_block` = {mb} qubits as batched "
        "matmuls): *adjoint* recomputes the state backwards next to the adjoint vector (no stored intermediates), "
        "*autograd* lets torch store every intermediate state.",
        "- PennyLane: `default.qubit`, `interface=\"torch\"`, `diff_method=\"backprop\"`, one QNode call per case "
        "with parameter broadcasting (angles (C, L, n), each `qml.RY(theta[:, l, q])` broadcast over the C "
        "circuits), `qml.probs` of all wires. PennyLane keeps its state in complex128 whatever the angle dtype "
        "(its probabilities come back float64); that is part of what is measured.",
        "- TorchQuantum: one `tq.QuantumDevice(n_wires=n, bsz=C)` (complex64 state), `reset_states(C)` then "
        "`tq.functional.ry(qdev, wires=q, params=theta[:, l, q])` / `tq.functional.cnot` gate by gate, "
        "probabilities `qdev.get_states_1d().abs() ** 2`; run in its own interpreter (see below).",
        "- qulacs: no batch dimension, so the C circuits run one after another in a Python loop through one "
        "`ParametricQuantumCircuit` (its L n parameters set per circuit with `set_parameter`) and one `QuantumState` "
        "(complex128): `update_quantum_state`, probabilities from `get_vector()`, then the gradient by "
        "`backprop_inner_product(bra)` with bra = 2 w * psi (d/dtheta sum_x w_x |psi_x|^2 = Re<2 w psi | dpsi/dtheta>; "
        "no observable needed; qulacs runs the circuit forward again inside it, then backward). qulacs' RY(t) is "
        "exp(+i t Y/2), so angles go in negated and gradients come out negated. Threads: `QULACS_NUM_THREADS` = "
        "`OMP_NUM_THREADS` = --threads (qulacs parallelises inside one state, above its qubit threshold).",
        "- lightning.qubit: adjoint differentiation (`gradient_method=\"adjoint\"`, complex128) of the loss written as "
        "`qml.expval(qml.SparseHamiltonian(diag(w_c)))` per circuit (its adjoint method accepts expectation values "
        "only, no probabilities; a dense `qml.Hermitian` of 2^n x 2^n would not fit at n = 14). Parameter broadcasting "
        "does not help: each circuit has its own observable and lightning expands broadcast tapes into one tape "
        "per circuit anyway, so the C tapes (one per circuit) go to `dev.execute_and_compute_derivatives(tapes, "
        "config)` in one call. That is PennyLane's device API without the QNode / torch interface layer (same C++ "
        "adjoint; about 3x faster than `qml.execute(..., diff_method=\"adjoint\")` on torch tensors at n=10, L=4, "
        "C=32 when this benchmark was written, the rest being Python). The observable is rebuilt every call (the "
        "weights stand for the upstream gradient of a training step). The check's probabilities come from a "
        "separate `qml.probs` execution.",
        "- Aer (forward only): one parametrised Qiskit circuit (`ry`, `cx`, then `save_probabilities()`), one "
        "`AerSimulator(method=\"statevector\")` job per call with C parameter binds (complex128; "
        "`max_parallel_threads` = `max_parallel_experiments` = --threads). It computes probabilities only, no "
        "gradient: its times are a forward pass, shown next to hqctf's forward + backward for reference.",
        "- Correctness: before timing, each tool's probabilities and angle gradients on one small case "
        f"(n={CHECK_CASE[0]}, L={CHECK_CASE[1]}, C={CHECK_CASE[2]}, same angles and weights) are compared with "
        "hqctf's torch adjoint path, which also fixes the qubit ordering (qubit 0 = most significant bit in hqctf, "
        "PennyLane and TorchQuantum; qulacs and Qiskit count from the least significant bit, so their circuits put "
        "hqctf's qubit q on their qubit n-1-q). Max abs differences: "
        + "; ".join(f"{t}: " + (f"FAILED ({c['error']})" if "error" in c else f"probs {c['probs']:.1e}, " + (
            "grads n/a (forward only)" if c["grad"] is None else f"grads {c['grad']:.1e}")) for t, c in checks.items())
        + ".",
        "- Subsets: " + ", ".join(LABELS[t] for t in SUBSET_TOOLS) + " first run a probe on "
        f"{PROBE_CIRCUITS} circuits (own process). If {args.repeats + 1} calls on all C circuits are estimated "
        f"(linearly from the probe) to take over {args.max_case_seconds:.0f} s or to peak over "
        f"{args.max_case_mb:.0f} MB, the case is timed on the largest power of two k of circuits that fits and "
        "marked \"scaled from k circuits\": the time for C comes from the line t(C) = a + b C through the probe "
        "and the k-circuit median (a = per-call overhead, clamped at 0, else t(k) C / k). Their peak memory is "
        "then the one measured on k circuits, marked \"(k circ.)\". On this machine PennyLane's time per circuit "
        "grows with k at n >= 12 (GBs of temporaries: more page faults, less cache), so its scaled times are more "
        "likely under- than over-estimates.",
        "- Peak memory: each (tool, case) runs in a fresh Python process. Right before its first call (the "
        "warm-up) the process resets the kernel's peak-RSS watermark (`/proc/self/clear_refs` = 5) and records "
        "VmRSS; after that one call it reads VmHWM (= `ru_maxrss`) and reports VmHWM minus that RSS: every byte one "
        "fwd+bwd touched that was not already resident (states, autograd saved tensors, gradients, outputs, "
        "allocator and library workspaces, first-call caches), in MB (2^20 bytes); tensors built before (angles, "
        "weights, imports) are excluded. Only the first call counts because the peak over all "
        f"{args.repeats + 1} calls also grows with heap fragmentation (PennyLane at n=14, L=10, 32 circuits: "
        "~2.3 GB after 1-3 calls, ~4.4 GB after 6); that larger figure is kept as `peak_all_mb` in `--json`.",
        "- Memory-bandwidth floor: the least DRAM traffic of a real float32 statevector simulation, with S = "
        "C * 2^n * 4 bytes (one state batch): forward reads and writes the state once per layer (2 L S), "
        "probabilities read the state and write probs (2 S); the adjoint backward carries two vectors (state "
        "recomputed backwards and adjoint), each read and written once per layer (4 L S), seeded by reading "
        "grad_probs and the state and writing the adjoint (2 S, rounded). Floor = (6 L + 4) S / bandwidth. It "
        "ignores gate matrices, angles and caches (at n <= 10 and C = 32 the whole batch fits in L2, where the "
        "floor is meaningless). A complex64 simulator would move twice these bytes.",
        "",
        "### TorchQuantum interpreter",
        "",
        "TorchQuantum 0.1.8 (latest on PyPI) pins qiskit < 1 and imports qiskit_ibm_runtime, qiskit-aer and "
        "torchvision at import time, none of which its simulator uses. It ran from a separate venv with the CPU "
        "torch (`constraints-cpu.txt` = torch==2.13.0):",
        "",
        "```bash",
        "python -m venv /tmp/tqvenv",
        "/tmp/tqvenv/bin/pip install -c constraints-cpu.txt torch==2.13.0 torchquantum   # also qiskit 0.46.3, tensorflow, ...",
        "printf 'qiskit==0.46.3\\nqiskit-terra==0.46.3\\n' > /tmp/qiskit-pin.txt",
        "/tmp/tqvenv/bin/pip install -c constraints-cpu.txt -c /tmp/qiskit-pin.txt qiskit-ibm-runtime==0.20.0 "
        "qiskit-aer==0.14.2 'setuptools<81'",
        "```",
        "",
        "(qiskit-ibm-runtime 0.20 still supports qiskit 0.46 and imports `pkg_resources`, hence setuptools < 81.) "
        "The torchvision that pip pulls from PyPI is a CUDA build that cannot load next to the CPU torch "
        "(`operator torchvision::nms does not exist`) and no CPU build is on PyPI, so the TorchQuantum worker "
        "replaces torchvision by an empty stub module before `import torchquantum` when torchvision fails to "
        "import"
        + (" (it did here)" if tq_check.get("torchvision_shim") else "")
        + "; TorchQuantum only uses it in its dataset loaders.",
        "",
        "### Results",
        "",
        "Times in seconds; speedups and hqctf/floor use hqctf native (the default); \"vs fastest anchor\" is the "
        "fastest forward + backward anchor measured in that case (" + ", ".join(LABELS[a] for a in ANCHORS) + "), "
        "named in the cell; Aer is forward only (probabilities, no gradient), so its column and \"hqctf fwd+bwd vs "
        "Aer fwd only\" compare a forward pass with hqctf's forward + backward; peak MB: "
        + " / ".join(SHORT[x] for x in TOOLS) + ". Each measurement waited for an idle machine (`--wait-idle`) and was "
        f"repeated up to {args.retries} times when other processes used more than {100 * args.max_disturbance:.0f}% "
        "of the CPUs during its timed calls; ⚠x% marks one still disturbed (x% of the CPUs used by others, so "
        "inflated). " + _disturbance_summary(rows, args),
        "",
        "| n | L | C | " + " | ".join(f"{LABELS[x]} s" for x in TOOLS) + " | floor s | speedup vs PennyLane | "
        "speedup vs TorchQuantum | speedup vs fastest anchor | hqctf fwd+bwd vs Aer fwd only | hqctf/floor | "
        "peak MB " + " / ".join(SHORT[x] for x in TOOLS) + " |",
        "|---|---|---|" + "---|" * (len(TOOLS) + 7),
    ]
    lim = args.max_disturbance
    for row in rows:
        t = row["tools"]
        adj = _secs(row, MAIN)
        fastest, anchor = _fastest_anchor(row)
        cells = [str(row[key]) for key in ("n", "L", "C")] + [_cell_time(t.get(x), lim) for x in TOOLS] + [
            _fmt_s(row["floor_s"]), _fmt_x(_ratio(row, "pennylane")), _fmt_x(_ratio(row, "torchquantum")),
            _fmt_x(fastest) + (f" ({LABELS[anchor]})" if anchor else ""), _fmt_x(_ratio(row, "aer")),
            _fmt_x(adj / row["floor_s"] if adj else None), " / ".join(_cell_mem(t.get(x)) for x in TOOLS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Targets", ""]
    lines += _targets(rows)
    return "\n".join(lines) + "\n"


def _disturbance_summary(rows, args) -> str:
    vals = [res.get("others_cpu") or 0 for row in rows for res in row["tools"].values() if "error" not in res]
    bad = sum(v > args.max_disturbance for v in vals)
    mean = statistics.fmean(vals) if vals else 0
    return (f"{bad} of {len(vals)} measurements flagged; other processes used {100 * mean:.1f}% of the CPUs on "
            "average during the timed calls.")


ANCHOR_TARGET = (f"built-in engine >= {TARGETS['anchors']:.0f}x faster than the fastest of qulacs, lightning.qubit "
                 "(adjoint), PennyLane default.qubit and TorchQuantum on every grid case (forward + backward); Aer "
                 "forward-only shown for reference, compared with hqctf's forward+backward")


def _targets(rows) -> list[str]:
    out = []
    specs = [  # text, value(row), ok(value), applies(row), what a missed case adds after its ratio
        (f">= {TARGETS['pennylane']:.0f}x faster than PennyLane", lambda r: _ratio(r, "pennylane"),
         lambda x: x >= TARGETS["pennylane"], lambda r: True, lambda r: ""),
        (f">= {TARGETS['torchquantum']:.0f}x faster than TorchQuantum",
         lambda r: _ratio(r, "torchquantum"), lambda x: x >= TARGETS["torchquantum"], lambda r: True, lambda r: ""),
        (f"within {TARGETS['floor']:.0f}x of the bandwidth floor for n >= 10",
         lambda r: (_secs(r, MAIN) or math.nan) / r["floor_s"], lambda x: x <= TARGETS["floor"],
         lambda r: r["n"] >= 10, lambda r: ""),
        (ANCHOR_TARGET, lambda r: _fastest_anchor(r)[0], lambda x: x >= TARGETS["anchors"], lambda r: True,
         lambda r: f" vs {LABELS[_fastest_anchor(r)[1]]}"),
    ]
    for text, value, ok, applies, detail in specs:
        cases = [r for r in rows if applies(r)]
        vals = [(r, value(r)) for r in cases]
        vals = [(r, v) for r, v in vals if v is not None and not math.isnan(v)]
        if not vals:
            out.append(f"- {text}: not measured.")
            continue
        miss = [(r, v) for r, v in vals if not ok(v)]
        state = "met" if not miss else ("not met" if len(miss) == len(vals) else "partly met")
        line = f"- {text}: **{state}** in {len(vals) - len(miss)}/{len(vals)} cases"
        if len(vals) < len(cases):
            line += f" ({len(cases) - len(vals)} more not measured)"
        if miss:
            line += "; missed at " + ", ".join(f"(n={r['n']}, L={r['L']}, C={r['C']}: {v:.2f}x{detail(r)})"
                                               for r, v in miss)
        out.append(line + ".")
    absent = [LABELS[a] for a in ANCHORS if not any(_secs(r, a) for r in rows)]
    partial = [LABELS[a] for a in ANCHORS if LABELS[a] not in absent and not all(_secs(r, a) for r in rows)]
    if rows and (absent or partial):
        parts = ([f"not measured: {', '.join(absent)}"] if absent else []) + (
            [f"missing in some cases: {', '.join(partial)}"] if partial else [])
        out.append("  (over the anchors measured in each case; " + "; ".join(parts) + ")")
    xs = [x for x in (_ratio(r, "aer") for r in rows) if x]
    if xs:
        out.append(f"- Reference, no target: hqctf native forward + backward vs Aer forward only: {_fmt_x(min(xs))} to "
                   f"{_fmt_x(max(xs))} (Aer time / hqctf time); hqctf's forward + backward is faster than Aer's forward "
                   f"alone in {sum(x > 1 for x in xs)}/{len(xs)} cases.")
    return out


def _fastest_anchor(row) -> tuple[float | None, str | None]:
    """(speedup of hqctf native over the fastest forward + backward anchor measured in this row, that anchor)."""
    times = [(_secs(row, a), a) for a in ANCHORS if _secs(row, a)]
    main = _secs(row, MAIN)
    if not times or not main:
        return None, None
    secs, anchor = min(times)
    return secs / main, anchor


def _ratio(row, tool):
    adj, other = _secs(row, MAIN), _secs(row, tool)
    return other / adj if adj and other else None


def write_section(path: Path, section: str) -> None:
    """Replace this script's section (SECTION to the next ``## ``) in ``path``; append if absent."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import replace_section  # imports hqctf, which the TorchQuantum worker's interpreter may lack

    replace_section(path, SECTION, section)


def print_table(result: dict) -> None:
    hdr = (["n", "L", "C"] + [SHORT[x] for x in TOOLS] + ["floor", "xPL", "xTQ", "xfastest", "xAer (fwd only)",
                                                          "/floor", "peak MB " + " / ".join(SHORT[x] for x in TOOLS)])
    rows = []
    for row in result["rows"]:
        t = row["tools"]
        adj = _secs(row, MAIN)

        def cell(tool):
            res = t.get(tool)
            if res is None:
                return "-"
            if "error" in res:
                return "failed"
            return (_fmt_s(res["seconds"]) + ("*" if res.get("scaled_from") else "")
                    + ("!" if _disturbed(res, result["args"].max_disturbance) else ""))

        fastest, anchor = _fastest_anchor(row)
        rows.append([str(row["n"]), str(row["L"]), str(row["C"])] + [cell(x) for x in TOOLS] + [
            _fmt_s(row["floor_s"]), _fmt_x(_ratio(row, "pennylane")), _fmt_x(_ratio(row, "torchquantum")),
            _fmt_x(fastest) + (f" ({SHORT[anchor]})" if anchor else ""), _fmt_x(_ratio(row, "aer")),
            _fmt_x(adj / row["floor_s"] if adj else None),
            "/".join(_cell_mem(t.get(x)).split(" ")[0] for x in TOOLS)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(hdr)]
    print("  ".join(h.rjust(w) for h, w in zip(hdr, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print("(* = measured on a subset of circuits and scaled; see the doc section for k; "
          "! = other processes disturbed the measurement; xfastest = vs the fastest forward + backward anchor; "
          "Aer forward only: probabilities, no gradient)")
    for note in result["notes"]:
        print(note)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny smoke subset (one case, 1 repeat, 32 MB bandwidth arrays)")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown file whose simulator section is written/replaced (default docs/benchmarks.md; "
                        "with --quick the default is to write nothing)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per case after one warm-up (default 5; 1 with --quick)")
    p.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS, metavar="TOOL",
                   help=f"tools to measure, of {', '.join(TOOLS)} (default all; qulacs, lightning (lightning.qubit "
                        "adjoint) and aer (Aer, forward only) are skipped with a note where not installed, "
                        "torchquantum where it does not import under --torchquantum-python)")
    p.add_argument("--n", type=int, nargs="+", help="restrict the grid to these qubit counts")
    p.add_argument("--layers", type=int, nargs="+", help="restrict the grid to these layer counts")
    p.add_argument("--circuits", type=int, nargs="+", help="restrict the grid to these circuit counts")
    p.add_argument("--torchquantum-python", default=None,
                   help="interpreter with torchquantum (e.g. a venv's python); default: this interpreter, skipped "
                        "with a note if torchquantum does not import there")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: nproc)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait-idle", type=float, default=0.0,
                   help="before each measurement wait up to this many seconds for other processes to leave the "
                        "CPUs idle (default 0: no waiting)")
    p.add_argument("--max-disturbance", type=float, default=0.05,
                   help="a measurement during which other processes used more than this fraction of all CPUs is "
                        "repeated (--retries times), then kept and flagged")
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="save the raw measurements here (after every case)")
    p.add_argument("--reuse", type=Path, default=None,
                   help="a --json file of an earlier run: keep its undisturbed measurements, re-measure the rest")
    p.add_argument("--remeasure", nargs="+", default=[], choices=TOOLS, metavar="TOOL",
                   help="with --reuse: measure these tools again anyway (e.g. after changing them)")
    p.add_argument("--max-wait-total", type=float, default=600.0,
                   help="stop waiting for an idle machine once this many seconds were spent waiting in all")
    p.add_argument("--max-case-seconds", type=float, default=60.0,
                   help=f"cases of {', '.join(SUBSET_TOOLS)} estimated to need longer (warm-up + repeats) run on "
                        "a subset")
    p.add_argument("--max-case-mb", type=float, default=4000.0,
                   help="... or estimated to peak above this many MB")
    p.add_argument("--bandwidth-mb", type=int, default=None, help="size of each bandwidth array (default 256; 32 with --quick)")
    # worker-only options
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="time", choices=("time", "probe", "check"), help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.bandwidth_mb is None:
        args.bandwidth_mb = 32 if args.quick else 256

    if args.worker:
        if args.worker != "bandwidth" and args.mode != "check" and args.n is None:
            p.error("worker needs --n, --layers, --circuits")
        if args.n:
            args.n, args.layers, args.circuits = args.n[0], args.layers[0], args.circuits[0]
        res = _worker(args)
        print(RESULT_TAG + json.dumps(res), flush=True)
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/simulator.py", *(argv if argv is not None else sys.argv[1:])])
    result = measure_all(args, log, command)
    print_table(result)
    if result["others_cpu"] is not None:
        print(f"other processes used {100 * result['others_cpu']:.0f}% of the CPUs during the run")
    out = args.out
    if out is None and not args.quick:
        out = REPO / "docs" / "benchmarks.md"
    if out is not None and not args.no_write:
        write_section(out, render(result, command))
        print(f"wrote section {SECTION!r} of {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
