"""One training step (forward, backward, AdamW update), classical vs QPG on every conv, on MONAI networks.

Cases: 2D ``BasicUNetPlusPlus`` (batch 8, 128x128) and 3D ``BasicUNet`` (batch 1, 64^3), both with default
features, 8 output channels and ``DiceCELoss(to_onehot_y=True, softmax=True)`` on random data (fixed seed).
Peak memory: each (case, mode) runs in a fresh subprocess (warm-up step, one more step). Step times: one
subprocess per case builds both modes and alternates their timed steps (``--repeats`` each after the warm-up,
median reported), so both modes see the same machine conditions. For QPG the weight generation that the
forward pre-hook does is timed on its own: ``generate(generators(model))`` forward, then the backward of the surrogate loss
sum_l (w_l * g_l).sum() with fixed random g_l shaped like each weight (the same graph the real backward
traverses from the weight gradients down to angles and mapping networks).

On a shared machine, ``--wait-idle S`` makes each timed step wait (up to S s) until other processes are
idle, and a step disturbed by them anyway is redone (``--retries``); the cores other processes used during
the kept steps are reported. ``--profile N`` adds torch.profiler's top N ops of one QPG step for each case
that misses the step-time target. ``--quick`` uses tiny networks (features 4..16) at 32^2 / 32^3, batch 1.

    python benchmarks/step.py --wait-idle 20 --retries 2 --profile 15 --out docs/benchmarks.md  # full run
    python benchmarks/step.py --quick --out /tmp/b.md                                          # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import replace_section  # noqa: E402

HEADING = "## Training step (benchmarks/step.py)"
RSS_TARGET, TIME_TARGET = 1.5, 1.3
FOREIGN_LIMIT = 0.2  # cores other processes may use during a timed step before it is redone


def _cases(quick: bool) -> dict[str, dict]:
    """Case name -> network builder arguments and input shape."""
    if quick:  # tiny sizes so the smoke test runs in seconds; same code path
        features = (4, 4, 8, 8, 16, 4)
        return {
            "unetpp2d": dict(net="BasicUNetPlusPlus", dims=2, batch=1, size=32, features=features),
            "unet3d": dict(net="BasicUNet", dims=3, batch=1, size=32, features=features),
        }
    return {
        "unetpp2d": dict(net="BasicUNetPlusPlus", dims=2, batch=8, size=128, features=None),
        "unet3d": dict(net="BasicUNet", dims=3, batch=1, size=64, features=None),
    }


def _describe(case: dict) -> str:
    shape = "x".join([str(case["size"])] * case["dims"])
    feats = "default features" if case["features"] is None else f"features {tuple(case['features'])}"
    return f"{case['net']} {case['dims']}D, batch {case['batch']}, {shape}, {feats}"


def _rss_kib() -> int:
    """Current resident set size in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def _setup(case: dict, mode: str, threads: int, seed: int):
    """Build one (case, mode): returns (model, step function returning the loss, trainable, total)."""
    import torch
    from monai.losses import DiceCELoss
    from monai.networks import nets

    from hqctf.qpg import QPGConfig, count_parameters, wrap

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    kwargs = dict(spatial_dims=case["dims"], in_channels=1, out_channels=8)
    if case["features"] is not None:
        kwargs["features"] = tuple(case["features"])
    model = getattr(nets, case["net"])(**kwargs)
    if mode == "qpg":
        wrap(model, QPGConfig())
    model.train()
    trainable, total = count_parameters(model)
    shape = (case["batch"], 1, *[case["size"]] * case["dims"])
    gen = torch.Generator().manual_seed(seed)  # the same data for both modes
    x = torch.randn(shape, generator=gen)
    y = torch.randint(0, 8, shape, generator=gen)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if isinstance(out, (list, tuple)):  # UNet++ returns its deep-supervision outputs; train on the first
            out = out[0]
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    step.optimizer = opt
    return model, step, trainable, total


def memory_worker(case: dict, mode: str, warmup: int, threads: int, seed: int) -> dict:
    """Peak memory of one (case, mode) in a fresh process: warm-up step(s) and one more step."""
    model, step, trainable, total = _setup(case, mode, threads, seed)
    rss_before = _rss_kib()
    losses = [step() for _ in range(warmup + 1)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dict(trainable=trainable, total=total, rss_before_kib=rss_before, peak_kib=peak, losses=losses)


def timing_worker(case: dict, warmup: int, repeats: int, threads: int, seed: int,
                  wait_idle: float = 0.0, retries: int = 0) -> dict:
    """Time classical and QPG steps of one case alternately in this process, then QPG weight generation alone.

    Rounds alternate which mode goes first, so slow drifts and other processes' load hit both modes alike.
    With ``wait_idle`` > 0 each timed call first waits up to that many seconds for other processes to go
    idle; a call during which they used >= FOREIGN_LIMIT cores is redone (at most ``retries`` times; the
    last attempt is kept).
    """
    import torch

    from hqctf.qpg.bank import generate, generators

    def guarded(fn):
        for attempt in range(retries + 1):
            if wait_idle > 0:
                _wait_for_idle(wait_idle)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            b0, c0, t0 = _busy_s(), time.process_time(), time.perf_counter()
            out = fn()
            b1, c1, t1 = _busy_s(), time.process_time(), time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            foreign = max(0.0, (b1 - b0) - (c1 - c0)) / (t1 - t0)
            if foreign < FOREIGN_LIMIT or attempt == retries or wait_idle <= 0:
                kernel = (r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt)
                return out, t1 - t0, c1 - c0, foreign, attempt, kernel

    modes = ("classical", "qpg")
    built = {mode: _setup(case, mode, threads, seed) for mode in modes}
    res = {mode: dict(step_s=[], step_cpu_s=[], step_sys_s=[], step_minflt=[], foreign_cores=[], redone=0, losses=[])
           for mode in modes}
    for mode in modes:
        for _ in range(warmup):
            res[mode]["losses"].append(built[mode][1]())
    for i in range(repeats):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            loss, wall, cpu, foreign, again, (sys_s, faults) = guarded(built[mode][1])
            r = res[mode]
            r["step_sys_s"].append(sys_s)
            r["step_minflt"].append(faults)
            r["losses"].append(loss)
            r["step_s"].append(wall)
            r["step_cpu_s"].append(cpu)
            r["foreign_cores"].append(foreign)
            r["redone"] += again

    model, step = built["qpg"][0], built["qpg"][1]
    gens = generators(model)
    with torch.no_grad():
        shapes = {k: w.shape for k, w in generate(gens).items()}
    gen = torch.Generator().manual_seed(seed + 1)
    g = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}

    def generation() -> tuple[float, float]:
        step.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        weights = generate(gens)
        t1 = time.perf_counter()
        surrogate = sum((w * g[k]).sum() for k, w in weights.items())
        t2 = time.perf_counter()
        surrogate.backward()
        t3 = time.perf_counter()
        return t1 - t0, t3 - t2

    q = res["qpg"]
    q.update(gen_fwd_s=[], gen_bwd_s=[], gen_foreign_cores=[])
    for _ in range(warmup):
        generation()
    for _ in range(repeats):
        (fwd, bwd), _, _, foreign, again, _ = guarded(generation)
        q["gen_fwd_s"].append(fwd)
        q["gen_bwd_s"].append(bwd)
        q["gen_foreign_cores"].append(foreign)
        q["redone"] += again
    q["qpg_layers"] = len(gens)
    # floats in one (channels, basis states, hidden) activation of every mapping network: autograd keeps a
    # few such tensors per generation until the backward
    q["mapping_hidden_floats"] = sum(g.rows * g.n_states * sum(g.config.mapping_hidden) for g in gens.values())
    res["threads"] = torch.get_num_threads()
    return res


def profile_step(case: dict, threads: int, seed: int, top: int) -> str:
    """torch.profiler table (top ops by self CPU time) of one QPG step after a warm-up step."""
    import torch

    from hqctf.qpg import bank

    _, step, _, _ = _setup(case, "qpg", threads, seed)
    step()
    original = bank.generate

    def labelled(gens):  # label the generation forward that the model's pre-hook runs
        with torch.profiler.record_function("qpg.generate (forward)"):
            return original(gens)

    bank.generate = labelled
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
    finally:
        bank.generate = original
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def _load() -> str:
    """1-minute load average."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def _machine() -> dict:
    from importlib.metadata import version  # no torch/monai import in the parent: keeps --quick fast

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return dict(
        nproc=len(os.sched_getaffinity(0)),
        cpu=cpu,
        ram_gib=mem_kib / 2**20,
        torch=version("torch"),
        monai=version("monai"),
        python=platform.python_version(),
    )


def _busy_s() -> float:
    """CPU seconds spent busy by the whole machine since boot (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _wait_for_idle(max_wait: float, threshold: float = 0.2, window: float = 1.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores; returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait:
        b0 = _busy_s()
        time.sleep(window)
        if (_busy_s() - b0) / window < threshold:
            break
    return time.perf_counter() - start


def _run_worker(name: str, mode: str, args: argparse.Namespace, repeats: int) -> dict:
    """Run ``--worker NAME MODE`` (MODE: classical, qpg for memory; timing) in a fresh subprocess."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, mode, "--repeats", str(repeats),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--seed", str(args.seed),
           "--wait-idle", str(args.wait_idle), "--retries", str(args.retries)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name}/{mode} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def render(results: dict, cases: dict, machine: dict, command: str, args: argparse.Namespace,
           repeats: dict[str, int], wall: float, profiles: dict[str, str], load: tuple[str, str]) -> str:
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        HEADING,
        "",
        "One optimizer step (forward, backward, AdamW update), classical training against QPG on every",
        "Conv/ConvTranspose (`QPGConfig()` defaults), loss `DiceCELoss(to_onehot_y=True, softmax=True)` on random",
        "input and random integer labels (fixed seed; UNet++ trains on its first output), "
        f"{args.warmup} untimed warm-up step(s) per mode.",
        "Step times: per case, one process builds both modes and times their steps alternately (rounds",
        "alternate which mode goes first), so both see the same machine conditions; median of the timed steps.",
        "Generation share = (median time of the `generate(generators(model))` forward + median time of the",
        "backward of a surrogate loss sum_l (w_l * g_l).sum() with fixed random g_l shaped like each weight) /",
        "median QPG step. That backward walks the same graph the step's backward walks below the generated",
        "weights (mapping networks, adjoint simulator); it is timed in isolation, in the same process, after the",
        "steps, so it excludes any overlap or cache effects inside a real step.",
        "Memory: each (case, mode) runs in its own fresh subprocess (warm-up step(s) plus one step). Peak RSS =",
        "`ru_maxrss`; \"growth\" = `ru_maxrss` minus the RSS right before the first step, i.e. what training",
        "steps add on top of the built model, data and optimizer.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_gib']:.1f} GiB RAM, no GPU; "
        f"torch {machine['torch']}, monai {machine['monai']}, Python {machine['python']}; "
        f"torch threads = {args.threads} (the machine's core count). Date: {date}. Total wall time {wall:.0f} s; "
        f"1-min load average {load[0]} at the start, {load[1]} at the end (the machine may be shared; load well "
        f"above {args.threads} means contended timings).",
        "",
        "| case | timed steps | classical step s | QPG step s | QPG / classical | generation share of QPG step "
        "(fwd + bwd s) | trainable classical | trainable QPG | peak RSS growth MiB classical | "
        "peak RSS growth MiB QPG | growth QPG / classical | peak RSS MiB classical | peak RSS MiB QPG |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdict_time, verdict_mem = [], []
    for name, case in cases.items():
        c, q = results[name]["classical"], results[name]["qpg"]
        tc, tq = statistics.median(c["step_s"]), statistics.median(q["step_s"])
        gf, gb = statistics.median(q["gen_fwd_s"]), statistics.median(q["gen_bwd_s"])
        gc = c["peak_kib"] - c["rss_before_kib"]
        gq = q["peak_kib"] - q["rss_before_kib"]
        ratio, mratio = tq / tc, gq / max(gc, 1)
        lines.append(
            f"| {_describe(case)} | {repeats[name]} | {tc:.2f} | {tq:.2f} | {ratio:.2f} | "
            f"{100 * (gf + gb) / tq:.0f}% ({gf:.2f} + {gb:.2f}) | {c['trainable']:,} | {q['trainable']:,} "
            f"({100 * q['trainable'] / c['trainable']:.1f}%) | {_mib(gc)} | {_mib(gq)} | {mratio:.2f} | "
            f"{_mib(c['peak_kib'])} | {_mib(q['peak_kib'])} |"
        )
        spread = (f"timed classical steps {min(c['step_s']):.2f}-{max(c['step_s']):.2f} s, "
                  f"QPG steps {min(q['step_s']):.2f}-{max(q['step_s']):.2f} s")
        verdict_time.append(
            f"- {case['net']} {case['dims']}D: QPG/classical step time {ratio:.2f}, target <= {TIME_TARGET}: "
            f"{'met' if ratio <= TIME_TARGET else 'NOT met'}. QPG - classical = {tq - tc:.2f} s against "
            f"{gf + gb:.2f} s of weight generation ({spread}). Median per step, classical vs QPG: process CPU time "
            f"(all threads) {statistics.median(c['step_cpu_s']):.2f} vs {statistics.median(q['step_cpu_s']):.2f} s, "
            f"of it kernel (system) time {statistics.median(c['step_sys_s']):.2f} vs "
            f"{statistics.median(q['step_sys_s']):.2f} s, minor page faults "
            f"{statistics.median(c['step_minflt']):,.0f} vs {statistics.median(q['step_minflt']):,.0f}."
        )
        hidden_mib = q["mapping_hidden_floats"] * 4 / 2**20
        verdict_mem.append(
            f"- {case['net']} {case['dims']}D: QPG/classical peak RSS growth {mratio:.2f} "
            f"(absolute peaks {q['peak_kib'] / max(c['peak_kib'], 1):.2f}), target <= {RSS_TARGET}: "
            f"{'met' if mratio <= RSS_TARGET else 'NOT met'}. QPG - classical growth = {(gq - gc) / 1024:,.0f} MiB; "
            f"one float32 (channels, basis states, hidden) activation of all {q['qpg_layers']} mapping networks "
            f"is {hidden_mib:,.0f} MiB."
        )
    foreign = "; ".join(
        f"{name} {mode}: max {max(r['foreign_cores'] + r.get('gen_foreign_cores', [])):.2f}, {r['redone']} redone"
        for name in cases for mode in ("classical", "qpg") for r in [results[name][mode]]
    )
    lines += ["", "Targets:", *verdict_time, *verdict_mem, "",
              "Contention check (this machine may be shared): cores used by other processes during the kept timed "
              f"steps/generations, from /proc/stat busy time minus the worker's own CPU time: {foreign}."
              + (f" Each timed step first waited up to {args.wait_idle:g} s for other processes to use < "
                 f"{FOREIGN_LIMIT} cores, and one disturbed by >= {FOREIGN_LIMIT} cores was redone "
                 f"(at most {args.retries} times, last attempt kept)." if args.wait_idle > 0 else "")]
    notes = [n for n in args.note or []]
    if notes:
        lines += ["", *notes]
    for name, table in profiles.items():
        lines += ["", f"Top ops of one QPG step, {_describe(cases[name])} (torch.profiler, self CPU time):", "",
                  "```", table.rstrip(), "```"]
    if args.quick:
        lines += ["", "(`--quick`: tiny smoke sizes, numbers not meaningful.)"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this script's section (HEADING to the next ``## ``) in ``path``; append if absent."""
    replace_section(path, HEADING, section)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 timed step: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write/replace")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per (case, mode) after the warm-up (default 3, 1 with --quick)")
    parser.add_argument("--repeats-3d", type=int, default=None, help="timed steps for the 3D case (default --repeats)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile one QPG step of each case that misses the step-time target; show its top N ops")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                        help="before each timed step, wait up to S seconds until other processes use < 0.2 cores")
    parser.add_argument("--retries", type=int, default=3,
                        help="with --wait-idle: redo a timed step during which other processes used >= 0.2 cores, "
                        "at most this often")
    parser.add_argument("--note", action="append", help="a line to add under the table")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    cases = _cases(args.quick)

    if args.worker:
        name, mode = args.worker
        if mode == "timing":
            out = timing_worker(cases[name], args.warmup, args.repeats, args.threads, args.seed,
                                args.wait_idle, args.retries)
        else:
            out = memory_worker(cases[name], mode, args.warmup, args.threads, args.seed)
        print(json.dumps(out))
        return

    command = shlex.join(["python", "benchmarks/step.py", *(argv if argv is not None else sys.argv[1:])])
    repeats = {name: (args.repeats_3d if args.repeats_3d and case["dims"] == 3 else args.repeats)
               for name, case in cases.items()}
    start, load_start = time.perf_counter(), _load()
    results: dict[str, dict] = {}
    for name in cases:
        t0 = time.perf_counter()
        memory = {mode: _run_worker(name, mode, args, repeats[name]) for mode in ("classical", "qpg")}
        timing = _run_worker(name, "timing", args, repeats[name])
        results[name] = {mode: {**memory[mode], **timing[mode]} for mode in ("classical", "qpg")}
        for mode, r in results[name].items():
            print(f"{name:9s} {mode:9s} step median {statistics.median(r['step_s']):.3f} s "
                  f"(all {', '.join(f'{t:.2f}' for t in r['step_s'])}); trainable {r['trainable']:,}; "
                  f"peak {r['peak_kib'] / 1024:.0f} MiB, growth {(r['peak_kib'] - r['rss_before_kib']) / 1024:.0f} MiB"
                  + (f"; generation fwd {statistics.median(r['gen_fwd_s']):.3f} s bwd "
                     f"{statistics.median(r['gen_bwd_s']):.3f} s" if "gen_fwd_s" in r else "")
                  + f"; other processes max {max(r['foreign_cores']):.2f} cores, {r['redone']} redone", flush=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    profiles = {}
    if args.profile:  # only where the step-time target is missed
        for name, case in cases.items():
            ratio = statistics.median(results[name]["qpg"]["step_s"]) / statistics.median(
                results[name]["classical"]["step_s"])
            if ratio <= TIME_TARGET:
                continue
            if args.wait_idle > 0:
                _wait_for_idle(args.wait_idle)
            profiles[name] = profile_step(case, args.threads, args.seed, args.profile)
            print(profiles[name], flush=True)
    wall = time.perf_counter() - start
    section = render(results, cases, _machine(), command, args, repeats, wall, profiles, (load_start, _load()))
    print(section)
    if args.out is not None:
        write_section(args.out, section)
        print(f"wrote section {HEADING!r} to {args.out}")


if __name__ == "__main__":
    main()
