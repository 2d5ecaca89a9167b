"""Command line: ``hqctf demo`` (also ``python -m hqctf demo``). Parses arguments only; heavy imports are deferred."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hqctf", description="Hybrid quantum-classical training of CT segmentation networks."
    )
    parser.add_argument("--version", action="version", version=f"hqctf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train a small 2D UNet++ classically and with QPG on the embedded OpenKBP sample and compare",
        description="Train a 2D UNet++ on OpenKBP axial slices (embedded sample: 5 cases train, 1 validation) classically and with "
        "Quantum Parameter Generation, same seed, data order and steps; writes demo.log, results.json, "
        "overlay.png and curves.png.",
    )
    demo.add_argument("--out", default="hqctf-demo", metavar="DIR", help="output folder (default: %(default)s)")
    demo.add_argument("--steps", type=_positive_int, default=None,
                      help="training steps per mode (default: sized for about 4 minutes on 2 CPU cores)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed for initialisation and data order (default: %(default)s)")
    demo.add_argument("--data", default=None, metavar="DIR",
                      help="nnU-Net raw dataset folder (default: the embedded sample)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hqctf`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .data.errors import DataError
        from .train.demo import run_demo

        steps = {} if args.steps is None else {"steps": args.steps}
        try:
            run_demo(args.out, seed=args.seed, data_dir=args.data, **steps)
        except (DataError, OSError, FloatingPointError) as exc:
            print(f"hqctf demo: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("hqctf demo: interrupted", file=sys.stderr)
            return 130
    return 0
