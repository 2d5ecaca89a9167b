"""Classical vs QPG vs light vs LoRA on OpenKBP 2D: train, evaluate on the held-out test patients, compare.

Runs ``hqctf train openkbp-2d`` once per mode with the same seed, data, splits and steps (CPU-sized overrides
below), then ``hqctf evaluate --split test`` and ``hqctf compare``, and writes its section of docs/benchmarks.md.

    python benchmarks/modes.py --data ../shared/data/Dataset001_OpenKBPOAR --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

HEADING = "## Training modes on OpenKBP 2D (benchmarks/modes.py)"
#: Mode -> learning rate (QPG's generators train at a higher rate than plain weights; see the bundled config).
MODES = {"classical": 3e-3, "qpg": 1e-2, "light": 3e-3, "lora": 3e-3}


def _hqctf(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hqctf", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"hqctf {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/Dataset001_OpenKBPOAR", help="OpenKBP nnU-Net raw folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/modes"), help="parent folder of the run folders")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    parser.add_argument("--cases", type=int, default=60, help="cases used (train+val+test)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=256, help="training samples per epoch")
    parser.add_argument("--features", default="[16, 16, 32, 64, 128, 16]")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="further config overrides for every mode, repeatable")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = []
    for mode in args.modes.split(","):
        run = args.runs / mode
        overrides = {"out": run, "seed": args.seed, "data.path": args.data, "data.max_cases": args.cases,
                     "data.samples_per_epoch": args.samples, "data.workers": 0, "mode.name": mode,
                     "model.features": args.features, "optim.epochs": args.epochs, "optim.lr": MODES[mode],
                     "validation.every": max(1, args.epochs // 5), "validation.max_cases": 6}
        sets = [item for k, v in overrides.items() for item in ("--set", f"{k}={v}")]
        sets += [item for extra in args.extra for item in ("--set", extra)]
        if not (run / "summary.json").is_file():
            _hqctf("train", "openkbp-2d", *sets, *(["--resume", str(run)] if (run / "last.pt").is_file() else []),
                   "--no-progress")
        _hqctf("evaluate", str(run), "--split", "test")
        runs.append(run)
    table = _hqctf("compare", *map(str, runs), "--split", "test")
    seconds = {r.name: json.loads((r / "summary.json").read_text())["seconds_per_epoch"] for r in runs}
    m = machine()
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/modes.py", *(argv or sys.argv[1:])])
    lines = [HEADING, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']:.0f} GiB, no GPU; torch {m['torch']}, "
             f"monai {m['monai']}  ", f"Wall time: {(time.perf_counter() - started) / 60:.1f} min", "",
             f"Bundled `openkbp-2d` config with: {args.cases} cases (test = 20 % of patients, fold 0 of 5 for "
             f"validation), UNet++ 2D features {args.features}, {args.epochs} epochs x {args.samples} slices, "
             f"seed {args.seed}{'; ' + ', '.join(args.extra) if args.extra else ''}; best checkpoint by validation Dice, scored on the test patients (metrics on the "
             "preprocessed grid; structures not contoured in a case are left out).", "", table.rstrip(), "",
             "Seconds per epoch: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + "."]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out:
        replace_section(args.out, HEADING, section)


if __name__ == "__main__":
    main()
