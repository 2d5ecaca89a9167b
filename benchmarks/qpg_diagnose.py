"""Why QPG learns or not, on the demo's former setting: generator variants and controls over seeds, with diagnostics.

Every variant trains the same 2D UNet++ on fixed axial slices of the embedded OpenKBP sample (benchmarks/slices.py:
same slices, data order, steps and seed for every variant; `hqctf demo`'s setting until 2026-12-03, when the demo
moved onto the training pipeline) and is scored on the held-out case's slices. Per variant and seed it records validation Dice,
final loss, training time, the relative weight change per optimiser step (||dW|| / ||W|| over all generated or
classical conv weights), gradient norms per parameter group at the first step, and per-layer signals at
initialisation and after training (near-zero basis states, effective rank, top singular share, weight std
against the classical init's). ``--ceiling`` adds the representation ceiling: every conv of the trained classical
network fitted by each generator design, next to a truncated SVD of equal size, and the validation Dice of the
fitted networks.

    python benchmarks/qpg_diagnose.py --seeds 0,1,2 --ceiling --out docs/benchmarks.md
    python benchmarks/qpg_diagnose.py --seeds 0 --variants classical,qpg,qpg-L8 --name "generator variants" \
        --image docs/img/qpg-diagnose-variants.png --out docs/benchmarks.md   # a section of its own
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slices  # noqa: E402
from report import machine, replace_section, save_figure  # noqa: E402
from slices import batch_schedule, train  # noqa: E402

from hqctf.data import sample_dataset_dir  # noqa: E402
from hqctf.qpg import LowRankConfig, QPGConfig, TargetConfig, count_parameters, merge, wrap  # noqa: E402
from hqctf.qpg import diagnostics as diag  # noqa: E402
from hqctf.train.config import ModelConfig  # noqa: E402
from hqctf.train.models import light_features, parameter_groups  # noqa: E402

HEADING = "## QPG diagnostics on the demo (benchmarks/qpg_diagnose.py)"
#: the generator before this study (L=2, qubit-probability transform, tanh mapping [16], balanced common row)
V0 = QPGConfig(n_layers=2, transform="scaled", mapping_hidden=(16,), mapping_activation="tanh", common="balance",
               gain="layer", min_compression=0)
V0_LRS = {"angles": 1e-2, "mapping": 1e-2, "gain": 1e-2}
#: name -> (generator config, None for classical or "light", learning rates per group, description)
VARIANTS: dict[str, tuple[TargetConfig | str | None, dict[str, float], str]] = {
    "classical": (None, {}, "every weight trained"),
    "qpg": (QPGConfig(), slices.QPG_LRS, "QPG, the new defaults"),
    "hyper": (QPGConfig(inputs="embedding"), slices.QPG_LRS,
              "control: learned per-channel embedding (as many numbers as angles) in place of the circuit"),
    "hyper-5e-2": (QPGConfig(inputs="embedding"), {**slices.QPG_LRS, "embedding": 5e-2}, "hyper, embedding at lr 5e-2"),
    "hyper-1e-1": (QPGConfig(inputs="embedding"), {**slices.QPG_LRS, "embedding": 1e-1}, "hyper, embedding at lr 1e-1"),
    "frozen": (QPGConfig(inputs="frozen"), slices.QPG_LRS, "control: random circuits never trained"),
    "hyperprob": (QPGConfig(inputs="softmax"), slices.QPG_LRS,
                  "control: softmax of the same embedding's projection (a classical probability vector, full rank)"),
    "amplitude": (QPGConfig(transform="amplitude"), slices.QPG_LRS,
                  "upper bound: signed amplitudes (simulator only, not measurable)"),
    "qpg-mapping-lr": (QPGConfig(), {**slices.QPG_LRS, "mapping": 1e-2, "gain": 1e-2},
                       "new defaults, mapping and gains at lr 1e-2"),
    "qpg-probs": (QPGConfig(transform="scaled"), slices.QPG_LRS, "new defaults with q = 2^n p - 1"),
    "qpg-balance": (QPGConfig(common="balance"), slices.QPG_LRS, "new defaults with the balanced common row"),
    "qpg-learned": (QPGConfig(common="learned"), slices.QPG_LRS,
                    "new defaults with a learned common row (full rank possible; one more row per layer)"),
    "qpg-L2": (QPGConfig(n_layers=2), slices.QPG_LRS, "new defaults with L = 2"),
    "qpg-L8": (QPGConfig(n_layers=8), slices.QPG_LRS, "new defaults with L = 8 (over the 1/10 budget)"),
    "qpg-L16": (QPGConfig(n_layers=16), slices.QPG_LRS, "new defaults with L = 16 (over the 1/10 budget)"),
    "qpg-chunk2": (QPGConfig(chunk=2), slices.QPG_LRS, "new defaults, two weights per basis state (one qubit fewer)"),
    "qpg-log": (QPGConfig(transform="log"), slices.QPG_LRS, "new defaults with the log transform"),
    "qpg-qt": (QPGConfig(transform="qt"), slices.QPG_LRS, "new defaults with the qt transform"),
    "qpg-mlp": (QPGConfig(mapping_hidden=(16,), mapping_activation="gelu"), slices.QPG_LRS,
                "new defaults with a GELU mapping network [16]"),
    "qpg-layer-gain": (QPGConfig(gain="layer"), slices.QPG_LRS, "new defaults with one gain per layer"),
    "qpg-hyperfan": (QPGConfig(init="hyperfan"), slices.QPG_LRS, "new defaults with hyperfan initialisation"),
    "qpg-every-layer": (QPGConfig(min_compression=0), slices.QPG_LRS,
                        "new defaults, every layer generated (first conv and 1x1 head too)"),
    "residual": (QPGConfig(residual=True), slices.QPG_LRS,
                 "its own mode, not QPG: W = frozen random W0 + generated update"),
    "qpg-angles-1e-2": (QPGConfig(), {**slices.QPG_LRS, "angles": 1e-2}, "new defaults, angles at lr 1e-2"),
    "qpg-angles-3e-2": (QPGConfig(), {**slices.QPG_LRS, "angles": 3e-2}, "new defaults, angles at lr 3e-2"),
    "qpg-v0": (V0, V0_LRS, "the generator before this study"),
    "lowrank": (LowRankConfig(r=3), {}, "control: rank-3 factorised weights (46.6k trainable)"),
    "light": ("light", {}, "control: the same UNet++ narrowed to QPG's trainable count"),
}


def run_variant(name: str, data: slices.SliceData, seed: int, steps: int) -> dict:
    """Train one variant on the fixed slices and collect its diagnostics."""
    config, lrs, _ = VARIANTS[name]
    features = slices.FEATURES
    if config == "light":
        budget = count_parameters(wrap(slices.build_model(len(data.names), slices.FEATURES, seed), QPGConfig()))[0]
        features = light_features(ModelConfig(name="unetpp", spatial_dims=2, features=slices.FEATURES), len(data.names),
                                  budget)
        config = None
    model = slices.build_model(len(data.names), features, seed)
    if config is not None:
        wrap(model, config)
    trainable, total = count_parameters(model)
    signals_init = [dataclasses.asdict(s) for s in diag.layer_signals(model)] if config is not None else []
    optimizer = torch.optim.AdamW(parameter_groups(model, slices.CLASSICAL_LR, slices.WEIGHT_DECAY, lrs))
    schedule = batch_schedule(len(data.x), steps, 8, seed)
    changes: list[float] = []
    grads: dict[str, float] = {}
    previous = [diag.current_weights(model)]

    def on_step(step: int, _loss: float) -> None:
        if step == 0:
            grads.update(diag.grad_norms(model))
        current = diag.current_weights(model)
        changes.append(diag.relative_change(previous[0], current))
        previous[0] = current

    started = time.perf_counter()
    losses = train(model, optimizer, data.x, data.y, schedule, on_step)
    seconds = time.perf_counter() - started
    signals_end = [dataclasses.asdict(s) for s in diag.layer_signals(model)] if config is not None else []
    plain = merge(model) if config is not None else model
    _, dice, _ = slices.evaluate(plain, data)
    return {"variant": name, "seed": seed, "trainable": trainable, "total": total, "val_dice": dice,
            "final_loss": float(np.mean(losses[-10:])), "train_seconds_with_probes": seconds,
            "change_first12": float(np.mean(changes[:12])), "change_last50": float(np.mean(changes[-50:])),
            "changes": changes, "losses": losses, "grad_norms": grads, "signals_init": signals_init,
            "signals_end": signals_end}


def ceiling(data: slices.SliceData, steps: int, fit_steps: int) -> dict:
    """Fit every conv of a classically trained network with the old and new generators."""
    model = slices.build_model(len(data.names), slices.FEATURES, 0)
    optimizer = torch.optim.AdamW(parameter_groups(model, slices.CLASSICAL_LR, slices.WEIGHT_DECAY, {}))
    train(model, optimizer, data.x, data.y, batch_schedule(len(data.x), steps, 8, 0))
    _, trained_dice, _ = slices.evaluate(model, data)
    out = {"classical_dice": trained_dice, "designs": {}}
    for name, config in (("qpg", QPGConfig()), ("qpg-v0", dataclasses.replace(V0, min_compression=1.0)),
                         ("amplitude", QPGConfig(transform="amplitude"))):
        fitted, table = diag.representation_ceiling(model, config, steps=fit_steps)
        _, dice, _ = slices.evaluate(fitted, data)
        out["designs"][name] = {"fitted_dice": dice, "layers": [dataclasses.asdict(r) for r in table],
                                "pooled_error": diag.energy_weighted(table, "generator_error"),
                                "pooled_svd_error": diag.energy_weighted(table, "svd_error")}
    return out


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(dict.fromkeys(r["variant"] for r in results))
    for i, name in enumerate(names):
        dice = [r["val_dice"] for r in results if r["variant"] == name]
        a.scatter([i] * len(dice), dice, color="C0")
        a.bar(i, float(np.mean(dice)), color="C0", alpha=0.3)
        runs = [r for r in results if r["variant"] == name]
        b.plot(np.mean([r["changes"] for r in runs], axis=0), label=name)
    a.set_xticks(range(len(names)), names, rotation=45, ha="right")
    a.set_ylabel("validation Dice (per seed)")
    b.set_yscale("log")
    b.set_xlabel("optimiser step")
    b.set_ylabel("||ΔW|| / ||W|| per step (mean over seeds)")
    b.legend(fontsize=7)
    save_figure(fig, path)


def heading(name: str | None) -> str:
    """The section's heading: the main one, or a named one beside it (``--name``)."""
    return HEADING if name is None else HEADING.replace(" (benchmarks/", f", {name} (benchmarks/")


def _section(results: list[dict], ceil: dict | None, command: str, steps: int, seconds: float, image: str,
             title: str) -> str:
    m = machine()
    lines = [title, "", f"Command: `{command}`  ", f"Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), no GPU; torch {m['torch']}, monai {m['monai']}  ",
             f"Wall time: {seconds / 60:.1f} min (this invocation: runs found in the results file are not retrained)", "",
             "The fixed-slice setting (benchmarks/slices.py; `hqctf demo`'s until 2026-12-03): 2D UNet++ features "
             f"(16, 16, 32, 64, 128, 16) on the embedded OpenKBP sample (5 training cases, 80 slices, 64 x 64 crops), "
             f"{steps} AdamW steps of batch 8, scored on the validation case pt_34 (the held-out patient; no test "
             "patient is used here). Weight change is ||ΔW|| / ||W|| over all "
             "generated (QPG) or conv (classical) weights per optimiser step.", "",
             "| variant | what | trainable | val Dice per seed | mean ± sd | final loss | ΔW/W first 12 steps | ΔW/W last 50 |",
             "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        dice = [r["val_dice"] for r in runs]
        lines.append(f"| {name} | {VARIANTS[name][2]} | {runs[0]['trainable']:,} | "
                     + ", ".join(f"{d:.3f}" for d in dice) + f" | {_mean_sd(dice)} | "
                     f"{statistics.mean(r['final_loss'] for r in runs):.3f} | "
                     f"{statistics.mean(r['change_first12'] for r in runs):.3f} | "
                     f"{statistics.mean(r['change_last50'] for r in runs):.4f} |")
    lines += ["", f"![Dice per variant and weight change per step]({image})", "",
              "Signals, first seed, mean over generated layers (init → end): near-zero basis states (p < 1 % of "
              "uniform), effective rank / max rank, top singular value's energy share, weight std / classical init std; "
              "gradient norms per group at the first step.", "",
              "| variant | near-zero | eff. rank ratio | top share | std ratio | grad norms (step 1) |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["variant"] for r in results):
        run = next(r for r in results if r["variant"] == name)
        grads = ", ".join(f"{k} {v:.2g}" for k, v in run["grad_norms"].items())
        if not run["signals_init"]:
            lines.append(f"| {name} | – | – | – | – | {grads} |")
            continue

        def pair(key: str, fn=lambda s, k: s[k]) -> str:
            start, end = (np.nanmean([fn(s, key) for s in run[f"signals_{w}"]]) for w in ("init", "end"))
            return "–" if np.isnan(start) else f"{start:.2f} → {end:.2f}"

        ratio = lambda s, _k: s["effective_rank"] / s["max_rank"]  # noqa: E731
        lines.append(f"| {name} | {pair('near_zero')} | {pair('rank', ratio)} | {pair('top_share')} | "
                     f"{pair('std_ratio')} | {grads} |")
    if ceil is not None:
        lines += ["", f"Representation ceiling: every generated conv of the classically trained network (validation "
                  f"Dice {ceil['classical_dice']:.3f}) fitted by least squares; relative error pooled over layers by "
                  "weight energy, next to a truncated SVD with the same parameter count per layer.", "",
                  "| design | pooled error | pooled SVD error | layers where the generator beats SVD | val Dice of the fitted net |",
                  "|---|---|---|---|---|"]
        for name, d in ceil["designs"].items():
            wins = sum(r["generator_error"] < r["svd_error"] for r in d["layers"])
            lines.append(f"| {name} | {d['pooled_error']:.3f} | {d['pooled_svd_error']:.3f} | {wins}/{len(d['layers'])} | "
                         f"{d['fitted_dice']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=slices.DEFAULT_STEPS)
    parser.add_argument("--ceiling", action="store_true", help="also fit the trained classical network's weights")
    parser.add_argument("--fit-steps", type=int, default=600, help="Adam steps per layer for the ceiling fits")
    parser.add_argument("--json", type=Path, default=Path("runs/qpg-diagnose/results.json"),
                        help="results file; finished (variant, seed) pairs found in it are not rerun")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write")
    parser.add_argument("--image", type=Path, default=Path("docs/img/qpg-diagnose.png"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 steps, tiny ceiling")
    parser.add_argument("--name", default=None,
                        help="write a section of its own, headed with this name (default: the main section)")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    steps, fit_steps = (3, 2) if args.quick else (args.steps, args.fit_steps)
    started = time.perf_counter()
    done = json.loads(args.json.read_text()) if args.json.is_file() else {"runs": [], "ceiling": None}
    key = lambda r: (r["variant"], r["seed"], r.get("steps"))  # noqa: E731
    have = {key(r) for r in done["runs"]}
    for seed in seeds:
        data = slices.SliceData.load(sample_dataset_dir(), seed)
        for name in names:
            if (name, seed, steps) in have:
                continue
            result = run_variant(name, data, seed, steps) | {"steps": steps}
            print(f"{name} seed {seed}: val Dice {result['val_dice']:.3f}, loss {result['final_loss']:.3f}, "
                  f"ΔW/W {result['change_first12']:.3f}", flush=True)
            done["runs"].append(result)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(done))
            tmp.replace(args.json)
    if args.ceiling and done.get("ceiling") is None:
        done["ceiling"] = ceiling(slices.SliceData.load(sample_dataset_dir(), 0), steps, fit_steps)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(done))
        tmp.replace(args.json)
    results = [r for r in done["runs"] if r["variant"] in names and r["seed"] in seeds and r.get("steps") == steps]
    _plot(results, args.image)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/qpg_diagnose.py", *(argv or sys.argv[1:])])
    image = os.path.relpath(args.image, args.out.parent) if args.out else str(args.image)
    section = _section(results, done.get("ceiling") if args.ceiling else None, command, steps,
                       time.perf_counter() - started, image, heading(args.name))
    print(section)
    if args.out:
        replace_section(args.out, heading(args.name), section)


if __name__ == "__main__":
    main()
