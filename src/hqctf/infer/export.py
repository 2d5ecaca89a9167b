"""``hqctf export``: the merged classical network of a run plus a JSON of everything inference needs.

The exported network contains no generator and no hqctf code: TorchScript and ONNX files run with torch or
onnxruntime alone; ``state_dict`` is rebuilt from the JSON's MONAI class name and arguments.
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_path, output_folder, write_atomic, write_json_atomic
from ..qpg import merge
from ..train.config import GENERATED_MODES, ConfigError, TrainConfig
from ..train.models import build_model, logits_of, network_features
from ..train.plausibility import read_ranges
from ..train.trainer import CHECKPOINT_BEST, CHECKPOINT_LAST, resume_config

EXPORT_FORMATS = ("torchscript", "onnx", "state_dict")
MODEL_JSON = "hqctf-model.json"
_FILES = {"torchscript": "model.ts", "onnx": "model.onnx", "state_dict": "model.pt"}


def require_onnx(module: str, what: str) -> None:
    """Raise a one-line `ConfigError` naming the ``onnx`` extra when ``module`` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(f'{what} needs {module}, which is not installed: pip install "hqctf[onnx]"') from None


def check_export_format(format: str) -> None:
    """Raise a one-line `ConfigError` for an unknown format, or for ONNX without the ``onnx`` extra."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"--format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if format == "onnx":
        require_onnx("onnx", "--format onnx")


class LogitsOnly(nn.Module):
    """The network with a single tensor output (UNet++ returns a list of heads)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.net(x))


def load_run(run: str | Path, checkpoint: str = "best") -> tuple[nn.Module, TrainConfig, dict[int, str]]:
    """A run's network with its generated weights merged in (a plain MONAI module), its config and labels."""
    model, config, labels = load_trained_model(run, checkpoint)
    plain = merge(model) if config.mode.name in GENERATED_MODES else model
    return plain.eval(), config, labels


def load_trained_model(run: str | Path, checkpoint: str = "best") -> tuple[nn.Module, TrainConfig, dict[int, str]]:
    """A run's network as trained (generators still in place, in eval mode), its config and labels."""
    run = Path(run)
    config = resume_config(run)
    path = run / (CHECKPOINT_BEST if checkpoint == "best" else CHECKPOINT_LAST)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found (choose best or last)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    labels = {int(k): str(v) for k, v in state["labels"].items()}
    model = build_model(config.model, config.mode, max(labels, default=0) + 1)
    model.load_state_dict(state["model"])
    return model.eval(), config, labels


def _architecture(net: nn.Module, config: TrainConfig, out_channels: int) -> dict[str, Any]:
    """MONAI class and arguments that rebuild ``net`` (children replaced by Identity listed by name)."""
    identity = [name for name, child in net.named_children() if isinstance(child, nn.Identity)]
    features = network_features(config.model, config.mode, out_channels)
    return {"class": type(net).__name__, "module": type(net).__module__, "spatial_dims": config.model.spatial_dims,
            "in_channels": 1, "out_channels": out_channels, "features": list(features),
            "dropout": config.model.dropout, "identity_children": identity}


def export_run(run: str | Path, out_dir: str | Path, format: str = "torchscript", checkpoint: str = "best") -> Path:
    """Write ``model.{ts,onnx,pt}`` and ``hqctf-model.json`` into ``out_dir``; returns the model file's path.

    Args:
        run: run folder written by ``hqctf train``.
        out_dir: export folder (created; files replaced atomically).
        format: ``torchscript`` (traced), ``onnx`` (dynamic batch and spatial axes) or ``state_dict``.
        checkpoint: ``best`` or ``last``.
    """
    check_export_format(format)
    net, config, labels = load_run(run, checkpoint)
    with output_folder(out_dir) as out:
        return write_export(net, config, labels, run, out, format, checkpoint)


@contextmanager
def _known_export_warnings_ignored() -> Iterator[None]:
    """Silence the tracing warnings that do not apply to these networks: UNet's encoder/decoder shape check (sizes
    are multiples of 16, so it always holds), instance norm using the input's statistics in eval mode (as it does
    in PyTorch), ONNX constant folding skipping strided slices, and the deprecation notices of TorchScript and of
    the TorchScript-based ONNX exporter that export uses (dynamo=False)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "ONNX export mode is set to TrainingMode.EVAL, but operator 'instance_norm'")
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1 can be constant folded")
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning, r"torch\.onnx")
        yield


def write_onnx(net: nn.Module, spatial_dims: int, patch_size: Sequence[int], path: Path) -> None:
    """``net`` (logits only) as ONNX at ``path``: input ``image``, output ``logits``, dynamic batch and spatial axes."""
    spatial = {i + 2: f"d{i}" for i in range(spatial_dims)}
    example = torch.zeros(1, 1, *patch_size)
    with torch.no_grad(), _known_export_warnings_ignored():
        torch.onnx.export(LogitsOnly(net).eval(), (example,), str(path), input_names=["image"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"image": {0: "batch", **spatial}, "logits": {0: "batch", **spatial}})


def write_export(net: nn.Module, config: TrainConfig, labels: dict[int, str], run: str | Path, out: Path,
                 format: str, checkpoint: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the model file and ``hqctf-model.json`` of `export_run` into the existing folder ``out`` (``extra``:
    more entries for the JSON)."""
    n_out = max(labels, default=0) + 1
    example = torch.zeros(1, 1, *config.data.patch_size)
    wrapped = LogitsOnly(net).eval()
    target = out / _FILES[format]
    if format == "torchscript":
        with torch.no_grad(), _known_export_warnings_ignored():
            traced = torch.jit.trace(wrapped, example, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
        write_atomic(target, buffer.getvalue())
    elif format == "onnx":
        with atomic_path(target, suffix=".onnx") as tmp:
            write_onnx(net, config.model.spatial_dims, config.data.patch_size, tmp)
    else:
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        write_atomic(target, buffer.getvalue())
    meta = {
        "format": format, "file": target.name, "hqctf_version": __version__, "run": str(Path(run).resolve()),
        "checkpoint": checkpoint, "mode": config.mode.name,
        "architecture": _architecture(net, config, n_out),
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "preprocess": config.data.preprocess.to_dict(),
        "spatial_dims": config.model.spatial_dims, "patch_size": list(config.data.patch_size),
        "overlap": config.validation.overlap, "orientation": config.data.preprocess.orientation,
        "spacing": list(config.data.preprocess.spacing) if config.data.preprocess.spacing else None,
        "volume_ranges": read_ranges(run),  # training labels' size per structure, for predict's flags
        **(extra or {}),
    }
    write_json_atomic(out / MODEL_JSON, meta)
    return target


def read_model_json(path: str | Path) -> dict[str, Any]:
    """An export's metadata (``hqctf-model.json``), given the file or its folder."""
    path = Path(path)
    path = path / MODEL_JSON if path.is_dir() else path
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read exported model metadata ({type(exc).__name__})") from None
