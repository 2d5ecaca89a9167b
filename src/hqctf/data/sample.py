"""The embedded OpenKBP sample and a small reader of 2D axial slices from nnU-Net raw datasets."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .source import natural_key

SAMPLE_NAME = "Dataset001_OpenKBPOAR"
#: Soft-tissue window in HU used for head-and-neck CT (level 40, width 400).
HU_WINDOW: tuple[float, float] = (-160.0, 240.0)


def sample_dataset_dir() -> Path:
    """Folder of the 6-case OpenKBP sample shipped inside the package (nnU-Net raw layout)."""
    return Path(str(files("hqctf.data") / "sample" / SAMPLE_NAME))


def read_labels(dataset_dir: str | Path) -> list[str]:
    """Label names from ``dataset.json``, indexed by label value (``names[0]`` is the background)."""
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: dataset.json not found; expected an nnU-Net raw dataset folder")
    try:
        labels = json.loads(path.read_text())["labels"]
        by_value = {int(v): str(k) for k, v in labels.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: cannot read integer 'labels' ({exc})") from None
    if sorted(by_value) != list(range(len(by_value))):
        raise DataError(f"{path}: label values must be 0..K-1, got {sorted(by_value)}")
    return [by_value[i] for i in range(len(by_value))]


def list_cases(dataset_dir: str | Path) -> list[str]:
    """Case identifiers that have an image in ``imagesTr`` (``pt_4_0000.nii.gz`` -> ``pt_4``), naturally sorted."""
    if not Path(dataset_dir).is_dir():
        raise DataError(f"{dataset_dir}: dataset folder not found")
    folder = Path(dataset_dir) / "imagesTr"
    if not folder.is_dir():
        raise DataError(f"{folder}: images folder not found")
    cases = [p.name.removesuffix("_0000.nii.gz") for p in folder.glob("*_0000.nii.gz")]
    if not cases:
        raise DataError(f"{folder}: no *_0000.nii.gz images")
    return sorted(cases, key=natural_key)


def _read_volume(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data


def _normalise(hu: np.ndarray) -> np.ndarray:
    """Clip to the soft-tissue window and scale it linearly to [-1, 1]."""
    lo, hi = HU_WINDOW
    return ((np.clip(hu.astype(np.float32), lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2)).astype(np.float32)


def _resize(images: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if images.shape[-2:] == (size, size):
        return images, labels
    img = F.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False)
    lab = F.interpolate(torch.from_numpy(labels)[:, None].float(), size=(size, size), mode="nearest-exact")
    return img.numpy(), lab[:, 0].round().numpy().astype(np.int64)


def load_slices(
    dataset_dir: str | Path,
    cases: Sequence[str] | None = None,
    slices_per_case: int | None = 16,
    size: int = 128,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Axial 2D slices that contain foreground, from an nnU-Net raw dataset.

    Args:
        dataset_dir: folder with ``dataset.json``, ``imagesTr/<case>_0000.nii.gz`` and ``labelsTr/<case>.nii.gz``.
        cases: case identifiers (e.g. ``"pt_4"``); None takes every case in ``imagesTr``.
        slices_per_case: foreground slices drawn per case (fewer if the case has fewer); None takes all.
        size: output height and width; slices of another size are resized (bilinear / nearest).
        seed: the draw of slices is a function of ``seed`` and the case identifier only.

    Returns:
        images float32 (N, 1, size, size), HU clipped to ``HU_WINDOW`` and scaled to [-1, 1];
        labels int64 (N, size, size); label names indexed by value.

    Raises:
        DataError: missing or unreadable file, image/label shape mismatch, unknown label value.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    names = read_labels(root)
    cases = list_cases(root) if cases is None else list(cases)
    images, labels = [], []
    for case in cases:
        image_path = root / "imagesTr" / f"{case}_0000.nii.gz"
        label_path = root / "labelsTr" / f"{case}.nii.gz"
        if not label_path.is_file():
            raise DataError(f"{label_path}: label file missing for case {case}")
        label = _read_volume(label_path)
        image = _read_volume(image_path)
        if image.shape != label.shape:
            raise DataError(
                f"{label_path}: label shape {label.shape} does not match image shape {image.shape} of {image_path.name}"
            )
        if not np.all(np.isin(np.unique(label), np.arange(len(names)))):
            values = np.unique(label).tolist()
            raise DataError(f"{label_path}: label values {values} outside dataset.json's 0..{len(names) - 1}")
        foreground = np.flatnonzero(label.reshape(-1, label.shape[-1]).any(axis=0))
        if slices_per_case is not None and len(foreground) > slices_per_case:
            rng = np.random.default_rng([seed, zlib.crc32(case.encode())])
            foreground = np.sort(rng.choice(foreground, size=slices_per_case, replace=False))
        images.append(_normalise(np.moveaxis(image[..., foreground], -1, 0))[:, None])
        labels.append(np.moveaxis(label[..., foreground], -1, 0).astype(np.int64))
    if not images:
        raise DataError(f"{root}: no cases selected")
    return (*_resize(np.concatenate(images), np.concatenate(labels), size), names)
