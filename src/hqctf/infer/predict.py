"""``hqctf predict``: label new patients with a run or an exported model, on each input's own grid.

Each case is preprocessed as in training, predicted with sliding windows, and the label map is resampled
(nearest) back to the input's original grid through the world coordinates of both grids, which undoes the
reorientation, body crop and resampling at once. Outputs per case: ``<case>.nii.gz`` on the input file's grid
(``<case>.png`` for PNG slices), for DICOM input ``<case>_RTSTRUCT.dcm`` referencing the CT series,
``overlays/<case>.png`` (radiological, uncropped where predictions fall outside the body); plus ``volumes.csv``
(sizes with plausibility flags against the training labels, `hqctf.train.plausibility`) and ``predict.log`` for
the whole batch. Every file is written atomically.
"""

from __future__ import annotations

import csv
import importlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample
from PIL import Image
from rich.console import Console
from rich.progress import track
from torch import nn

from ..atomic import output_folder, write_atomic
from ..data.case import Case
from ..data.dicom import DicomSource
from ..data.errors import DataError
from ..data.formats import detect_format
from ..data.nifti import write_nifti
from ..data.nifti_pairs import NiftiPairSource
from ..data.nnunet import NnUNetSource
from ..data.png import PngSliceSource
from ..data.preprocess import PreprocessConfig, preprocess
from ..data.source import Source
from ..data.structures import tg263_name
from ..train.config import ConfigError
from ..train.plausibility import flag, flag_message, read_ranges, structure_sizes
from ..train.views import axial_overlay_png, busiest_slice, display_affine
from ..train.cpu_layout import cpu_inference_network
from ..train.validate import predict_volume
from .export import MODEL_JSON, load_run, read_model_json, require_onnx, write_onnx


#: How a run folder's (or a state_dict export's) network is run: torch (the default: with the CPU layout of
#: `cpu_inference_network`, 0.86-0.88x onnxruntime's time on 2D UNet++ and 3D U-Net: docs/benchmarks.md, Inference) or
#: onnxruntime (the ``onnx`` extra).
RUNTIMES = ("torch", "onnxruntime")


def _on_runtime(net: nn.Module, runtime: str, spatial_dims: int, patch_size: tuple[int, ...]) -> nn.Module:
    """``net`` on torch (laid out for the CPU: `cpu_inference_network`), or exported to ONNX once and run by
    onnxruntime."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return cpu_inference_network(net, spatial_dims)
    for module in ("onnx", "onnxruntime"):
        require_onnx(module, "--runtime onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        write_onnx(net, spatial_dims, patch_size, path)
        return _OnnxNet(path)


class _OnnxNet(nn.Module):
    """An onnxruntime session behind the nn.Module call interface used by sliding-window inference."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        require_onnx("onnxruntime", f"{path}: predicting with an ONNX export")
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"image": x.detach().cpu().numpy()})[0])


def _rebuild(meta: dict[str, Any], folder: Path) -> nn.Module:
    arch = meta["architecture"]
    cls = getattr(importlib.import_module(arch["module"]), arch["class"])
    net = cls(spatial_dims=arch["spatial_dims"], in_channels=arch["in_channels"], out_channels=arch["out_channels"],
              features=tuple(arch["features"]), dropout=arch["dropout"])
    for name in arch["identity_children"]:
        setattr(net, name, nn.Identity())
    net.load_state_dict(torch.load(folder / meta["file"], map_location="cpu"))
    return net


@dataclass
class Segmenter:
    """A trained network with what it needs to label a new case.

    Args:
        net: returns logits (or a list of heads) for a batch of preprocessed windows.
        labels: label value -> structure name.
        preprocess: the training run's preprocessing.
        spatial_dims: 2 (slice-wise) or 3.
        patch_size: sliding-window size.
        overlap: sliding-window overlap.
        volume_ranges: the training labels' size range per structure (`hqctf.train.plausibility`); None: unknown.
    """

    net: nn.Module
    labels: dict[int, str]
    preprocess: PreprocessConfig
    spatial_dims: int
    patch_size: tuple[int, ...]
    overlap: float = 0.25
    volume_ranges: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: str | Path, checkpoint: str = "best", runtime: str = "torch") -> "Segmenter":
        """From a run folder (``config.yaml`` + checkpoint; generators merged) or an export (``hqctf-model.json``);
        ``runtime`` (`RUNTIMES`) runs a run's or a state_dict export's network with torch or onnxruntime (TorchScript
        runs on torch, ONNX on onnxruntime)."""
        segmenter = cls._load(Path(path), checkpoint)
        if isinstance(segmenter.net, torch.jit.ScriptModule) and runtime == "onnxruntime":
            raise ConfigError(f"{path}: a TorchScript export runs on torch; for onnxruntime export with --format onnx")
        if not isinstance(segmenter.net, (_OnnxNet, torch.jit.ScriptModule)):
            segmenter.net = _on_runtime(segmenter.net, runtime, segmenter.spatial_dims, segmenter.patch_size)
        return segmenter

    @classmethod
    def _load(cls, path: Path, checkpoint: str) -> "Segmenter":
        if (path / MODEL_JSON).is_file() or path.name == MODEL_JSON:
            folder = path if path.is_dir() else path.parent
            meta = read_model_json(folder)
            fmt = meta["format"]
            net = (torch.jit.load(str(folder / meta["file"]), map_location="cpu") if fmt == "torchscript"
                   else _OnnxNet(folder / meta["file"]) if fmt == "onnx" else _rebuild(meta, folder))
            pre = meta["preprocess"]
            config = PreprocessConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()})
            return cls(net, {int(k): v for k, v in meta["labels"].items()}, config, meta["spatial_dims"],
                       tuple(meta["patch_size"]), meta["overlap"], meta.get("volume_ranges"))
        if (path / "config.yaml").is_file():
            net, config, labels = load_run(path, checkpoint)
            return cls(net, labels, config.data.preprocess, config.model.spatial_dims, tuple(config.data.patch_size),
                       config.validation.overlap, read_ranges(path))
        raise ConfigError(f"{path}: neither a run folder (config.yaml) nor an exported model ({MODEL_JSON})")

    def predict(self, case: Case, grid: tuple[np.ndarray, tuple[int, ...]] | None = None) -> np.ndarray:
        """uint8 label map of ``case`` on ``grid`` (affine, shape); default: the case's own grid."""
        prepared = preprocess(case, self.preprocess)
        label = predict_volume(self.net, prepared.image, self.spatial_dims, self.patch_size, self.overlap)
        affine, shape = grid if grid is not None else (case.affine, case.image.shape)
        return resample_label(label, prepared.affine, affine, shape)


def resample_label(label: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto another grid of the same world (0 outside the source)."""
    source = MetaTensor(torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))[None],
                        affine=torch.as_tensor(affine, dtype=torch.float64))
    out = SpatialResample(dtype=torch.float64)(source, dst_affine=torch.as_tensor(target_affine, dtype=torch.float64),
                                               spatial_size=tuple(int(s) for s in shape), mode="nearest",
                                               padding_mode="zeros")
    return np.asarray(out[0].numpy()).round().astype(np.uint8)


def open_input(path: str | Path) -> Source:
    """The cases to predict: a NIfTI file, a folder of NIfTI images (e.g. nnU-Net ``imagesTs``), a folder with
    ``images/*.png`` (windowed PNG slices), or DICOM CT."""
    path = Path(path)
    if path.is_dir() and (path / "dataset.json").is_file():
        return NnUNetSource(path, split="Ts")
    if path.is_dir() and any((path / "images").glob("*.png")):
        return PngSliceSource(path)
    if path.is_file() or (path.is_dir() and any(path.glob("*.nii*"))):
        files = [path] if path.is_file() else sorted(path.glob("*.nii*"))
        return NiftiPairSource([(f, None) for f in files], labels={}, root=path if path.is_dir() else path.parent)
    if detect_format(path) == "dicom":
        return DicomSource(path)
    raise DataError(f"{path}: expected a NIfTI file, a folder of NIfTI images, a folder with images/*.png or a DICOM "
                    "CT series folder")


def _check_output(out: Path, inputs: Path, overwrite: bool) -> None:
    if not inputs.exists():
        raise DataError(f"{inputs}: not found")
    out, inputs = out.resolve(), inputs.resolve()
    if out == inputs or inputs in out.parents:  # a file input is only itself: out/ beside ct.nii.gz is fine
        raise DataError(f"{out}: output folder is inside the input {inputs}; choose another -o")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: output folder already holds files; use --overwrite to replace them")


def predict_folder(model: str | Path, inputs: str | Path, out_dir: str | Path, overwrite: bool = False,
                   rtstruct: bool = True, progress: bool = True, checkpoint: str = "best",
                   holes: Literal["keyhole", "nested"] = "keyhole", seg: bool = False,
                   console: Console | None = None, runtime: str = "torch") -> list[dict[str, Any]]:
    """Predict every case of ``inputs`` into ``out_dir``; returns the volume table rows (case, structure,
    ``volume_cc`` or for PNG input ``area_px``, ``flag``: see `hqctf.train.plausibility`).
    ``holes``: how the RTSTRUCT writes holes (see `write_rtstruct`); ``seg``: DICOM input also gets a DICOM-SEG;
    ``console``: where flagged structures are also printed; ``runtime``: torch or onnxruntime (`RUNTIMES`).

    Raises:
        DataError: bad input (named file, one line) or an output folder inside the input / holding results.
    """
    out, inputs = Path(out_dir), Path(inputs)
    _check_output(out, inputs, overwrite)
    segmenter = Segmenter.load(model, checkpoint, runtime)
    source = open_input(inputs)
    with output_folder(out):
        return _predict_cases(segmenter, source, out, rtstruct, progress, holes, seg, console)


def _predict_cases(segmenter: Segmenter, source: Source, out: Path, rtstruct: bool, progress: bool,
                   holes: Literal["keyhole", "nested"], seg: bool, console: Console | None) -> list[dict[str, Any]]:
    """Predict and write every case of ``source`` into ``out``, then ``volumes.csv`` and ``predict.log``."""
    log_lines: list[str] = []
    rows: list[dict[str, Any]] = []
    names = segmenter.labels
    ranges = segmenter.volume_ranges or {}
    column = "area_px" if isinstance(source, PngSliceSource) else "volume_cc"
    unit = column.rsplit("_", 1)[1]
    for case_id in track(source.case_ids(), description="predicting", disable=not progress):
        case = source.read(case_id)
        # NIfTI: the file's own grid, before any axis reordering (its world affine, corrected for OpenKBP)
        grid = source.file_grid(case_id) if isinstance(source, (NiftiPairSource, NnUNetSource)) else None
        label = segmenter.predict(case, grid)
        affine = grid[0] if grid else case.affine
        stored = nib.load(case.sources[0]) if grid else None
        written = _write_label(out, case_id, label, affine if stored is None else stored.affine, column == "area_px")
        sizes = structure_sizes(label, affine, names, unit)
        for name, size in sizes.items():
            entry = ranges.get("structures", {}).get(name) if ranges.get("unit") == unit else None
            rows.append({"case": case_id, "structure": name, column: size, "flag": flag(size, entry)})
            message = flag_message(case_id, name, size, unit, entry)
            if message:
                log_lines.append(message)
                if console is not None:
                    console.print(f"flagged {message}", highlight=False, markup=False, soft_wrap=True)
        if isinstance(source, DicomSource) and (rtstruct or seg):
            log_lines += _write_dicom(source, case, label, names, out, rtstruct, holes, seg)
        if label.any():
            shown = affine if grid else display_affine(case)
            z = busiest_slice(label, shown)
            image = np.asarray(case.image if stored is None else stored.get_fdata())
            image = np.clip(image, -160, 240) if case.intensity == "HU" else image
            label_names = ["background", *[names.get(v, f"label_{v}") for v in range(1, max(names, default=0) + 1)]]
            png = axial_overlay_png(image, {"prediction": label}, shown, z, label_names, f"{case_id}, slice {z}")
            write_atomic(out / "overlays" / f"{case_id}.png", png)
        log_lines.append(f"{case_id}: wrote {written} ({', '.join(f'{n} {v:g} {unit}' for n, v in sizes.items())})")
    if ranges:
        log_lines.append(f"training ranges in {ranges['unit']}: {ranges['rule']}")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["case", "structure", column, "flag"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "volumes.csv", text.getvalue())
    write_atomic(out / "predict.log", "\n".join(log_lines) + "\n")
    return rows


def _write_label(out: Path, case_id: str, label: np.ndarray, affine: np.ndarray, png: bool) -> str:
    """``<case>.nii.gz`` on the input's grid, or for PNG input ``<case>.png`` (8-bit grey, pixel = label value,
    the input image's rows and columns); returns the file name."""
    if png:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(label[:, :, 0].T.astype(np.uint8))).save(buffer, format="PNG")
        write_atomic(out / f"{case_id}.png", buffer.getvalue())
        return f"{case_id}.png"
    write_nifti(out / f"{case_id}.nii.gz", label, affine)  # the input file's own header: both line up in any viewer
    return f"{case_id}.nii.gz"


def _write_dicom(source: DicomSource, case: Case, label: np.ndarray, names: dict[int, str], out: Path, rtstruct: bool,
                 holes: Literal["keyhole", "nested"], seg: bool) -> list[str]:
    """The RTSTRUCT (and DICOM-SEG) of a DICOM case; returns the log lines about empty structures."""
    from .rtstruct import write_rtstruct
    from .seg import write_seg

    lines = []
    case_id = case.case_id
    ct_files = [p for p in source.files(case_id) if p not in case.sources[1:]]  # without the RTSTRUCT/SEG
    roi_names = {v: tg263_name(n) for v, n in names.items()}
    for name in write_rtstruct(label, ct_files, roi_names, out / f"{case_id}_RTSTRUCT.dcm", holes=holes) if rtstruct else []:
        lines.append(f"{case_id}: RTSTRUCT ROI {name} has no contour (empty prediction; still a valid RTSTRUCT)")
    for name in write_seg(label, ct_files, roi_names, out / f"{case_id}_SEG.dcm") if seg else []:
        lines.append(f"{case_id}: DICOM-SEG leaves out segment {name} (empty prediction)")
    return lines
