#!/usr/bin/env python
"""Wall time of exact depolarising-noise simulation (evaluation, no gradients) in the builtin engine.

Times, on the same circuits in one run: the compiled Pauli-basis kernel (``quantum/pauli.cpp``, the default on
the CPU), the torch Pauli-basis path it replaces, the density-matrix simulation used in training (forward only,
up to 10 qubits) and PennyLane ``default.mixed`` (a few circuits, scaled per circuit; up to 8 qubits), and
checks that they agree. Writes the section ``## Depolarising noise (benchmarks/noise.py)`` of docs/benchmarks.md.

    python benchmarks/noise.py --out docs/benchmarks.md
    python benchmarks/noise.py --quick            # smoke run, prints the table only
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

from hqctf.quantum import CircuitSpec  # noqa: E402
from hqctf.quantum.ansatz import gates  # noqa: E402
from hqctf.quantum.noise import depolarized_probabilities  # noqa: E402

HEADING = "## Depolarising noise (benchmarks/noise.py)"
P = 0.01
CASES = [  # qubits, layers, circuits: the sizes of QPG's layers (6-11 qubits, one circuit per output channel)
    (6, 2, 64), (8, 2, 64), (10, 2, 32), (11, 2, 32), (12, 2, 8)]
QUICK = [(6, 2, 16), (8, 2, 8)]
MAX_DENSITY = 10
MAX_PENNYLANE = 8
PENNYLANE_CIRCUITS = 2


def _best(fn, repeats: int) -> float:
    fn()  # warm-up (compiles the kernel on first use)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _pennylane(spec: CircuitSpec, angles: torch.Tensor):
    import pennylane as qml

    ops = {"ry": qml.RY, "cnot": qml.CNOT}
    dev = qml.device("default.mixed", wires=spec.n_qubits)

    @qml.qnode(dev)
    def circuit(one):
        for gate in gates(spec, one):
            ops[gate.name](*gate.params, wires=list(gate.wires))
            for w in gate.wires:
                qml.DepolarizingChannel(P, wires=w)
        return qml.probs(wires=range(spec.n_qubits))

    return lambda: torch.stack([torch.as_tensor(circuit(a)) for a in angles])


def measure(case: tuple[int, int, int], repeats: int) -> dict:
    n, layers, circuits = case
    spec = CircuitSpec(n, layers, rotations=("ry",), entangler="cnot", ring=True)
    angles = torch.rand(circuits, *spec.angle_shape, generator=torch.Generator().manual_seed(n)) * 6
    row = {"case": case}
    native = depolarized_probabilities(angles, spec, P, engine="native")
    row["native"] = _best(lambda: depolarized_probabilities(angles, spec, P, engine="native"), repeats)
    row["torch"] = _best(lambda: depolarized_probabilities(angles, spec, P, engine="torch"), repeats)
    error = float((depolarized_probabilities(angles, spec, P, engine="torch") - native).abs().max())
    if n <= MAX_DENSITY:
        grad = angles.clone().requires_grad_()
        row["density"] = _best(lambda: depolarized_probabilities(grad, spec, P), repeats)
        error = max(error, float((depolarized_probabilities(grad, spec, P).detach() - native).abs().max()))
    if n <= MAX_PENNYLANE:
        few = angles[:PENNYLANE_CIRCUITS].double()
        run = _pennylane(spec, few)
        row["pennylane"] = _best(run, 1) * circuits / PENNYLANE_CIRCUITS
        error = max(error, float((run().float() - native[:PENNYLANE_CIRCUITS]).abs().max()))
    row["error"] = error
    return row


def section(rows: list[dict], command: str) -> str:
    m = machine()
    lines = [HEADING, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), no GPU; torch {m['torch']}, {torch.get_num_threads()} "
             "threads", "",
             f"Exact probabilities of RY + CNOT-ring circuits (float32, 2 layers) with a depolarising channel "
             f"(p = {P}) on each qubit of every gate, after it, without gradients, as when a trained run is "
             "re-evaluated under noise (`qpg.depolarizing`). Best of the repeats, seconds for all the case's "
             "circuits. native: the compiled Pauli-basis kernel (one circuit per thread, the default on the CPU); "
             "torch: the Pauli-basis torch path it replaces (circuits innermost); density: the density-matrix "
             "simulation used in training, forward only; PennyLane default.mixed: "
             f"{PENNYLANE_CIRCUITS} circuits timed, scaled to the case's count. max |Δp|: the largest difference "
             "of any other column's probabilities from native's.", "",
             "| qubits | circuits | native s | torch s | torch / native | density s | PennyLane s | max abs Δp |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n, _, c = r["case"]
        cell = lambda key: f"{r[key]:.3g}" if key in r else "–"  # noqa: E731
        lines.append(f"| {n} | {c} | {r['native']:.3g} | {r['torch']:.3g} | {r['torch'] / r['native']:.1f}x | "
                     f"{cell('density')} | {cell('pennylane')} | {r['error']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small cases, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    args = parser.parse_args(argv)
    rows = []
    for case in QUICK if args.quick else CASES:
        rows.append(measure(case, 1 if args.quick else args.repeats))
        print(f"{case}: " + ", ".join(f"{k} {v:.3g}" for k, v in rows[-1].items() if k != "case"), flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/noise.py", *(argv or sys.argv[1:])])
    text = section(rows, command)
    print(text)
    if args.out:
        replace_section(args.out, HEADING, text)


if __name__ == "__main__":
    main()
