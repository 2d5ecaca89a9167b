"""Command line: ``hqctf demo``, ``hqctf data inspect|convert`` (also ``python -m hqctf``).

Parses arguments and calls the package; heavy imports are deferred.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
        "Quantum Parameter Generation through the training pipeline (the bundled openkbp-2d config, shortened), same "
        "seed, patients, patches and steps; writes demo.log, results.json, overlay.png, curves.png and the two run "
        "folders (runs/classical, runs/qpg).",
    )
    demo.add_argument("-o", "--out", default="hqctf-demo", metavar="DIR", help="output folder (default: %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help="training epochs of 20 steps per mode (default 15: about 2.5 minutes for both on 2 CPU cores)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed for initialisation and data order (default: %(default)s)")
    demo.add_argument("--data", default=None, metavar="DIR",
                      help="nnU-Net raw dataset folder (default: the embedded sample)")
    _add_data_commands(commands)
    _add_train_commands(commands)
    _add_bench_command(commands)
    _add_circuits_command(commands)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser, formats: bool = True) -> None:
    """RUN, --checkpoint and (with ``formats``) the merged network's --format."""
    parser.add_argument("run", metavar="RUN", help="run folder")
    if formats:
        parser.add_argument("--format", default="torchscript", choices=("torchscript", "onnx", "state_dict"),
                            help="(default: %(default)s)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="(default: %(default)s)")


def _add_circuits_command(commands: argparse._SubParsersAction) -> None:
    circuits = commands.add_parser(
        "circuits", help="a run's QPG circuits for hardware: OpenQASM 3 export, Aer run, counts import, cost budget",
        description="Hand a run's QPG circuits to other quantum tools or hardware and back (needs the quantum "
        'extra: pip install "hqctf[quantum]").')
    verbs = circuits.add_subparsers(dest="verb", required=True, metavar="VERB")
    export = verbs.add_parser("export", help="every QPG circuit as OpenQASM 3, with manifest.json",
                              description="Write DIR/LAYER/CHANNEL.qasm (OpenQASM 3, Qiskit's exporter, every qubit "
                              "measured) per circuit, manifest.json (per layer: channels, qubits, layers, gates, "
                              "angles, bit order, counts format) and generators.pt (each layer's generator state "
                              "without its angles).")
    _add_run_arguments(export, formats=False)
    export.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    run = verbs.add_parser("run", help="measure an export's circuits on Qiskit Aer (a stand-in for hardware)",
                           description="Run every OpenQASM 3 program of a circuits export folder SHOTS times on "
                           "Qiskit Aer and write the counts JSON that import-counts reads: the path a device "
                           "would take, on a simulator.")
    run.add_argument("folder", metavar="DIR", help="folder written by hqctf circuits export")
    run.add_argument("--shots", type=int, default=1000, help="measurements per circuit (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="Aer's sampling seed (default: %(default)s)")
    run.add_argument("-o", "--output", required=True, metavar="FILE", help="counts JSON to write")
    counts = verbs.add_parser("import-counts", help="weights from measured counts: a merged network as hqctf export",
                              description="Read counts {layer: {channel: {bitstring: count}}} (Qiskit bit order; "
                              "exact probabilities work too) from a JSON file or a folder of them, generate the "
                              "weights with the run's mapping networks and write the merged network as hqctf "
                              "export does.")
    _add_run_arguments(counts)
    counts.add_argument("--counts", required=True, metavar="FILE_OR_DIR", help="counts JSON, or a folder of them")
    counts.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    budget = verbs.add_parser("budget", help="circuit executions, shots and shot time of training on hardware",
                              description="Per QPG layer and in total: circuits, qubits, gates, depth, executions "
                              "per training step (forward and parameter-shift gradient) and per epoch, shots and "
                              "shot time per epoch.")
    budget.add_argument("target", metavar="RUN|CONFIG",
                        help="run folder, training YAML or bundled config (e.g. openkbp-2d)")
    budget.add_argument("--shots", type=int, default=1000, help="shots per execution (default: %(default)s)")
    budget.add_argument("--shot-rate", type=float, default=1000.0, metavar="HZ",
                        help="shots per second of the device (default: %(default)s)")
    budget.add_argument("--structures", type=int, default=None, metavar="N",
                        help="configs: structures segmented, background excluded (default: the config's or "
                             "dataset's labels)")
    budget.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="configs: override a config value, repeatable")
    budget.add_argument("--markdown", action="store_true", help="a Markdown table (e.g. for a README)")


def _run_circuits(args: argparse.Namespace) -> int:
    if args.verb == "export":
        from .infer.circuits import export_circuits

        manifest = export_circuits(args.run, args.output, checkpoint=args.checkpoint)
        print(f"wrote the circuits and {manifest}")
        return 0
    if args.verb == "run":
        from .infer.circuits import run_circuits

        n = run_circuits(args.folder, args.output, shots=args.shots, seed=args.seed)
        print(f"measured {n} circuits {args.shots} times each on Qiskit Aer; wrote {args.output}")
        return 0
    if args.verb == "import-counts":
        from .infer.circuits import import_counts
        from .infer.export import MODEL_JSON

        model = import_counts(args.run, args.counts, args.output, format=args.format, checkpoint=args.checkpoint)
        print(f"wrote {model} and {model.parent / MODEL_JSON}")
        return 0
    from .infer.circuits import budget_rows, budget_summary, circuit_budget

    result = circuit_budget(args.target, shots=args.shots, shot_rate=args.shot_rate, structures=args.structures,
                            overrides=args.overrides)
    rows = budget_rows(result)
    if args.markdown:
        from .train.evaluate import markdown_table

        print(markdown_table(rows) + "\n" + budget_summary(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(*rows[0], caption=budget_summary(result))
    for row in rows:
        table.add_row(*row.values())
    Console(width=None if sys.stdout.isatty() else 10_000).print(table)
    return 0


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="train every mode over models, training-set sizes and seeds; tables, tests and plots",
        description="Train and evaluate the runs of a bench config (modes x models x training-set sizes x seeds, "
        "each until its validation Dice plateaus) into BENCH/runs/, then write BENCH/report/ (Markdown, CSV, PNG; "
        "Wilcoxon tests of the reference mode against every other). Finished runs are skipped and interrupted "
        "ones resumed; --shard splits the runs between processes or machines sharing BENCH.")
    bench.add_argument("config", metavar="CONFIG", help="bench YAML, or a bundled bench: cpu-small, paper")
    bench.add_argument("-o", "--output", default=None, metavar="BENCH", help="bench folder (default: runs/bench-NAME)")
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="bench key (seeds=[0], modes=[classical,qpg], sizes=[10,all], patience=4) or training "
                            "key for every run (data.path=..., optim.lr=1e-3), repeatable")
    bench.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (1-based)")
    bench.add_argument("--out", default=None, metavar="FILE.md", help="also write the report's section into FILE.md")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar (bench.log is still written)")
    bench.add_argument("--name", default=None, metavar="NAME",
                       help="name in the report's heading and image files (default: the config's name)")


def _add_train_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train one run (classical, qpg, lora, lowrank or light) from a YAML config",
                                description="Train a segmentation network from a YAML config; writes config.yaml, "
                                "metrics.csv, last.pt/best.pt, curves.png, overlays/, tensorboard/, train.log and "
                                "summary.json into the run folder (config key 'out'). Under torchrun every process "
                                "joins one DistributedDataParallel run.")
    train.add_argument("config", nargs="?", default=None, metavar="CONFIG",
                       help="YAML file, or a bundled config: openkbp-2d, openkbp-3d, ibsi-sarcoma-2d, kits19-png-2d")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, repeatable (e.g. --set mode.name=qpg --set optim.epochs=5)")
    train.add_argument("--resume", default=None, metavar="RUN", help="continue the run in this folder from last.pt (with --set optim.epochs=N: train it longer)")
    train.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                       help="shortcut for torchrun --standalone --nproc-per-node N on this machine")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (the log file is still written)")
    evaluate = commands.add_parser("evaluate", help="per-case Dice, IoU, HD95 and surface Dice of a trained run",
                                   description="Predict a split of a dataset with a run's checkpoint and write "
                                   "per-case and summary tables (CSV and Markdown) under RUN/evaluation/SPLIT/ "
                                   "(with --set: RUN/evaluation/SPLIT+KEY=VALUE.../).")
    evaluate.add_argument("run", metavar="RUN", help="run folder")
    evaluate.add_argument("--data", default=None, metavar="PATH", help="dataset (default: the run's data.path)")
    evaluate.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                          help="cases to evaluate (default: %(default)s)")
    evaluate.add_argument("--checkpoint", default="best", choices=("best", "last"), help="(default: %(default)s)")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="qpg.KEY=VALUE",
                          help="measure the trained circuits another way, repeatable: qpg.backend, qpg.device, "
                          "qpg.shots, qpg.readout_error, qpg.depolarizing, qpg.engine (results under "
                          "RUN/evaluation/SPLIT+KEY=VALUE...)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare = commands.add_parser("compare", help="side-by-side table of several runs",
                                  description="Mode, trainable parameters and metrics (mean ± sd over cases) of runs.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    compare.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                         help="evaluation split to read (default: %(default)s)")
    export = commands.add_parser("export", help="write a run's merged classical network (no quantum code needed)",
                                 description="Merge the generated weights into a plain MONAI network and write it as "
                                 "TorchScript, ONNX or a state_dict, with hqctf-model.json (labels, preprocessing, "
                                 "spacing, orientation, patch size).")
    _add_run_arguments(export)
    export.add_argument("-o", "--output", default=None, metavar="DIR", help="(default: RUN/export-FORMAT)")
    predict = commands.add_parser("predict", help="label new patients: NIfTI on the input grid, DICOM RTSTRUCT",
                                  description="Predict a NIfTI file, a folder of NIfTI images (e.g. imagesTs) or a "
                                  "DICOM CT series, or PNG slices (images/*.png), with a run folder or an exported "
                                  "model. Writes <case>.nii.gz on the input's grid (<case>.png for PNG), "
                                  "<case>_RTSTRUCT.dcm (and with --seg <case>_SEG.dcm) for DICOM input, volumes.csv "
                                  "(volume_cc, or area_px for PNG, and a flag: empty, or below/above the training "
                                  "labels' range halved/doubled), overlays/ and predict.log.")
    predict.add_argument("model", metavar="MODEL", help="run folder or export folder (hqctf-model.json)")
    predict.add_argument("-i", "--input", required=True, metavar="INPUT",
                         help="NIfTI file or folder, DICOM folder, or folder with images/*.png")
    predict.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (not inside INPUT)")
    predict.add_argument("--overwrite", action="store_true", help="replace results already in OUTDIR")
    predict.add_argument("--no-rtstruct", action="store_true", help="DICOM input: skip the RTSTRUCT")
    predict.add_argument("--holes", default="keyhole", choices=("keyhole", "nested"),
                         help="RTSTRUCT holes: joined to their region's contour by a cut, read alike by every "
                         "reader, or as contours of their own, for even-odd readers only (default: %(default)s)")
    predict.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"),
                         help="run the network with torch (laid out for the CPU) or onnxruntime (the onnx extra) "
                         "(default: %(default)s)")
    predict.add_argument("--seg", action="store_true", help="DICOM input: also write <case>_SEG.dcm (DICOM-SEG)")
    predict.add_argument("--checkpoint", default="best", choices=("best", "last"), help="run folders: (default: %(default)s)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")


def _relaunch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run this same command under torchrun with ``--nproc`` processes (``--nproc`` itself removed)."""
    import subprocess

    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            rest.append(item)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "hqctf", *rest]
    return subprocess.call(command)


def _run_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import shlex
    from pathlib import Path

    from .bench import load_bench_config, run_bench
    from .bench.plan import check_name, parse_shard

    shard = parse_shard(args.shard)
    config = load_bench_config(args.config, args.overrides)
    name = check_name(args.name) if args.name else Path(args.config).name.removesuffix(".yaml")
    folder = args.output or f"runs/bench-{name}"
    report = run_bench(config, folder, shard, progress=not args.no_progress, name=name, doc=args.out,
                       command=shlex.join(["hqctf", *argv]))
    print(f"{folder}: report in {report}" if report else f"{folder}: shard {args.shard} done; other shards unfinished")
    return 0


def _run_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.command == "bench":
        return _run_bench(args, argv)
    if args.command == "circuits":
        return _run_circuits(args)
    if args.command == "compare":
        from .train.evaluate import compare_runs, markdown_table

        print(markdown_table(compare_runs(args.runs, split=args.split)), end="")
        return 0
    if args.command == "predict":
        from rich.console import Console

        from .infer.predict import predict_folder

        rows = predict_folder(args.model, args.input, args.output, overwrite=args.overwrite,
                              rtstruct=not args.no_rtstruct, progress=not args.no_progress, checkpoint=args.checkpoint,
                              holes=args.holes, seg=args.seg, console=Console(), runtime=args.runtime)
        flagged = sum(1 for r in rows if r["flag"])
        print(f"wrote {len({r['case'] for r in rows})} case(s) to {args.output}; volumes in "
              f"{Path(args.output) / 'volumes.csv'} ({flagged} flagged)")
        return 0
    if args.command == "export":
        from .infer.export import MODEL_JSON, export_run

        out = args.output or Path(args.run) / f"export-{args.format}"
        model = export_run(args.run, out, format=args.format, checkpoint=args.checkpoint)
        print(f"wrote {model} and {model.parent / MODEL_JSON}")
        return 0
    if args.command == "evaluate":
        from .train.evaluate import evaluate_run, evaluation_folder, mean_sd

        _, summary = evaluate_run(args.run, data=args.data, split=args.split, checkpoint=args.checkpoint,
                                  progress=not args.no_progress, overrides=args.overrides)
        mean = summary["mean"]
        print(f"{args.run}: {args.split} ({mean['n']} cases) Dice {mean_sd(mean['dice_mean'], mean['dice_sd'])}, "
              f"HD95 {mean_sd(mean['hd95_mean'], mean['hd95_sd'], 2)} mm; tables in "
              f"{evaluation_folder(args.run, args.split, args.overrides)}")
        return 0
    if args.nproc > 1:
        return _relaunch(args, argv)
    from dataclasses import replace

    from .train.config import ConfigError, TrainConfig, apply_overrides, build_config, load_config
    from .train.trainer import resume_config, train_run

    if args.resume:
        config = resume_config(args.resume)
        keys = [item.partition("=")[0] for item in args.overrides]
        if any(key != "optim.epochs" for key in keys):
            raise ConfigError(f"--set {next(k for k in keys if k != 'optim.epochs')}: --resume continues the run as "
                              "it was configured; only optim.epochs may change (to train longer)")
        if args.overrides:
            config = replace(build_config(TrainConfig, apply_overrides(config.to_dict(), args.overrides)).check(),
                             out=config.out)
    else:
        if args.config is None:
            raise SystemExit("hqctf train: error: give CONFIG.yaml or --resume RUN")
        from .train.bundled import resolve_config_path

        config = load_config(resolve_config_path(args.config), args.overrides)
    summary = train_run(config, resume=bool(args.resume), progress=not args.no_progress)
    print(f"{config.out}: best {summary['best_metric']} {abs(summary['best_score']):.4f} at epoch "
          f"{summary['best_epoch']}; trainable {summary['trainable_parameters']:,} of {summary['total_parameters']:,}")
    return 0


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
    split = verbs.add_parser("split", help="write deterministic k-fold (and test) splits as splits.json",
                             description="Write nnU-Net-style splits (a list of {train, val[, test]} per fold); "
                             "a patient's cases never straddle train/val/test.")
    split.add_argument("path", metavar="PATH", help="dataset folder")
    split.add_argument("-o", "--output", default="splits.json", metavar="FILE", help="(default: %(default)s)")
    split.add_argument("--folds", type=_positive_int, default=5, help="number of folds (default: %(default)s)")
    split.add_argument("--test-fraction", type=float, default=0.0,
                       help="share of cases held out of every fold as a test set (default: %(default)s)")
    split.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_source_options(split)


def _open(args: argparse.Namespace, path: str):
    from .data.formats import open_source

    labels = dict(args.label) or None
    aliases: dict[str, list[str]] = {}
    for name, pattern in args.alias:
        aliases.setdefault(name, []).append(pattern)
    return open_source(path, format=args.format, labels=labels, aliases=aliases, missing=args.missing,
                       label_file=args.label_file)


def _run_data(args: argparse.Namespace) -> int:
    from .data.errors import DataError

    if args.verb == "inspect":
        from rich.console import Console

        from .data.inspect import inspect_source, render

        source = _open(args, args.path)
        reports = inspect_source(source)
        render(source, reports, Console(width=None if sys.stdout.isatty() else 10_000))  # piped: never truncate
        return 2 if any(r.problems for r in reports) else 0
    if args.verb == "split":
        from .data.splits import make_splits, save_splits

        source = _open(args, args.path)
        ids = source.case_ids()
        patients = [source.read(i).patient_id for i in ids]
        try:
            splits = make_splits(ids, patients, n_folds=args.folds, test_fraction=args.test_fraction, seed=args.seed)
        except ValueError as exc:
            raise DataError(f"{args.path}: {exc}") from None
        save_splits(args.output, splits)
        sizes = ", ".join(f"fold {i}: {len(f['train'])} train / {len(f['val'])} val" for i, f in enumerate(splits))
        test = f"; {len(splits[0]['test'])} test" if "test" in splits[0] else ""
        print(f"wrote {args.output}: {sizes}{test}")
        return 0
    from .data.nnunet import write_nnunet_dataset

    source = _open(args, args.input)
    out = write_nnunet_dataset(source, args.output, labels=source.labels,
                               description=f"converted by hqctf from {source.root} ({source.format})")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hqctf`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command in ("train", "evaluate", "compare", "export", "predict", "bench", "circuits"):
        from .data.errors import DataError
        from .train.config import ConfigError

        try:
            return _run_train(args, argv)
        except (ConfigError, DataError, OSError, FloatingPointError) as exc:
            verb = f" {args.verb}" if args.command == "circuits" else ""
            print(f"hqctf {args.command}{verb}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"hqctf {args.command}: interrupted", file=sys.stderr)
            return 130
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

        from .train.config import ConfigError

        epochs = {} if args.epochs is None else {"epochs": args.epochs}
        try:
            run_demo(args.out, seed=args.seed, data_dir=args.data, **epochs)
        except (DataError, ConfigError, OSError, FloatingPointError) as exc:
            print(f"hqctf demo: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("hqctf demo: interrupted", file=sys.stderr)
            return 130
    return 0
