"""CPU inference time per case: a QPG-trained network after merging vs the same architecture trained classically.

A merged QPG network is an ordinary MONAI network (generated weights written in as Parameters), so it should
run exactly as fast as the classical one: the ratio is expected to be 1.0 within noise. Also times a 3D
BasicUNet over a whole 128^3 OpenKBP volume. Weights come from initialisation (and, for QPG, from the generator
at initialisation, merged): run time does not depend on their values.

    python benchmarks/infer.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

from hqctf.data.nnunet import NnUNetSource  # noqa: E402
from hqctf.data.preprocess import PreprocessConfig, preprocess  # noqa: E402
from hqctf.data.sample import sample_dataset_dir  # noqa: E402
from hqctf.qpg import merge  # noqa: E402
from hqctf.train.config import ModeConfig, ModelConfig  # noqa: E402
from hqctf.train.models import build_model  # noqa: E402
from hqctf.train.validate import predict_volume  # noqa: E402

HEADING = "## Inference (benchmarks/infer.py)"


def _time(model: torch.nn.Module, image, dims: int, patch: tuple[int, ...]) -> float:
    start = time.perf_counter()
    predict_volume(model, image, dims, patch, overlap=0.25)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="OpenKBP nnU-Net raw folder (default: the embedded sample)")
    parser.add_argument("--repeats", type=int, default=3, help="timed predictions per model (interleaved)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and one repeat: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    source = NnUNetSource(args.data or sample_dataset_dir())
    case_id = source.case_ids()[0]
    raw = source.read(case_id)
    case = preprocess(raw, PreprocessConfig(clip=(-160, 240), mean=-10, std=105))
    volume = preprocess(raw, PreprocessConfig(clip=(-160, 240), mean=-10, std=105, crop_body=False))
    features = (4, 4, 8, 8, 16, 4) if args.quick else (32, 32, 64, 128, 256, 32)
    repeats = 1 if args.quick else args.repeats
    rows = []
    for name, dims, patch, image in (("UNet++ 2D", 2, (80, 128), case.image),
                                     ("BasicUNet 3D", 3, (64, 64, 64), volume.image)):
        config = ModelConfig(name="unetpp" if dims == 2 else "unet", spatial_dims=dims, features=features)
        classical = build_model(config, ModeConfig(name="classical"), 8).eval()
        qpg = merge(build_model(config, ModeConfig(name="qpg"), 8)).eval()
        times = {"classical": [], "qpg merged": []}
        _time(classical, image, dims, patch)  # warm-up
        for _ in range(repeats):
            times["classical"].append(_time(classical, image, dims, patch))
            times["qpg merged"].append(_time(qpg, image, dims, patch))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((name, "x".join(map(str, image.shape)), "x".join(map(str, patch)), med["classical"],
                     med["qpg merged"], med["qpg merged"] / med["classical"]))
    m = machine()
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/infer.py", *(argv or sys.argv[1:])])
    lines = [HEADING, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']:.0f} GiB, no GPU; torch {m['torch']}, "
             f"monai {m['monai']}", "", f"OpenKBP case {case_id}, sliding windows with overlap 0.25, median of "
             f"{repeats} interleaved predictions per model, 8 output channels, features {list(features)}.", "",
             "| network | volume (voxels) | window | classical s/case | QPG merged s/case | ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {v} | {w} | {c:.2f} | {q:.2f} | {r:.3f} |" for n, v, w, c, q, r in rows]
    if args.quick:
        lines += ["", "(`--quick`: tiny networks, one repeat; numbers not meaningful.)"]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out:
        replace_section(args.out, HEADING, section)


if __name__ == "__main__":
    main()
