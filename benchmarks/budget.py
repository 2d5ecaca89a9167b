"""What training each bundled config's QPG circuits on a quantum device would cost (`hqctf circuits budget`).

One row per bundled training config: the circuits of every generated layer, their qubits, largest depth and
two-qubit gates, the executions of one training step (forward, and parameter-shift gradient: two per trained
angle), of one epoch and of the config's whole training, and the shot time at a stated device rate; and what
generating a trained model's weights once costs (the forward executions only). Prints the table (the README
shows it) and, with ``--out``, writes its section of docs/benchmarks.md.

    python benchmarks/budget.py --out docs/benchmarks.md     # from the checkout, next to ../shared/data
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

from hqctf.infer.circuits import circuit_budget, duration  # noqa: E402
from hqctf.train.bundled import bundled_configs, resolve_config_path  # noqa: E402
from hqctf.train.config import load_config  # noqa: E402
from hqctf.train.evaluate import markdown_table  # noqa: E402

HEADING = "## Circuit budget (benchmarks/budget.py)"


def budget_row(config: str, shots: int, shot_rate: float) -> dict[str, str]:
    """The totals of one bundled config's budget (its dataset's structures count the network's outputs); a config
    that trains classically as shipped is counted with ``--set mode.name=qpg``."""
    shipped = load_config(resolve_config_path(config))
    overrides = [] if shipped.mode.name == "qpg" else ["mode.name=qpg"]
    b = circuit_budget(config, shots=shots, shot_rate=shot_rate, overrides=overrides)
    layers, model = b.layers, shipped.model
    per_step = sum(x.per_step for x in layers)
    epoch_seconds = sum(b.seconds_per_epoch(x) for x in layers)
    forward = sum(x.forward_per_step for x in layers)
    return {"config": " ".join([config, *(f"(--set {o})" for o in overrides)]), "network": f"{model.name} {model.spatial_dims}D {tuple(model.features)}",
            "structures": str(b.structures), "QPG layers": str(len(layers)),
            "circuits": f"{sum(x.circuits for x in layers):,}",
            "qubits": f"{min(x.qubits for x in layers)}-{max(x.qubits for x in layers)}",
            "largest depth": str(max(x.depth for x in layers)),
            "2q gates (all circuits)": f"{sum(x.two_qubit_gates * x.circuits for x in layers):,}",
            "executions/step": f"{per_step:,}", "steps/epoch": f"{b.steps_per_epoch:,}",
            "executions/epoch": f"{per_step * b.steps_per_epoch:,}", "shot time/epoch": duration(epoch_seconds),
            "epochs": str(b.epochs), "shot time, whole training": duration(epoch_seconds * b.epochs),
            "generate a trained model once": f"{forward:,} executions, {duration(forward * shots / shot_rate)}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, default=1000, help="shots per circuit execution (default %(default)s)")
    parser.add_argument("--shot-rate", type=float, default=5000.0,
                        help="shots per second of the device (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file whose section to write")
    args = parser.parse_args()
    rows = [budget_row(name, args.shots, args.shot_rate) for name in bundled_configs("train")]
    text = markdown_table(rows)
    print(text, end="")
    if args.out is not None:
        m = machine()
        command = "python benchmarks/budget.py" + (f" --shots {args.shots}" if args.shots != 1000 else "") + \
            (f" --shot-rate {args.shot_rate:g}" if args.shot_rate != 5000 else "") + f" --out {args.out}"
        section = [HEADING, "", f"Command: `{command}`  ",
                   f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
                   f"Counted by hqctf (no device, no timing; torch {m['torch']})", "",
                   f"Every bundled training config as shipped, {args.shots:,} shots per execution at an assumed "
                   f"{args.shot_rate:,g} shots/s, no queueing, compilation or latency. A training step runs every "
                   "circuit once and, for the parameter-shift gradient, twice per trained angle; generating a "
                   "trained model's weights needs the forward executions only. Per-layer tables: `hqctf circuits "
                   "budget CONFIG --markdown`.", "", text]
        replace_section(args.out, HEADING, "\n".join(section) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
