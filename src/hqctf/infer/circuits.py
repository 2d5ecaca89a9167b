"""``hqctf circuits export | run | import-counts | budget``: a run's QPG circuits handed to hardware and back.

``export`` writes every measured QPG layer's circuits as OpenQASM 3 (one program per circuit,
``LAYER/CHANNEL.qasm``), ``manifest.json`` and ``generators.pt`` (each layer's generator state without its
angles). Whoever runs the circuits returns counts as JSON ``{layer: {channel: {bitstring: count}}}`` (Qiskit's
bitstrings, `hqctf.quantum.qiskit_circuit.BIT_ORDER`; one file, or a folder of such files each holding some of
the layers). Each circuit's values are divided by their total, so exact probabilities (e.g. a statevector's)
may stand in for counts. ``run`` measures an export's programs on Qiskit Aer, standing in for hardware, and
writes such a counts file. ``import-counts`` turns them into weights through the run's own generators and writes
the merged network as ``hqctf export`` does. ``budget`` counts the circuit executions and shots training needs.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import output_folder, write_atomic, write_json_atomic
from ..qpg import merge
from ..qpg.circuits import LayerBudget, budget, describe, generator_state, measured_layers
from ..qpg.targets import TargetError
from ..quantum.qiskit_circuit import BIT_ORDER, probabilities, require_qiskit, to_qasm3
from ..train.bundled import resolve_config_path
from ..train.config import ConfigError, TrainConfig, load_config
from ..train.models import build_model
from .export import check_export_format, load_trained_model, write_export

MANIFEST = "manifest.json"
GENERATOR_STATE = "generators.pt"
COUNTS_FORMAT = ("JSON {layer: {channel: {bitstring: count}}}: channels '0'..'C-1', bitstrings in Qiskit's order "
                 "(see qubit_order), every channel of every layer; each circuit's values are divided by their "
                 "total, so exact probabilities work as well as counts")


def _require_qiskit(*modules: str) -> None:
    try:
        require_qiskit(*modules)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None


def _circuit_layers(model: nn.Module, what: str | Path) -> dict[str, Any]:
    try:
        return measured_layers(model)
    except TargetError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def export_circuits(run: str | Path, out_dir: str | Path, checkpoint: str = "best") -> Path:
    """Write a run's circuits (OpenQASM 3), ``manifest.json`` and ``generators.pt`` into ``out_dir``; returns the
    manifest's path."""
    _require_qiskit()
    model, config, _ = load_trained_model(run, checkpoint)
    layers = _circuit_layers(model, run)
    with output_folder(out_dir) as out:
        described = {}
        for name, gen in layers.items():
            files = [f"{name}/{channel}.qasm" for channel in range(gen.rows)]
            for file, angles in zip(files, gen.angles.detach()):
                write_atomic(out / file, to_qasm3(gen.spec, angles))
            described[name] = {**describe(gen), "files": files}
        buffer = io.BytesIO()
        torch.save({name: generator_state(gen) for name, gen in layers.items()}, buffer)
        write_atomic(out / GENERATOR_STATE, buffer.getvalue())
        manifest = {
            "format": "hqctf-circuits", "hqctf_version": __version__, "run": str(Path(run).resolve()),
            "checkpoint": checkpoint, "mode": config.mode.name, "qpg": asdict(config.mode.qpg),
            "circuits": "one OpenQASM 3 program per circuit (files), every qubit measured into register meas",
            "qubit_order": BIT_ORDER, "counts_format": COUNTS_FORMAT,
            "generator_state": f"{GENERATOR_STATE}: torch.load -> {{layer: generator state_dict without 'angles'}}",
            "layers": described,
        }
        write_json_atomic(out / MANIFEST, manifest)
    return out / MANIFEST


def run_circuits(folder: str | Path, out_file: str | Path, shots: int, seed: int = 0) -> int:
    """Measure every OpenQASM 3 program of an export folder ``shots`` times on Qiskit Aer (a stand-in for hardware:
    it reads only the programs and the manifest) and write the counts JSON `import_counts` reads; returns the
    number of circuits run."""
    if shots < 1:
        raise ConfigError(f"--shots must be >= 1, got {shots}")
    folder, out_file = Path(folder), Path(out_file)
    manifest = _read_manifest(folder)
    _require_qiskit("qiskit_aer", "qiskit_qasm3_import")
    from qiskit import qasm3
    from qiskit_aer import AerSimulator

    jobs = [(layer, str(c), folder / f) for layer, d in manifest["layers"].items() for c, f in enumerate(d["files"])]
    try:
        programs = [qasm3.loads(file.read_text()) for _, _, file in jobs]
    except Exception as exc:  # the importer raises its own error types for a malformed program
        raise ConfigError(f"{folder}: cannot read an OpenQASM 3 program ({type(exc).__name__}: {exc})") from None
    result = AerSimulator(seed_simulator=seed).run(programs, shots=shots).result()
    counts: dict[str, dict[str, dict[str, int]]] = {layer: {} for layer in manifest["layers"]}
    for i, (layer, channel, _) in enumerate(jobs):
        counts[layer][channel] = dict(result.get_counts(i))
    write_json_atomic(out_file, counts)
    return len(jobs)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a circuits export ({type(exc).__name__}); write one with hqctf circuits "
                          "export") from None
    if manifest.get("format") != "hqctf-circuits":
        raise ConfigError(f"{path}: not an hqctf circuits manifest")
    return manifest


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: cannot read counts ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{file}: expected {{layer: {{channel: {{bitstring: count}}}}}}")
    return data


def _channel(file: Path, layer: str, key: str, channels: int) -> int:
    if not (key.isdigit() and int(key) < channels):
        raise ConfigError(f"{file}: layer {layer}: channel {key!r} is not one of 0..{channels - 1}")
    return int(key)


def read_counts(path: str | Path, shapes: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Per layer, its circuits' probabilities (C, 2^n) float64 from a counts file or folder (`COUNTS_FORMAT`).

    Args:
        path: a JSON file, or a folder whose ``*.json`` files together hold every circuit once.
        shapes: layer name -> (channels C, qubits n) of the run's circuits.
    """
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"{path}: no *.json counts files in this folder")
    if not files[0].is_file():
        raise ConfigError(f"{path}: counts file not found")
    found: dict[tuple[str, int], torch.Tensor] = {}
    for file in files:
        for layer, channels in _read_json(file).items():
            if layer not in shapes:
                known = list(shapes)
                raise ConfigError(f"{file}: {layer!r} is not a QPG circuit layer of the run (its {len(known)} layers: "
                                  f"{', '.join(known[:3])}{', ...' if len(known) > 3 else ''})")
            rows, n = shapes[layer]
            for key, counts in channels.items():
                channel = _channel(file, layer, key, rows)
                if (layer, channel) in found:
                    raise ConfigError(f"{file}: layer {layer} channel {channel}: counts given twice")
                if not isinstance(counts, dict):
                    raise ConfigError(f"{file}: layer {layer} channel {channel}: expected {{bitstring: count}}")
                try:
                    found[layer, channel] = probabilities(counts, n)
                except ValueError as exc:
                    raise ConfigError(f"{file}: layer {layer} channel {channel}: {exc}") from None
    missing = [(layer, c) for layer, (rows, _) in shapes.items() for c in range(rows) if (layer, c) not in found]
    if missing:
        raise ConfigError(f"{path}: no counts for layer {missing[0][0]} channel {missing[0][1]} ({len(missing)} of "
                          f"{sum(r for r, _ in shapes.values())} circuits missing; every circuit is needed)")
    return {layer: torch.stack([found[layer, c] for c in range(rows)]) for layer, (rows, _) in shapes.items()}


def import_counts(run: str | Path, counts: str | Path, out_dir: str | Path, format: str = "torchscript",
                  checkpoint: str = "best") -> Path:
    """Weights from measured counts through the run's generators (computed in float64, stored in the run's
    precision), merged and written as ``hqctf export`` writes a run (``hqctf-model.json`` also names the counts);
    returns the model file's path."""
    check_export_format(format)
    model, config, labels = load_trained_model(run, checkpoint)
    layers = _circuit_layers(model, run)
    measured = read_counts(counts, {name: (gen.rows, gen.spec.n_qubits) for name, gen in layers.items()})
    dtype = next(model.parameters()).dtype  # weights computed in float64 from the probabilities, stored as trained
    net = merge(model.double(), measured=measured).to(dtype).eval()
    with output_folder(out_dir) as out:
        return write_export(net, config, labels, run, out, format, checkpoint,
                            extra={"weights_from_counts": str(Path(counts).resolve())})


@dataclass(frozen=True)
class Budget:
    """What training a config's (or run's) QPG circuits on hardware costs, per epoch, at a shot count and rate."""

    layers: list[LayerBudget]
    steps_per_epoch: int
    epochs: int
    shots: int
    shot_rate: float
    structures: int  # segmented, background excluded: the network's outputs less one

    def executions_per_epoch(self, layer: LayerBudget) -> int:
        """Circuit executions of ``layer`` in one epoch (forward and parameter-shift gradient)."""
        return layer.per_step * self.steps_per_epoch

    def seconds_per_epoch(self, layer: LayerBudget) -> float:
        """Shot time of ``layer`` in one epoch (no queueing, compilation or latency)."""
        return self.executions_per_epoch(layer) * self.shots / self.shot_rate


def duration(seconds: float) -> str:
    """``seconds`` in the largest unit that gives at least 2 (s, min, h, d, years)."""
    for unit, size in (("years", 365.25 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.1f} s"


def _structures(config: TrainConfig, structures: int | None) -> int:
    """Structures the network segments: ``structures``, else the config's labels, else the dataset's."""
    if structures is not None:
        return structures
    if config.data.labels:
        return len(config.data.labels)
    from ..data import DataError
    from ..data.formats import open_source

    try:
        return len(open_source(config.data.path, format=config.data.format).labels)
    except (DataError, OSError) as exc:
        raise ConfigError(f"the network's output channels depend on the dataset's structures, and data.path "
                          f"{config.data.path!r} cannot be read ({exc}); give --structures N") from None


def circuit_budget(target: str | Path, shots: int = 1000, shot_rate: float = 1000.0, structures: int | None = None,
                   overrides: Sequence[str] = ()) -> Budget:
    """The `Budget` of a run folder or a training config (bundled name or YAML; no data needed with
    ``structures`` or labels in the config).

    Args:
        target: run folder (its ``config.yaml`` and checkpoint) or config.
        shots: shots per circuit execution.
        shot_rate: shots per second of the device.
        structures: structures segmented (background excluded); configs only.
        overrides: ``--set key=value`` for a config.
    """
    if shots < 1:
        raise ConfigError(f"--shots must be >= 1, got {shots}")
    if not (shot_rate > 0 and math.isfinite(shot_rate)):
        raise ConfigError(f"--shot-rate must be a positive number of shots per second, got {shot_rate}")
    if structures is not None and structures < 1:
        raise ConfigError(f"--structures must be >= 1, got {structures}")
    _require_qiskit()
    if Path(target).is_dir():
        if structures is not None or overrides:
            raise ConfigError(f"{target}: a run folder takes neither --structures nor --set (its own are used)")
        model, config, labels = load_trained_model(target)
        structures = max(labels, default=0)
    else:
        config = load_config(resolve_config_path(target), overrides)
        structures = _structures(config, structures)
        model = build_model(config.model, config.mode, structures + 1)
    try:
        layers = budget(model)
    except TargetError as exc:
        raise ConfigError(f"{target}: {exc}") from None
    return Budget(layers, config.steps_per_epoch, config.optim.epochs, shots, shot_rate, structures)


def budget_rows(b: Budget) -> list[dict[str, str]]:
    """The budget as table rows (per layer, then the total): gate counts and depth per circuit, the total row's
    gates summed over all circuits and its qubits and depth the largest."""
    def row(name: str, circuits: int, qubits: int, angles: str, single: int, two: int, depth: int, forward: int,
            gradient: int, executions: int, seconds: float) -> dict[str, str]:
        return {"layer": name, "circuits": f"{circuits:,}", "qubits": str(qubits), "angles": angles,
                "1q gates": f"{single:,}", "2q gates": f"{two:,}", "depth": str(depth),
                "forward/step": f"{forward:,}", "gradient/step": f"{gradient:,}",
                "executions/epoch": f"{executions:,}", "shots/epoch": f"{executions * b.shots:,}",
                "time/epoch": duration(seconds)}

    rows = [row(x.layer, x.circuits, x.qubits, str(x.angles), x.single_qubit_gates, x.two_qubit_gates, x.depth,
                x.forward_per_step, x.gradient_per_step, b.executions_per_epoch(x), b.seconds_per_epoch(x))
            for x in b.layers]
    layers = b.layers
    rows.append(row("total", sum(x.circuits for x in layers), max(x.qubits for x in layers),
                    f"{sum(x.angles * x.circuits for x in layers):,}",
                    sum(x.single_qubit_gates * x.circuits for x in layers),
                    sum(x.two_qubit_gates * x.circuits for x in layers), max(x.depth for x in layers),
                    sum(x.forward_per_step for x in layers), sum(x.gradient_per_step for x in layers),
                    sum(b.executions_per_epoch(x) for x in layers), sum(b.seconds_per_epoch(x) for x in layers)))
    return rows


def budget_summary(b: Budget) -> str:
    """One line: steps per epoch, shots, shot rate, and the shot time of the whole training."""
    total = sum(b.seconds_per_epoch(x) for x in b.layers) * b.epochs
    return (f"{b.steps_per_epoch:,} steps per epoch, {b.shots:,} shots per execution at {b.shot_rate:,g} shots/s; "
            f"{b.epochs} epochs: {duration(total)} of shots (no queueing, compilation or latency). Gates and depth "
            "per circuit (total: gates over all circuits, largest depth); gradient: parameter shift, 2 executions "
            "per angle per circuit.")
