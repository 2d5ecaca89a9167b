"""Training modes on OpenKBP 2D over seeds: train, evaluate on the held-out test patients, compare.

Runs ``hqctf train openkbp-2d`` once per mode and seed with the same data, splits and steps (CPU-sized overrides
below; every mode uses the bundled config's learning rates: ``optim.lr`` for classical parameters and
``optim.group_lr`` for QPG's generator groups), then ``hqctf evaluate --split test`` and ``hqctf compare``, and
writes its section of docs/benchmarks.md: per mode the test Dice of each seed and their mean ± sd. Finished runs
are reused, interrupted ones resumed.

    python benchmarks/modes.py --data ../shared/data/Dataset001_OpenKBPOAR --seeds 0,1,2 --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import csv
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

HEADING = "## Training modes on OpenKBP 2D (benchmarks/modes.py)"
MODES = ("classical", "qpg", "hyper", "frozen", "light", "lowrank", "lora", "residual")


def _hqctf(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hqctf", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"hqctf {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def _test_dice(run: Path) -> float:
    """Mean test Dice over structures and patients, from ``hqctf evaluate``'s summary.csv."""
    rows = csv.DictReader((run / "evaluation" / "test" / "summary.csv").open())
    return float(next(r for r in rows if r["structure"] == "mean")["dice_mean"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/Dataset001_OpenKBPOAR", help="OpenKBP nnU-Net raw folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/modes"), help="parent folder of the run folders")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    parser.add_argument("--cases", type=int, default=60, help="cases used (train+val+test)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=256, help="training samples per epoch")
    parser.add_argument("--features", default="[16, 16, 32, 64, 128, 16]")
    parser.add_argument("--modes", default="classical,qpg,hyper", help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="further config overrides for every mode, repeatable")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    modes, seeds = args.modes.split(","), [int(v) for v in args.seeds.split(",")]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    runs: dict[str, list[Path]] = {m: [] for m in modes}
    for seed in seeds:
        for mode in modes:
            run = args.runs / f"{mode}-seed{seed}"
            overrides = {"out": run, "seed": seed, "data.path": args.data, "data.max_cases": args.cases,
                         "data.samples_per_epoch": args.samples, "data.workers": 0, "mode.name": mode,
                         "model.features": args.features, "optim.epochs": args.epochs,
                         "validation.every": max(1, args.epochs // 5), "validation.max_cases": 6}
            sets = [item for k, v in overrides.items() for item in ("--set", f"{k}={v}")]
            sets += [item for extra in args.extra for item in ("--set", extra)]
            if not (run / "summary.json").is_file():
                _hqctf("train", "openkbp-2d", *sets, *(["--resume", str(run)] if (run / "last.pt").is_file() else []),
                       "--no-progress")
            if not (run / "evaluation" / "test" / "summary.csv").is_file():
                _hqctf("evaluate", str(run), "--split", "test")
            runs[mode].append(run)
            print(f"{mode} seed {seed}: test Dice {_test_dice(run):.3f}", flush=True)
    table = _hqctf("compare", *[str(r) for m in modes for r in runs[m][:1]], "--split", "test")
    m = machine()
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/modes.py", *(argv or sys.argv[1:])])
    lines = [HEADING, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']:.0f} GiB, no GPU; torch {m['torch']}, "
             f"monai {m['monai']}  ", f"Wall time of this invocation: {(time.perf_counter() - started) / 60:.1f} min "
             "(finished runs are reused)", "",
             f"Bundled `openkbp-2d` config with: {args.cases} cases (test = 20 % of patients, fold 0 of 5 for "
             f"validation), UNet++ 2D features {args.features}, {args.epochs} epochs x {args.samples} slices, "
             f"seeds {args.seeds}{'; ' + ', '.join(args.extra) if args.extra else ''}; best checkpoint by validation "
             "Dice (6 validation patients), scored on the test patients (metrics on the preprocessed grid; structures "
             "not contoured in a case are left out). Learning rates: the bundled config's (optim.lr 3e-3; QPG angles "
             "2e-2, mapping and gains 1e-3).", "",
             "| mode | trainable | test Dice per seed | mean ± sd over seeds | best validation Dice per seed | s / epoch |",
             "|---|---|---|---|---|---|"]
    for mode in modes:
        summaries = [json.loads((r / "summary.json").read_text()) for r in runs[mode]]
        dice = [_test_dice(r) for r in runs[mode]]
        spread = f"{statistics.mean(dice):.3f} ± {statistics.stdev(dice):.3f}" if len(dice) > 1 else f"{dice[0]:.3f}"
        best = ", ".join(f"{s['best_score']:.3f}" for s in summaries)
        lines.append(f"| {mode} | {summaries[0]['trainable_parameters']:,} | {', '.join(f'{d:.3f}' for d in dice)} | "
                     f"{spread} | {best} | {statistics.mean(s['seconds_per_epoch'] for s in summaries):.1f} |")
    lines += ["", f"All metrics of the first seed (`hqctf compare`, mean ± sd over the {args.cases}-case split's test "
              "patients):", "", table.rstrip()]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out:
        replace_section(args.out, HEADING, section)


if __name__ == "__main__":
    main()
