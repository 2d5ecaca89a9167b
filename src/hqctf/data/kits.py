"""`KiTSSource`: the KiTS19 and KiTS21 kidney-tumour challenge folders (``case_XXXXX/imaging.nii.gz`` + segmentation)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .case import Case
from .errors import DataError
from .nifti_pairs import read_nifti_case
from .source import Source

IMAGE_FILE = "imaging.nii.gz"


@dataclass(frozen=True)
class KiTSLayout:
    """What one KiTS edition stores: the segmentation file name, its labels and the challenge's evaluation regions."""

    segmentation: str
    structures: dict[int, str]
    regions: dict[str, tuple[int, ...]]


LAYOUTS: dict[int, KiTSLayout] = {
    19: KiTSLayout("segmentation.nii.gz", {1: "kidney", 2: "tumor"}, {"kidney_and_tumor": (1, 2), "tumor": (2,)}),
    21: KiTSLayout(
        "aggregated_MAJ_seg.nii.gz",
        {1: "kidney", 2: "tumor", 3: "cyst"},
        {"kidney_and_masses": (1, 2, 3), "masses": (2, 3), "tumor": (2,)},
    ),
}


def _case_dirs(root: Path) -> dict[str, Path]:
    """Case folders by id: the ``case_XXXXX`` folders in ``root``, or ``root`` itself when it holds an image."""
    if (root / IMAGE_FILE).is_file():
        return {root.name: root}
    if not root.is_dir():
        raise DataError(f"{root}: KiTS folder not found")
    dirs = {p.name: p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"case_\d+", p.name)}
    if not dirs:
        raise DataError(f"{root}: no case_XXXXX folders (KiTS layout)")
    return dict(sorted(dirs.items()))


def _detect_version(root: Path, dirs: dict[str, Path]) -> Literal[19, 21]:
    for version in (21, 19):
        if any((d / LAYOUTS[version].segmentation).is_file() for d in dirs.values()):
            return version  # type: ignore[return-value]
    names = " or ".join(layout.segmentation for layout in LAYOUTS.values())
    raise DataError(f"{root}: cannot tell KiTS19 from KiTS21 (no case folder holds {names}); pass version=19 or 21")


class KiTSSource(Source):
    """A KiTS19 or KiTS21 data folder; cases without a segmentation (KiTS19 test cases) have label None.

    KiTS segmentations are complete, so a structure missing from a case is background, never unknown. KiTS19
    volumes store the superior-inferior axis first; the arrays are reordered to X, Y, Z (see `read_nifti_case`).

    Args:
        root: the folder holding ``case_XXXXX/`` (or one case folder).
        version: 19 or 21; None detects it from the segmentation file names (KiTS21: ``aggregated_MAJ_seg.nii.gz``).
    """

    def __init__(self, root: str | Path, version: Literal[19, 21] | None = None) -> None:
        root = Path(root)
        self._dirs = _case_dirs(root)
        self.version = version or _detect_version(root, self._dirs)
        if self.version not in LAYOUTS:
            raise ValueError(f"version must be 19 or 21, got {version!r}")
        self.layout = LAYOUTS[self.version]
        self.format = f"kits{self.version}"
        super().__init__(root, self.layout.structures)
        self.regions = dict(self.layout.regions)

    def case_ids(self) -> list[str]:
        return list(self._dirs)

    def _paths(self, case_id: str) -> tuple[Path, Path | None]:
        if case_id not in self._dirs:
            raise DataError(f"{self.root}: no case {case_id!r}")
        folder = self._dirs[case_id]
        segmentation = folder / self.layout.segmentation
        return folder / IMAGE_FILE, (segmentation if segmentation.is_file() else None)

    def files(self, case_id: str) -> list[Path]:
        return [p for p in self._paths(case_id) if p is not None]

    def read(self, case_id: str) -> Case:
        image, segmentation = self._paths(case_id)
        return read_nifti_case(case_id, image, segmentation, self.labels, absent="background", regions=self.regions)
