"""Preprocessing of a `Case` for training: orientation, crop to the body, resampling, intensity normalisation.

Steps, in order (MONAI transforms on MetaTensors that carry the affine):

1. ``Orientation`` to ``config.orientation`` (RAS by default): flips/permutes axes, world coordinates unchanged.
2. Crop to the body (``crop_body``, HU images only): ``CropForeground`` on the mask
   ``image > body_threshold_hu or label > 0`` plus ``margin_mm``, so only air (and whatever lies outside the
   mask's bounding box) is removed and no label voxel is lost. Done before resampling, which then has less to do.
3. Resampling to ``config.spacing`` (skipped when None or already there; axes of size 1 keep their spacing).
   The new grid keeps the world centre of the volume and covers the same physical extent (rounded to whole
   voxels). MONAI's ``SpatialResample``: bilinear with border padding for the image, nearest for labels.
   Nearest keeps volumes unbiased; nnU-Net's one-hot linear interpolation + argmax was also measured and
   shrank OpenKBP's small organs by 4 % on average (rounded corners). Either way a 6-85 cc organ changes
   volume by several per cent per case at 2 mm, more at 5 mm: its boundary moves by up to half a voxel.
4. Intensity: HU clipped to ``clip`` and z-scored with ``mean``/``std`` (one ``ScaleIntensityRange``, as the
   two are linear). ``windowed`` images (8-bit PNG slices, no HU) are taken to span the clip window:
   0..255 maps linearly onto the same z-scored range, (clip[0] - mean) / std .. (clip[1] - mean) / std.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import CropForegroundd, Orientation, ScaleIntensityRange, SpatialResample

from .case import Case

#: Bump when the preprocessing code changes what it produces: it is part of `PreprocessConfig.key`, so
#: caches made by older code are not reused.
PREPROCESS_VERSION = 2  # 2: OpenKBP read with its true axes (hqctf.data.openkbp)

#: Spacings closer than this (mm) count as equal (no resampling).
SPACING_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class PreprocessConfig:
    """How cases are prepared for training; defaults are the KiTS intensity statistics (change them per dataset).

    Args:
        spacing: target voxel size in mm along the three (reoriented) axes; None keeps the native spacing.
        orientation: axis codes the arrays are reoriented to (``"RAS"``: axis 0 runs to the patient's right...).
        clip: HU window the intensities are clipped to.
        mean: mean HU subtracted after clipping (e.g. foreground mean of the training set).
        std: HU standard deviation divided by after clipping.
        crop_body: crop HU images to the bounding box of the body (plus ``margin_mm``).
        body_threshold_hu: voxels above this HU are body.
        margin_mm: margin kept around the body's bounding box.
    """

    spacing: tuple[float, float, float] | None = field(
        default=None, metadata={"help": "target voxel size in mm (x, y, z); None keeps the native spacing"})
    orientation: str = field(default="RAS", metadata={"help": "axis codes to reorient to, e.g. RAS or LPS"})
    clip: tuple[float, float] = field(default=(-79.0, 304.0), metadata={"help": "HU window to clip to"})
    mean: float = field(default=101.0, metadata={"help": "HU mean for z-scoring (KiTS default)"})
    std: float = field(default=76.9, metadata={"help": "HU standard deviation for z-scoring (KiTS default)"})
    crop_body: bool = field(default=True, metadata={"help": "crop HU images (not windowed) to the body's bounding box"})
    body_threshold_hu: float = field(default=-500.0, metadata={"help": "HU above which a voxel is body"})
    margin_mm: float = field(default=10.0, metadata={"help": "margin around the body's bounding box, mm"})

    def __post_init__(self) -> None:
        if self.spacing is not None:
            object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
            if len(self.spacing) != 3 or min(self.spacing) <= 0:
                raise ValueError(f"spacing must be three positive mm values, got {self.spacing}")
        object.__setattr__(self, "clip", tuple(float(c) for c in self.clip))
        if len(self.clip) != 2 or self.clip[0] >= self.clip[1]:
            raise ValueError(f"clip must be (low, high) with low < high, got {self.clip}")
        if self.std <= 0 or self.margin_mm < 0:
            raise ValueError(f"std must be > 0 and margin_mm >= 0, got {self.std}, {self.margin_mm}")
        codes = self.orientation.upper()
        axes = sorted("LRAPSI".find(c) // 2 for c in codes)
        if len(codes) != 3 or axes != [0, 1, 2]:
            raise ValueError(f"orientation needs one of L/R, A/P, S/I per axis (e.g. RAS), got {self.orientation!r}")
        object.__setattr__(self, "orientation", codes)

    def to_dict(self) -> dict:
        """Fields as JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def key(self) -> str:
        """Short stable hash of the fields and `PREPROCESS_VERSION` (12 hex digits); names cache folders."""
        text = json.dumps({"version": PREPROCESS_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _meta(array: np.ndarray, affine: np.ndarray) -> MetaTensor:
    """Channel-first float32 MetaTensor (1, X, Y, Z) carrying ``affine``, on a copy of ``array``."""
    return MetaTensor(torch.from_numpy(np.array(array, dtype=np.float32))[None],
                      affine=torch.as_tensor(affine, dtype=torch.float64))


def target_grid(affine: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, float, float]
                ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The grid of ``spacing`` that keeps the volume's world centre, axis directions and physical extent.

    Args:
        affine: 4x4 voxel-to-world matrix of the input.
        shape: input spatial shape.
        spacing: target voxel size in mm per axis; axes of size 1 keep their own spacing.

    Returns:
        the new affine and shape; extent (shape x spacing) differs by at most half a new voxel per axis.
    """
    old = np.linalg.norm(affine[:3, :3], axis=0)
    new = np.array([o if n == 1 else s for o, n, s in zip(old, shape, spacing)])
    new_shape = np.maximum(1, np.round(np.asarray(shape) * old / new)).astype(int)
    out = np.eye(4)
    out[:3, :3] = affine[:3, :3] / old * new
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    out[:3, 3] = centre - out[:3, :3] @ ((new_shape - 1) / 2)
    return out, tuple(int(n) for n in new_shape)  # type: ignore[return-value]


def _crop_to_body(image: MetaTensor, label: MetaTensor | None, config: PreprocessConfig
                  ) -> tuple[MetaTensor, MetaTensor | None]:
    """Crop image (and label) to the bounding box of ``image > body_threshold_hu or label > 0`` plus the margin."""
    body = image > config.body_threshold_hu
    if label is not None:
        body = body | (label > 0)
    if not bool(body.any()):
        return image, label
    spacing = np.linalg.norm(image.affine.numpy()[:3, :3], axis=0)
    margin = [math.ceil(config.margin_mm / s - 1e-6) for s in spacing]
    keys = ["image"] if label is None else ["image", "label"]
    crop = CropForegroundd(keys, source_key="body", select_fn=lambda m: m > 0, margin=margin, allow_smaller=True)
    out = crop({"image": image, "label": label, "body": body.float()})
    return out["image"], out["label"]


def preprocess(case: Case, config: PreprocessConfig) -> Case:
    """Reorient, crop to the body, resample and normalise a case (the input is not modified).

    Args:
        case: a validated case (HU or windowed image, optional label).
        config: the preprocessing settings.

    Returns:
        a new Case with float32 image, the label in its own dtype, and the new affine; structures, unknown,
        regions, patient_id, intensity and sources are kept.
    """
    image = _meta(case.image, case.affine)
    label = None if case.label is None else _meta(case.label, case.affine)
    orient = Orientation(axcodes=config.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))  # RAS+ affines
    image = orient(image)
    label = None if label is None else orient(label)
    if config.crop_body and case.intensity == "HU":  # before resampling: less to resample
        image, label = _crop_to_body(image, label, config)
    affine = image.affine.numpy()
    if config.spacing is not None:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        dst_affine, dst_shape = target_grid(affine, tuple(image.shape[1:]), config.spacing)
        if np.any(np.abs(np.linalg.norm(dst_affine[:3, :3], axis=0) - spacing) > SPACING_TOLERANCE_MM):
            resample = SpatialResample(dtype=torch.float32)
            grid = dict(dst_affine=torch.as_tensor(dst_affine), spatial_size=dst_shape)
            image = resample(image, mode="bilinear", padding_mode="border", **grid)
            label = None if label is None else resample(label, mode="nearest", padding_mode="zeros", **grid)
    lo, hi = config.clip
    a_min, a_max = (lo, hi) if case.intensity == "HU" else (0.0, 255.0)
    scale = ScaleIntensityRange(a_min=a_min, a_max=a_max, b_min=(lo - config.mean) / config.std,
                                b_max=(hi - config.mean) / config.std, clip=True, dtype=torch.float32)
    image = scale(image)
    return dataclasses.replace(
        case,
        image=np.ascontiguousarray(image.numpy()[0], dtype=np.float32),
        affine=image.affine.numpy().astype(np.float64),
        label=None if label is None else np.ascontiguousarray(np.rint(label.numpy()[0])).astype(case.label.dtype),
        structures=dict(case.structures),
        regions=dict(case.regions),
    )
