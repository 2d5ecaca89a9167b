"""Training samples from preprocessed cases: 2D axial slices and 3D patches, foreground-oversampled, augmented.

Each sample is a function of ``(seed, epoch, index)`` only: a NumPy generator seeded with these three draws the
case, the location and the augmentation's random state, so DataLoader workers reproduce the same samples in
any order; call ``set_epoch`` between epochs (workers get the new epoch when they are re-created, i.e. without
``persistent_workers``). Arrays are read lazily: only the slice or patch a sample needs is copied out of the
(memory-mapped) case arrays, and a pickled dataset (workers started by spawn or forkserver) carries memory-mapped
arrays as file references, not as their contents.

Foreground picks follow nnU-Net: a structure present in the case is chosen uniformly, then one of its voxels
(from up to `MAX_LOCATIONS` per structure, collected once per case and process), and the crop is centred on it
up to a random shift of a quarter of the crop, so the voxel stays in the crop's central half. Other picks take
a uniformly random slice / window. Volumes smaller than the crop are padded symmetrically, the image with the
crop's minimum (air after preprocessing), the label with 0.

Augmentation (MONAI dictionary transforms, image and label together): flips along ``flip_axes`` (p = 0.5
each); an affine (p = 0.5) with rotations up to +-15 degrees (in-plane for 2D, about every axis for 3D) and
scaling by 0.9-1.1, bilinear for the image and nearest for the label (border / zero padding); intensity
scaling by 0.9-1.1 and shift by +-0.1 (p = 0.5 each; the image is z-scored, so 0.1 is a tenth of a standard
deviation).
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from monai.transforms import Compose, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset

from .case import Case
from .errors import DataError

#: Foreground voxels remembered per structure and case for foreground picks.
MAX_LOCATIONS = 10_000
_LATERAL = re.compile(r"(?i:left|right)|_[LR](?:_|$)")


def lateral(names: Sequence[str]) -> bool:
    """Whether any structure name says left or right (``LeftParotid``, ``kidney_right``, TG-263 ``Parotid_L``)."""
    return any(_LATERAL.search(n) for n in names)


def augmentation(dims: int, flip_axes: Sequence[int]) -> Compose:
    """The MONAI transforms applied to ``{"image", "label"}`` (channel-first float tensors) when augmenting.

    Args:
        dims: 2 for slices, 3 for patches.
        flip_axes: spatial axes that may be mirrored.
    """
    keys = ("image", "label")
    angle = math.radians(15.0)
    return Compose([
        *[RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in flip_axes],
        RandAffined(keys, prob=0.5, rotate_range=(angle,) if dims == 2 else (angle,) * 3, scale_range=(0.1,) * dims,
                    mode=("bilinear", "nearest"), padding_mode=("border", "zeros")),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
    ])


class _MappedFile(NamedTuple):
    """How to reopen a memory-mapped array in another process (pickled instead of the array's contents)."""

    filename: str
    offset: int
    shape: tuple[int, ...]
    dtype: str
    order: str

    def open(self) -> np.memmap:
        return np.memmap(self.filename, np.dtype(self.dtype), "r", self.offset, self.shape, self.order)


def _to_file(array: np.ndarray | None) -> np.ndarray | _MappedFile | None:
    """A whole mapped file (not a view of one) as a `_MappedFile`; anything else as it is."""
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename is not None:
        order = "C" if array.flags.c_contiguous else "F"
        return _MappedFile(array.filename, array.offset, array.shape, array.dtype.str, order)
    return array


class _CaseSampler(Dataset):
    """Shared machinery of `SliceDataset` and `PatchDataset`: case and location draws, crops, augmentation."""

    dims = 3

    def __init__(self, cases: Sequence[Case], size: tuple[int, ...] | None, foreground_fraction: float,
                 samples_per_epoch: int, augment: bool, seed: int, max_label: int | None,
                 flip_axes: Sequence[int] | None) -> None:
        self.cases = list(cases)
        if not self.cases:
            raise ValueError("no cases to sample from")
        for case in self.cases:
            if case.label is None:
                raise DataError(f"{case.where}: case {case.case_id} has no label map; training samples need one")
        if not 0.0 <= foreground_fraction <= 1.0 or samples_per_epoch < 1:
            raise ValueError(f"foreground_fraction must be in [0, 1] and samples_per_epoch >= 1, got "
                             f"{foreground_fraction}, {samples_per_epoch}")
        if size is not None and (len(size) != self.dims or min(size) < 1):
            raise ValueError(f"size must be {self.dims} positive integers, got {size}")
        self.size = None if size is None else tuple(int(s) for s in size)
        self.foreground_fraction = foreground_fraction
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.epoch = 0
        self.max_label = max(max(c.structures, default=0) for c in self.cases) if max_label is None else max_label
        if flip_axes is None:
            names = [n for c in self.cases for n in c.structures.values()]
            flip_axes = [a for a in range(self.dims) if a != 0 or not lateral(names)]
        self.flip_axes = tuple(flip_axes)
        self.transform = augmentation(self.dims, self.flip_axes) if augment else None
        self._locations: dict[int, dict[int, np.ndarray]] = {}

    def __getstate__(self) -> dict:
        """Memory-mapped arrays travel as file references (DataLoader workers started by spawn/forkserver)."""
        state = self.__dict__.copy()
        state["cases"] = [dataclasses.replace(c, image=_to_file(c.image), label=_to_file(c.label)) for c in self.cases]
        return state

    def __setstate__(self, state: dict) -> None:
        reopen = [dataclasses.replace(c, **{k: getattr(c, k).open() for k in ("image", "label")
                                            if isinstance(getattr(c, k), _MappedFile)}) for c in state["cases"]]
        self.__dict__.update(state, cases=reopen)

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of samples (the same again for the same epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def foreground(self, index: int) -> dict[int, np.ndarray]:
        """Structure value -> (n, 3) int32 voxel coordinates (at most `MAX_LOCATIONS`) of case ``index``."""
        if index not in self._locations:
            label = self.cases[index].label
            flat = label.ravel(order="K")  # memory order: no copy of a C- or Fortran-ordered (memory-mapped) array
            where = np.flatnonzero(flat)
            values = flat[where]
            if label.flags.f_contiguous and not label.flags.c_contiguous:  # C-order indices: same draws either way
                where = np.ravel_multi_index(np.unravel_index(where, label.shape, order="F"), label.shape)
            rng = np.random.default_rng([self.seed, index])
            locations = {}
            for value in np.unique(values):
                chosen = np.sort(where[values == value])
                if len(chosen) > MAX_LOCATIONS:
                    chosen = np.sort(rng.choice(chosen, MAX_LOCATIONS, replace=False))
                locations[int(value)] = np.stack(np.unravel_index(chosen, label.shape), 1).astype(np.int32)
            self._locations[index] = locations
        return self._locations[index]

    def _window(self, shape: Sequence[int], centre: Sequence[int] | None, rng: np.random.Generator
                ) -> tuple[list[int], list[int]]:
        """Start and length of the crop along each axis (length < size where the volume is smaller)."""
        size = shape if self.size is None else self.size
        starts, lengths = [], []
        for axis, (n, s) in enumerate(zip(shape, size)):
            if n <= s:
                starts.append(0)
            elif centre is None:
                starts.append(int(rng.integers(0, n - s + 1)))
            else:
                shift = int(rng.integers(-(s // 4), s // 4 + 1))
                starts.append(int(np.clip(centre[axis] - s // 2 + shift, 0, n - s)))
            lengths.append(min(n, s))
        return starts, lengths

    def _pad(self, array: np.ndarray, value: float) -> np.ndarray:
        if self.size is None or array.shape == self.size:
            return array
        before = [(s - n) // 2 for n, s in zip(array.shape, self.size)]
        return np.pad(array, [(b, s - n - b) for b, n, s in zip(before, array.shape, self.size)], constant_values=value)

    def _crop(self, case: Case, centre: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(image, label) arrays of one sample, before augmentation."""
        starts, lengths = self._window(case.image.shape, centre, rng)
        window = tuple(slice(a, a + n) for a, n in zip(starts, lengths))
        return np.array(case.image[window], dtype=np.float32), np.array(case.label[window])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"sample {index} out of range 0..{self.samples_per_epoch - 1}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        case_index = int(rng.integers(len(self.cases)))
        case = self.cases[case_index]
        centre = None
        if rng.random() < self.foreground_fraction:
            locations = self.foreground(case_index)
            if locations:
                voxels = locations[sorted(locations)[int(rng.integers(len(locations)))]]
                centre = voxels[int(rng.integers(len(voxels)))]
        image, label = self._crop(case, centre, rng)
        image = self._pad(image, float(image.min()))
        label = self._pad(label, 0)
        data = {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label.astype(np.float32))[None]}
        if self.transform is not None:
            state = np.random.RandomState(int(rng.integers(2**31)))  # one stream, drawn in a fixed order
            for transform in self.transform.transforms:
                transform.set_random_state(state=state)
            data = self.transform(data)
        known = torch.ones(self.max_label + 1, dtype=torch.bool)
        known[[v for v in case.unknown if v <= self.max_label]] = False
        return {
            "image": convert_to_tensor(data["image"], dtype=torch.float32, track_meta=False),
            "label": convert_to_tensor(data["label"], track_meta=False)[0].round().to(torch.int64),
            "known": known,
            "case_id": case.case_id,
        }


class SliceDataset(_CaseSampler):
    """2D axial slices (the last array axis) of preprocessed cases.

    Args:
        cases: cases with labels (e.g. from `CaseCache.get`; memory-mapped arrays are read lazily).
        size: (H, W) crop of each slice (padded where the slice is smaller); None keeps whole slices.
        foreground_fraction: probability that a sample is centred on a foreground voxel (else a random slice).
        samples_per_epoch: dataset length.
        augment: apply `augmentation` (flips, rotation, scaling, intensity).
        seed: base seed; a sample depends only on (seed, epoch, index).
        max_label: K, the largest label value of the dataset (``known`` has K + 1 entries); default: the
            largest structure value among ``cases``.
        flip_axes: axes (0: x, 1: y) to mirror; default both, but not x (left-right in RAS) when a structure's
            name says left or right, whose labels a mirror would swap.

    Returns (per item):
        ``image`` float32 (1, H, W), ``label`` int64 (H, W), ``known`` bool (K + 1,) (False for the case's
        unknown structures), ``case_id`` str.
    """

    dims = 2

    def __init__(self, cases: Sequence[Case], size: tuple[int, int] | None, foreground_fraction: float = 0.5,
                 samples_per_epoch: int = 1000, augment: bool = True, seed: int = 0, max_label: int | None = None,
                 flip_axes: Sequence[int] | None = None) -> None:
        super().__init__(cases, size, foreground_fraction, samples_per_epoch, augment, seed, max_label, flip_axes)

    def _crop(self, case: Case, centre: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        z = int(centre[2]) if centre is not None else int(rng.integers(case.image.shape[2]))
        starts, lengths = self._window(case.image.shape[:2], None if centre is None else centre[:2], rng)
        window = (slice(starts[0], starts[0] + lengths[0]), slice(starts[1], starts[1] + lengths[1]), z)
        return np.array(case.image[window], dtype=np.float32), np.array(case.label[window])


class PatchDataset(_CaseSampler):
    """3D patches of preprocessed cases.

    Args:
        cases: cases with labels (memory-mapped arrays are read lazily).
        patch_size: (X, Y, Z) of each patch; volumes smaller than it are padded.
        foreground_fraction: probability that a patch is centred on a foreground voxel (else a random window).
        samples_per_epoch: dataset length.
        augment: apply `augmentation` (flips, rotation, scaling, intensity).
        seed: base seed; a sample depends only on (seed, epoch, index).
        max_label: K, the largest label value (``known`` has K + 1 entries); default: largest among ``cases``.
        flip_axes: axes to mirror; default all three, but not x (left-right) for lateral structure names.

    Returns (per item):
        ``image`` float32 (1, X, Y, Z), ``label`` int64 (X, Y, Z), ``known`` bool (K + 1,), ``case_id`` str.
    """

    def __init__(self, cases: Sequence[Case], patch_size: tuple[int, int, int], foreground_fraction: float = 0.33,
                 samples_per_epoch: int = 250, augment: bool = True, seed: int = 0, max_label: int | None = None,
                 flip_axes: Sequence[int] | None = None) -> None:
        super().__init__(cases, patch_size, foreground_fraction, samples_per_epoch, augment, seed, max_label,
                         flip_axes)
