"""Robustness of trained QPG runs to how their circuits are measured: finite shots and device noise.

For each run (a trained QPG run folder, e.g. one of a bench's), its test patients are scored with the weights
generated from exact probabilities, then from ``--shots`` measurements per circuit and under per-qubit readout
error and depolarising gate noise (`hqctf evaluate --set qpg.*`: nothing is retrained). Each run is copied
first (best checkpoint, config, splits), so the evaluations do not land in the original folder. Results are
kept in a JSON file, so an interrupted study resumes; a PNG plots Dice against shots and noise.

    python benchmarks/robustness.py --run runs/bench-cpu-small/runs/unetpp-qpg-all-seed0 --out docs/benchmarks.md

Depolarising noise is simulated exactly: in the builtin engine in the Pauli basis up to 13 qubits (compiled on
the CPU; benchmarks/noise.py times it), else on Qiskit Aer (``--depolarizing-backend``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section, save_figure  # noqa: E402

from hqctf.train.evaluate import evaluate_run  # noqa: E402

HEADING = "## Robustness to shots and noise (benchmarks/robustness.py)"
COPIED = ("config.yaml", "splits.json", "best.pt", "volume_ranges.json")


def settings(shots: list[int], readout: list[float], depolarizing: list[float], backend: str) -> list[tuple[str, list[str]]]:
    """(label, evaluate overrides) of every measurement setting, exact first. Each setting states shots, readout
    error and depolarising noise, so a run trained with shots or noise is also scored on exact probabilities."""
    def measured(shots: int | None = None, readout: float = 0.0, depolarizing: float = 0.0) -> list[str]:
        return [f"qpg.shots={'null' if shots is None else shots}", f"qpg.readout_error={readout}",
                f"qpg.depolarizing={depolarizing}"]

    out = [("exact", measured())]
    out += [(f"shots {s:g}", measured(shots=s)) for s in shots]
    out += [(f"readout {p:g}", measured(readout=p)) for p in readout]
    out += [(f"depolarizing {p:g}", [*measured(depolarizing=p), *([f"qpg.backend={backend}"] if backend != "builtin"
                                                                   else [])]) for p in depolarizing]
    return out


def run_labels(runs: list[Path]) -> list[str]:
    """A distinct label per run: its folder name, or as many trailing path parts as tell the runs apart (two
    benches' ``runs/unetpp-qpg-n20-seed0`` become ``b-qpg/runs/unetpp-qpg-n20-seed0`` and so on)."""
    parts = [run.resolve().parts for run in runs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError(f"the same run is given twice: {', '.join(map(str, runs))}")


def copy_run(run: Path, label: str, work: Path) -> Path:
    """The files evaluation needs, copied into ``work/<label>`` (once; into a temporary folder renamed when
    complete, so an interrupted copy is redone)."""
    target = work / label
    if not target.is_dir():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in COPIED:
            if (run / name).is_file():
                shutil.copy2(run / name, partial / name)
        partial.replace(target)
    return target


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [("shots", "shots per circuit", True), ("readout", "readout flip probability", True),
             ("depolarizing", "depolarising probability per gate", True)]
    kinds = [k for k in kinds if any(r["setting"].startswith(k[0]) for r in results)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.6), squeeze=False)
    for ax, (kind, xlabel, log) in zip(axes[0], kinds):
        for run in dict.fromkeys(r["run"] for r in results):
            rows = [r for r in results if r["run"] == run and r["setting"].startswith(kind)]
            exact = next(r["dice"] for r in results if r["run"] == run and r["setting"] == "exact")
            xs = [float(r["setting"].split()[1]) for r in rows]
            line, = ax.plot(xs, [r["dice"] for r in rows], "o-", label=run)
            ax.axhline(exact, color=line.get_color(), ls=":", lw=1)
        ax.set_xscale("log" if log else "linear")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test Dice (dotted: exact)")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _section(results: list[dict], command: str, seconds: float, image: str, note: str) -> str:
    m = machine()
    runs = list(dict.fromkeys(r["run"] for r in results))
    names = list(dict.fromkeys(r["setting"] for r in results))
    lines = [HEADING, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), no GPU; torch {m['torch']}, monai {m['monai']}  ",
             f"Wall time: {seconds / 60:.1f} min (settings already in the results file are not rerun)", "",
             "Test Dice (mean over test patients of the mean over contoured structures) of each trained QPG run when "
             "its weights are generated from exact probabilities, from a finite number of shots per circuit "
             "(frequencies; torch seeded with the run's seed), under per-qubit readout error (exact confusion "
             "matrix) and under depolarising noise after every gate; nothing is retrained. Δ: change from exact.",
             "", "| setting | " + " | ".join(f"{r} Dice | Δ" for r in runs) + " |",
             "|---|" + "---|---|" * len(runs)]
    for name in names:
        cells = []
        for run in runs:
            row = next((r for r in results if r["run"] == run and r["setting"] == name), None)
            exact = next(r["dice"] for r in results if r["run"] == run and r["setting"] == "exact")
            cells += [f"{row['dice']:.3f}", f"{row['dice'] - exact:+.3f}"] if row else ["–", "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"![Test Dice against shots and noise]({image})"]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", dest="runs", action="append", type=Path, required=True,
                        help="trained QPG run folder (repeatable)")
    parser.add_argument("--shots", default="100,1000,10000,100000,1000000", help="comma-separated shot counts")
    parser.add_argument("--readout", default="0.001,0.01,0.02,0.05", help="comma-separated flip probabilities")
    parser.add_argument("--depolarizing", default="", help="comma-separated probabilities per gate (slow)")
    parser.add_argument("--depolarizing-run", dest="depolarizing_runs", action="append", type=Path, default=None,
                        help="run (one of --run) that gets the depolarising settings (repeatable; default: every run)")
    parser.add_argument("--depolarizing-backend", default="builtin", choices=("builtin", "qiskit", "pennylane"))
    parser.add_argument("--work", type=Path, default=Path("runs/robustness"), help="copies and results.json")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    parser.add_argument("--image", type=Path, default=Path("docs/img/robustness.png"))
    parser.add_argument("--note", default="", help="a sentence added under the table (e.g. what was left out)")
    args = parser.parse_args(argv)
    floats = lambda text: [float(v) for v in text.split(",") if v]  # noqa: E731
    plan = settings([int(v) for v in args.shots.split(",") if v], floats(args.readout), floats(args.depolarizing),
                    args.depolarizing_backend)
    if len(plan) == 1:
        parser.error("nothing to compare with exact probabilities: give --shots, --readout or --depolarizing")
    started = time.perf_counter()
    store = args.work / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else []
    try:
        labels = run_labels(args.runs)
    except ValueError as err:
        parser.error(str(err))
    noisy = {r.resolve() for r in (args.depolarizing_runs or args.runs)}
    if not noisy <= {r.resolve() for r in args.runs}:
        parser.error("every --depolarizing-run must also be given as --run")
    for run, name in zip(args.runs, labels):
        copy = copy_run(run, name, args.work)
        for label, overrides in plan:
            if label.startswith("depolarizing") and run.resolve() not in noisy:
                continue
            if any(r["run"] == name and r["setting"] == label for r in results):
                continue
            t = time.perf_counter()
            _, summary = evaluate_run(copy, data=None, split="test", overrides=overrides)
            dice = summary["mean"]["dice_mean"]
            results.append({"run": name, "setting": label, "dice": dice, "seconds": time.perf_counter() - t})
            print(f"{name} {label}: test Dice {dice:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
            store.parent.mkdir(parents=True, exist_ok=True)
            store.with_suffix(".tmp").write_text(json.dumps(results, indent=1))
            store.with_suffix(".tmp").replace(store)
    wanted = set(labels)
    chosen = [r for r in results if r["run"] in wanted and r["setting"] in {label for label, _ in plan}]
    _plot(chosen, args.image)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/robustness.py", *(argv or sys.argv[1:])])
    image = os.path.relpath(args.image, args.out.parent) if args.out else str(args.image)
    section = _section(chosen, command, time.perf_counter() - started, image, args.note)
    print(section)
    if args.out:
        replace_section(args.out, HEADING, section)


if __name__ == "__main__":
    main()
