"""Data pipeline throughput: preprocessing into the cache, cached 2D slice loading, and what training consumes.

(a) Preprocessing: ``CaseCache.build`` on an empty cache over N OpenKBP cases (read the NIfTI pair with
``NnUNetSource``, ``preprocess``, write the .npy files and the manifest), cases/s, for the default
``PreprocessConfig`` (native spacing, body crop) and for 2 mm isotropic resampling; then the same build again
(all hits: fingerprints + manifest + memory-mapping).
(b) Loader: ``SliceDataset`` (128x128, foreground fraction 0.5) over the cached, memory-mapped cases through a
torch ``DataLoader`` (batch 8) with 0 and 2 workers, augmentation off and on; samples/s over one epoch,
worker start-up included, after one untimed epoch (page cache and foreground locations warm).
(c) Consumption: training steps (forward, backward, AdamW) of MONAI ``BasicUNetPlusPlus`` 2D, 8 output channels,
``DiceCELoss``, batch 8 at 128x128, median of the timed steps after one warm-up step; samples/s = 8 / step time.
The ratio loader / consumption says how many times faster the loader produces samples than one training
process uses them (loader and training share the CPU cores when both run).

Data: ``Dataset001_OpenKBPOAR`` from the shared data folder (``HQCTF_SHARED_DATA`` or ../shared/data,
/work/shared/data), else the embedded 6-case sample. ``--quick``: 2 cases, 32 samples, a tiny UNet++ at 32x32,
batch 2, 1 timed step (a smoke run; numbers not meaningful).

    python benchmarks/data.py --wait-idle 30 --out docs/benchmarks.md   # full run
    python benchmarks/data.py --quick --out /tmp/b.md    # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, replace_section  # noqa: E402

HEADING = "## Data pipeline (benchmarks/data.py)"
DATASET = "Dataset001_OpenKBPOAR"
QUICK_FEATURES = (4, 4, 8, 8, 16, 4)


def _dataset_dir() -> tuple[Path, str]:
    """The OpenKBP folder to read and a description of where it came from."""
    from hqctf.data.sample import sample_dataset_dir

    here = Path(__file__).resolve().parents[1]
    candidates = ([Path(os.environ["HQCTF_SHARED_DATA"])] if "HQCTF_SHARED_DATA" in os.environ else []) + [
        here.parent / "shared" / "data", Path("/work/shared/data")]
    for root in candidates:
        if (root / DATASET / "dataset.json").is_file():
            return root / DATASET, f"shared data `{root / DATASET}`"
    return sample_dataset_dir(), "the embedded 6-case sample (shared data not found)"


def _busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (DataLoader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _wait_for_idle(max_wait: float, threshold: float = 0.2, window: float = 1.0) -> None:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait:
        b0, c0 = _busy_s(), _own_cpu_s()
        time.sleep(window)
        if ((_busy_s() - b0) - (_own_cpu_s() - c0)) / window < threshold:
            return


class Timer:
    """Wall time of a block, and the cores other processes used meanwhile (machine busy time minus ours).

    Args:
        wait_idle: first wait up to this many seconds for other processes to go idle.
    """

    def __init__(self, wait_idle: float = 0.0) -> None:
        self.wait_idle = wait_idle

    def __enter__(self) -> "Timer":
        if self.wait_idle > 0:
            _wait_for_idle(self.wait_idle)
        self.b0, self.c0, self.t0 = _busy_s(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.foreign = max(0.0, (_busy_s() - self.b0) - (_own_cpu_s() - self.c0)) / self.wall


def bench_preprocess(root: Path, ids: list[str], cache_dir: Path, wait_idle: float) -> list[dict]:
    """Build an empty cache for each config, then build it again (hits)."""
    from hqctf.data.cache import CaseCache
    from hqctf.data.nnunet import NnUNetSource
    from hqctf.data.preprocess import PreprocessConfig

    rows = []
    for name, config in (("native spacing, body crop (default)", PreprocessConfig()),
                         ("2 mm isotropic, body crop", PreprocessConfig(spacing=(2.0, 2.0, 2.0)))):
        cache = CaseCache(cache_dir, NnUNetSource(root), config)
        with Timer(wait_idle) as build:
            counts = cache.build(ids, progress=False)
        assert counts == {"cached": 0, "built": len(ids)}, counts
        with Timer(wait_idle) as hits:
            again = cache.build(ids, progress=False)
        assert again == {"cached": len(ids), "built": 0}, again
        size = sum(p.stat().st_size for p in cache.folder.glob("*.npy"))
        shapes = [cache.get(i).image.shape for i in ids]
        rows.append(dict(config=name, cases=len(ids), build_s=build.wall, build_foreign=build.foreign,
                         hit_s=hits.wall, mib_per_case=size / len(ids) / 2**20,
                         voxels=statistics.median(int(a) * int(b) * int(c) for a, b, c in shapes)))
        print(f"preprocess {name}: {len(ids) / build.wall:.2f} cases/s, hits {len(ids) / hits.wall:.0f} cases/s",
              flush=True)
    return rows


def bench_loader(cases: list, samples: int, size: int, batch: int, seed: int, wait_idle: float) -> list[dict]:
    """Samples/s of SliceDataset through a DataLoader, 0 and 2 workers, augmentation off and on."""
    from torch.utils.data import DataLoader

    from hqctf.data.sampling import SliceDataset

    rows = []
    for augment in (False, True):
        ds = SliceDataset(cases, (size, size), foreground_fraction=0.5, samples_per_epoch=samples, augment=augment,
                          seed=seed)
        for workers in (0, 2):
            loader = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True)
            for epoch in range(2):  # epoch 0 warms the page cache and the foreground locations
                ds.set_epoch(epoch)
                with Timer(wait_idle if epoch else 0.0) as t:
                    n = sum(len(b["case_id"]) for b in loader)
            rows.append(dict(augment=augment, workers=workers, samples=n, wall=t.wall, foreign=t.foreign))
            print(f"loader augment={augment} workers={workers}: {n / t.wall:.0f} samples/s", flush=True)
    return rows


def bench_consumption(size: int, batch: int, steps: int, features: tuple[int, ...] | None, seed: int,
                      wait_idle: float) -> dict:
    """Median training step of BasicUNetPlusPlus 2D on random data."""
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNetPlusPlus

    torch.manual_seed(seed)
    kwargs = {} if features is None else {"features": features}
    model = BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=8, **kwargs).train()
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 8, (batch, 1, size, size))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x)[0], y).backward()  # UNet++ returns its deep-supervision outputs; train on the first
        opt.step()

    step()
    times, foreign = [], []
    for _ in range(steps):
        with Timer(wait_idle) as t:
            step()
        times.append(t.wall)
        foreign.append(t.foreign)
    print(f"consumption: step {statistics.median(times):.2f} s, {batch / statistics.median(times):.1f} samples/s",
          flush=True)
    return dict(step_s=statistics.median(times), all_s=times, foreign=max(foreign))


def render(pre: list[dict], loader: list[dict], step: dict, args: argparse.Namespace, command: str,
           data: str, machine: dict, wall: float, load: tuple[str, str], batch: int, size: int) -> str:
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    consume = batch / step["step_s"]
    net = f"BasicUNetPlusPlus 2D, {f'features {QUICK_FEATURES}' if args.quick else 'default features'}"
    lines = [
        HEADING,
        "",
        "(a) `CaseCache.build` into an empty cache (read the NIfTI pair with `NnUNetSource`, `preprocess`, write",
        "float32 image + uint8 label `.npy` and the manifest), then the same build again (every case a hit).",
        f"(b) `SliceDataset` ({size}x{size} crops, foreground fraction 0.5) over the cached, memory-mapped cases,",
        f"torch `DataLoader` batch {batch}, shuffled; one epoch of {args.samples} samples after an untimed one,",
        "worker start-up included. (c) Training steps (forward, backward, AdamW) of MONAI "
        f"{net}, 8 outputs, `DiceCELoss`, batch {batch} at {size}x{size}, random data, "
        f"median of {args.steps} steps after a warm-up step.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_gib']:.1f} GiB RAM, no GPU; torch "
        f"{machine['torch']}, monai {machine['monai']}, numpy {machine['numpy']}, Python {machine['python']}; "
        f"torch threads = {args.threads}. Data: {data}. Date: {date}. Total wall time {wall:.0f} s; 1-min load "
        f"average {load[0]} at the start, {load[1]} at the end. \"Other cores\" = cores used by other processes "
        "during that measurement (/proc/stat busy time minus this process's and its workers' CPU time); above "
        "~0.2 the figure is contended."
        + (f" Each measurement first waited up to {args.wait_idle:g} s for other processes to use < 0.2 cores."
           if args.wait_idle > 0 else ""),
        "",
        "| (a) preprocessing config | cases | build cases/s | s/case | cache hits cases/s | median voxels/case "
        "| cache MiB/case | other cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in pre:
        lines.append(f"| {r['config']} | {r['cases']} | {r['cases'] / r['build_s']:.2f} | "
                     f"{r['build_s'] / r['cases']:.2f} | {r['cases'] / r['hit_s']:.0f} | {r['voxels']:,.0f} | "
                     f"{r['mib_per_case']:.1f} | {r['build_foreign']:.2f} |")
    lines += ["", "| (b) loader | workers | samples/s | loader / consumption | other cores |", "|---|---|---|---|---|"]
    for r in loader:
        rate = r["samples"] / r["wall"]
        lines.append(f"| SliceDataset {size}x{size}, augment {'on' if r['augment'] else 'off'} | {r['workers']} | "
                     f"{rate:.0f} | {rate / consume:.0f}x | {r['foreign']:.2f} |")
    lines += [
        "",
        f"(c) Consumption: {step['step_s']:.2f} s per step of {batch} (steps "
        f"{', '.join(f'{t:.2f}' for t in step['all_s'])} s) = **{consume:.1f} samples/s**; other cores during the "
        f"steps at most {step['foreign']:.2f}.",
    ]
    slowest = min(r["samples"] / r["wall"] for r in loader)
    verdict = "keeps up with" if slowest >= consume else "is slower than"
    lines += [
        "",
        f"Ratio: the slowest loader setting produces {slowest:.0f} samples/s, {slowest / consume:.1f}x what one "
        f"CPU training process consumes, so it {verdict} training. In the main process (0 workers) its time adds "
        f"to the step's (per sample 1/loader + 1/consumption): here {100 * consume / slowest:.1f} % on top of the "
        "step.",
    ]
    if args.quick:
        lines += ["", "(`--quick`: tiny smoke sizes, numbers not meaningful.)"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this script's section (HEADING to the next ``## ``) in ``path``; append if absent."""
    replace_section(path, HEADING, section)


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 cases, 32 samples, tiny network: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose section to write/replace")
    parser.add_argument("--cases", type=int, default=None, help="cases to preprocess (default 20, 2 with --quick)")
    parser.add_argument("--samples", type=int, default=None, help="loader samples per epoch (default 512)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 5)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                        help="before each timed measurement, wait up to S s until other processes use < 0.2 cores")
    args = parser.parse_args(argv)
    args.cases = args.cases or (2 if args.quick else 20)
    args.samples = args.samples or (32 if args.quick else 512)
    args.steps = args.steps or (1 if args.quick else 5)
    size, batch, features = (32, 2, QUICK_FEATURES) if args.quick else (128, 8, None)

    import torch

    from hqctf.data.cache import CaseCache
    from hqctf.data.nnunet import NnUNetSource
    from hqctf.data.preprocess import PreprocessConfig

    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/data.py", *(argv if argv is not None else sys.argv[1:])])
    root, data = _dataset_dir()
    ids = NnUNetSource(root).case_ids()[: args.cases]
    start, load_start = time.perf_counter(), _load()
    with tempfile.TemporaryDirectory(prefix="hqctf-bench-cache-") as tmp:
        pre = bench_preprocess(root, ids, Path(tmp), args.wait_idle)
        cache = CaseCache(tmp, NnUNetSource(root), PreprocessConfig())
        cases = [cache.get(i) for i in ids]
        loader = bench_loader(cases, args.samples, size, batch, args.seed, args.wait_idle)
        del cases
    step = bench_consumption(size, batch, args.steps, features, args.seed, args.wait_idle)
    wall = time.perf_counter() - start
    section = render(pre, loader, step, args, command, f"{len(ids)} cases of {data}", machine(), wall,
                     (load_start, _load()), batch, size)
    print(section)
    if args.out is not None:
        write_section(args.out, section)
        print(f"wrote section {HEADING!r} to {args.out}")


if __name__ == "__main__":
    main()
