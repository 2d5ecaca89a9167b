"""Command line: ``hqctf demo``, ``hqctf data inspect|convert`` (also ``python -m hqctf``).

Parses arguments and calls the package; heavy imports are deferred.
"""

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
    _add_data_commands(commands)
    return parser


def _label_pair(text: str) -> tuple[int, str]:
    value, sep, name = text.partition("=")
    if not sep or not value.strip().isdigit() or int(value) < 1 or not name.strip():
        raise argparse.ArgumentTypeError(f"expected VALUE=NAME with VALUE >= 1, got '{text}'")
    return int(value), name.strip()


def _alias_pair(text: str) -> tuple[str, str]:
    name, sep, pattern = text.partition("=")
    if not sep or not name.strip() or not pattern.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=ALIAS, got '{text}'")
    return name.strip(), pattern.strip()


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("nnunet", "kits", "dicom", "png", "nifti"), default=None,
                        help="input format (default: detected from the files)")
    parser.add_argument("--label", type=_label_pair, action="append", default=[], metavar="VALUE=NAME",
                        help="DICOM/NIfTI: label value and structure name, repeatable (e.g. --label 1=Parotid_L); "
                             "RTSTRUCT ROI names match case-insensitively and through TG-263 aliases")
    parser.add_argument("--alias", type=_alias_pair, action="append", default=[], metavar="NAME=ALIAS",
                        help="extra ROI name or glob pattern for a label, repeatable (e.g. --alias 'GTV=GTV_Mass*')")
    parser.add_argument("--missing", choices=("error", "unknown"), default="error",
                        help="DICOM: a label with no matching ROI is an error or 'not contoured' (default: %(default)s)")
    parser.add_argument("--label-file", default=None, metavar="FILE", help="label map for a single NIfTI image")


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect and convert CT datasets",
                               description="Inspect and convert CT datasets (nnU-Net raw, KiTS19/21, DICOM CT + "
                               "RTSTRUCT/SEG, NIfTI, PNG slices).")
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")
    inspect = verbs.add_parser("inspect", help="table of cases, spacing, structure volumes and problems",
                               description="Read every case and print shape, spacing, per-structure volume (cc) "
                               "and all problems found; exits 2 when there is any problem.")
    inspect.add_argument("path", metavar="PATH", help="dataset folder, DICOM folder or NIfTI file")
    _add_source_options(inspect)
    convert = verbs.add_parser("convert", help="write an nnU-Net raw dataset from any supported input",
                               description="Write an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json, "
                               "unknown_structures.json) from any supported input; the input is never modified.")
    convert.add_argument("input", metavar="IN", help="dataset folder, DICOM folder or NIfTI file")
    convert.add_argument("output", metavar="OUT", help="output dataset folder, e.g. Dataset003_MyOARs")
    _add_source_options(convert)


def _open(args: argparse.Namespace, path: str):
    from .data.formats import open_source

    labels = dict(args.label) or None
    aliases: dict[str, list[str]] = {}
    for name, pattern in args.alias:
        aliases.setdefault(name, []).append(pattern)
    return open_source(path, format=args.format, labels=labels, aliases=aliases, missing=args.missing,
                       label_file=args.label_file)


def _run_data(args: argparse.Namespace) -> int:
    if args.verb == "inspect":
        from rich.console import Console

        from .data.inspect import inspect_source, render

        source = _open(args, args.path)
        reports = inspect_source(source)
        render(source, reports, Console())
        return 2 if any(r.problems for r in reports) else 0
    from .data.nnunet import write_nnunet_dataset

    source = _open(args, args.input)
    out = write_nnunet_dataset(source, args.output, labels=source.labels,
                               description=f"converted by hqctf from {source.root} ({source.format})")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hqctf`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "data":
        from .data.errors import DataError

        try:
            return _run_data(args)
        except (DataError, OSError) as exc:
            print(f"hqctf data {args.verb}: error: {exc}", file=sys.stderr)
            return 2
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
