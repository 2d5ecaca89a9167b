"""CPU inference time per case: the whole-case prediction path against the old one and against onnxruntime.

Times, on one OpenKBP case and the same network each:

* ``patch windows``: sliding windows of the training patch with 25 % overlap (hqctf's path before whole-slice
  prediction, recomputing the overlaps);
* ``whole slices (eager)``: `predict_volume` on the network as built (2D: whole slices padded to a multiple of 16,
  several per pass, under inference mode);
* ``hqctf (torch)``: the same path on `cpu_inference_network` of the network, as `hqctf predict` (its default runtime)
  and `hqctf evaluate` run it (instance norm + activation as one compiled kernel, each convolution of a
  concatenation as a sum of convolutions, channels-last throughout);
* ``hqctf (onnxruntime)``: the same path with the network exported to ONNX and run by onnxruntime (what
  `hqctf predict --runtime onnxruntime` does, and predicting with an `hqctf export --format onnx`);
* ``QPG merged``: the hqctf torch path on a merged QPG network of the same architecture (an ordinary MONAI network,
  so it should run exactly as fast as the classical one).

Weights come from initialisation: run time does not depend on their values. Median of interleaved repeats.

    python benchmarks/infer.py --data ../shared/data/Dataset001_OpenKBPOAR --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

from hqctf.data.nnunet import NnUNetSource  # noqa: E402
from hqctf.data.preprocess import PreprocessConfig, preprocess  # noqa: E402
from hqctf.data.sample import sample_dataset_dir  # noqa: E402
from hqctf.infer.export import write_onnx  # noqa: E402
from hqctf.infer.predict import _OnnxNet  # noqa: E402
from hqctf.qpg import merge  # noqa: E402
from hqctf.train.config import ModeConfig, ModelConfig  # noqa: E402
from hqctf.train.models import build_model, logits_of  # noqa: E402
from hqctf.train.cpu_layout import cpu_inference_network  # noqa: E402
from hqctf.train.validate import predict_volume  # noqa: E402

HEADING = "## Inference (benchmarks/infer.py)"
PATHS = ("patch windows", "whole slices (eager)", "hqctf (torch)", "hqctf (onnxruntime)", "QPG merged")


@torch.no_grad()
def patch_windows(model: torch.nn.Module, image, dims: int, patch: tuple[int, ...]) -> None:
    """The old path: sliding windows of the training patch over every slice (2D) or the volume (3D)."""
    volume = torch.from_numpy(image)
    x = volume[None, None] if dims == 3 else volume.permute(2, 0, 1)[:, None]
    sliding_window_inference(x, patch, 8, lambda t: logits_of(model(t)), overlap=0.25).argmax(1)


def onnx_net(model: torch.nn.Module, dims: int, patch: tuple[int, ...], folder: Path) -> torch.nn.Module:
    """``model`` exported to ONNX as `hqctf export` writes it, run by onnxruntime (as `hqctf predict` runs it)."""
    path = folder / f"model{dims}d.onnx"
    write_onnx(model, dims, patch, path)
    return _OnnxNet(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="OpenKBP nnU-Net raw folder (default: the embedded sample)")
    parser.add_argument("--repeats", type=int, default=3, help="timed predictions per path (interleaved)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and one repeat: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    source = NnUNetSource(args.data or sample_dataset_dir())
    case_id = source.case_ids()[0]
    raw = source.read(case_id)
    case = preprocess(raw, PreprocessConfig(clip=(-160, 240), mean=-10, std=105))
    volume = preprocess(raw, PreprocessConfig(clip=(-160, 240), mean=-10, std=105, crop_body=False))
    repeats = 1 if args.quick else args.repeats
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, dims, features, patch, image in (
                ("UNet++ 2D", 2, (16, 16, 32, 64, 128, 16), (64, 64), case.image),
                ("BasicUNet 3D", 3, (32, 32, 64, 128, 256, 32), (64, 64, 64), volume.image)):
            features = (4, 4, 8, 8, 16, 4) if args.quick else features
            config = ModelConfig(name="unetpp" if dims == 2 else "unet", spatial_dims=dims, features=features)
            classical = build_model(config, ModeConfig(name="classical"), 8).eval()
            fast = cpu_inference_network(classical, dims)
            qpg = cpu_inference_network(merge(build_model(config, ModeConfig(name="qpg"), 8)).eval(), dims)
            runs = {
                "patch windows": lambda: patch_windows(classical, image, dims, patch),
                "whole slices (eager)": lambda: predict_volume(classical, image, dims, patch),
                "hqctf (torch)": lambda: predict_volume(fast, image, dims, patch),
                "hqctf (onnxruntime)": (lambda net: lambda: predict_volume(net, image, dims, patch))(
                    onnx_net(classical, dims, patch, Path(tmp))),
                "QPG merged": lambda: predict_volume(qpg, image, dims, patch),
            }
            times: dict[str, list[float]] = {k: [] for k in runs}
            for run in runs.values():  # warm-up
                run()
            for _ in range(repeats):
                for key, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[key].append(time.perf_counter() - start)
            rows.append((name, "x".join(map(str, image.shape)), "x".join(map(str, patch)),
                         {k: statistics.median(v) for k, v in times.items()}))
    m = machine()
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/infer.py", *(argv or sys.argv[1:])])
    lines = [HEADING, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']:.0f} GiB, no GPU; torch {m['torch']}, "
             f"monai {m['monai']}, {torch.get_num_threads()} torch threads", "",
             f"OpenKBP case {case_id}, 8 output channels, seconds per case (median of {repeats} interleaved "
             "repeats). Patch windows: the training patch with 25 % overlap (the path before whole-slice prediction); "
             "whole slices: one window per slice where it fits (2D), several per pass, on the network as built; "
             "hqctf (torch): the same on the network laid out for the CPU (instance norm + activation as one compiled "
             "kernel, each convolution of a concatenation as a sum of convolutions, channels-last); onnxruntime: the "
             "same path through an ONNX export of the same "
             "network; QPG merged: a merged QPG network of the same architecture on the torch path.", "",
             "| network | volume (voxels) | training patch | " + " | ".join(f"{p} s" for p in PATHS)
             + " | speed-up over patch windows | torch / onnxruntime | QPG merged / classical |",
             "|---|---|---|" + "---|" * (len(PATHS) + 3)]
    for name, vol, patch, t in rows:
        lines.append(f"| {name} | {vol} | {patch} | " + " | ".join(f"{t[p]:.2f}" for p in PATHS)
                     + f" | {t['patch windows'] / t['hqctf (torch)']:.1f}x"
                     f" | {t['hqctf (torch)'] / t['hqctf (onnxruntime)']:.2f} | {t['QPG merged'] / t['hqctf (torch)']:.3f} |")
    if args.quick:
        lines += ["", "(`--quick`: tiny networks, one repeat; numbers not meaningful.)"]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out:
        replace_section(args.out, HEADING, section)


if __name__ == "__main__":
    main()
