"""nnU-Net v2 raw datasets: `NnUNetSource` reads one, `write_nnunet_dataset` writes one."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.progress import track

from ..atomic import write_json_atomic
from .case import Case
from .errors import DataError
from .nifti import write_nifti
from .nifti_pairs import Absent, check_absent, read_nifti_case, stored_grid
from .openkbp import is_openkbp, openkbp_affine
from .source import Source

#: Sidecar listing, per case, the structures that were not contoured: ``{case_id: [structure names]}``.
UNKNOWN_FILE = "unknown_structures.json"
_NIFTI_ENDINGS = (".nii.gz", ".nii")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_labels(meta: dict, path: Path) -> tuple[dict[int, str], dict[str, tuple[int, ...]]]:
    """Structures (background excluded) and regions from dataset.json ``labels`` (name -> value or list of values).

    Values that occur only inside regions (nnU-Net region-based datasets) are named ``label_<v>``.
    """
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: 'labels' must map structure names to label values")
    named: dict[int, str] = {}
    regions: dict[str, tuple[int, ...]] = {}
    for name, value in labels.items():
        if isinstance(value, list) and value and all(_is_int(v) and v > 0 for v in value):
            regions[name] = tuple(value)
        elif _is_int(value):
            if value in named:
                raise DataError(f"{path}: labels {named[value]!r} and {name!r} share the value {value}")
            named[value] = name
        else:
            raise DataError(f"{path}: label {name!r} has value {value!r}; expected an integer >= 0 or a list of them (nnU-Net v2)")
    for value in sorted({v for values in regions.values() for v in values} - set(named)):
        named[value] = f"label_{value}"
    return {v: named[v] for v in sorted(named) if v != 0}, regions


def _parse_unknown(path: Path, structures: dict[int, str]) -> dict[str, frozenset[int]]:
    """The `UNKNOWN_FILE` sidecar as case id -> unknown label values."""
    data = _read_json(path)
    by_name = {name: value for value, name in structures.items()}
    if not isinstance(data, dict) or not all(isinstance(names, list) for names in data.values()):
        raise DataError(f"{path}: expected {{case_id: [structure names]}}")
    unknown = {}
    for case_id, names in data.items():
        stray = [n for n in names if n not in by_name]
        if stray:
            raise DataError(f"{path}: case {case_id!r} lists structures {stray} that dataset.json does not name")
        unknown[case_id] = frozenset(by_name[n] for n in names)
    return unknown


class NnUNetSource(Source):
    """An nnU-Net v2 raw dataset of single-channel CT: ``dataset.json``, ``imagesTr/<id>_0000.nii.gz``,
    ``labelsTr/<id>.nii.gz`` (and ``imagesTs``).

    A label whose value is a list in ``dataset.json`` is a region (nnU-Net region-based datasets). Which structures a
    case did not contour comes from the `UNKNOWN_FILE` sidecar for the cases it lists, else from ``absent``. A
    dataset whose description names OpenKBP gets its files' diagonal affines corrected (`hqctf.data.openkbp`).

    Args:
        root: the dataset folder (``Dataset001_Name``).
        absent: a structure whose value does not occur in a case's label map is ``"unknown"`` (not contoured, as in
            OpenKBP) or ``"background"`` (truly absent).
        split: ``"Tr"`` reads imagesTr/labelsTr (a missing label is an error); ``"Ts"`` reads imagesTs, with labels
            from labelsTs where present.
    """

    format = "nnunet"

    def __init__(self, root: str | Path, absent: Absent = "unknown", split: Literal["Tr", "Ts"] = "Tr") -> None:
        check_absent(absent)
        if split not in ("Tr", "Ts"):
            raise ValueError(f"split must be 'Tr' or 'Ts', got {split!r}")
        root = Path(root)
        self.dataset_json = root / "dataset.json"
        if not self.dataset_json.is_file():
            raise DataError(f"{self.dataset_json}: dataset.json not found; expected an nnU-Net raw dataset folder")
        meta = _read_json(self.dataset_json)
        if not isinstance(meta, dict):
            raise DataError(f"{self.dataset_json}: expected a JSON object")
        channels = meta.get("channel_names")
        if not (isinstance(channels, dict) and len(channels) == 1 and str(next(iter(channels.values()))).strip().lower() == "ct"):
            raise DataError(f"{self.dataset_json}: channel_names {channels!r} not supported; hqctf reads single-channel CT")
        self.file_ending = meta.get("file_ending", ".nii.gz")
        if self.file_ending not in _NIFTI_ENDINGS:
            raise DataError(f"{self.dataset_json}: file_ending {self.file_ending!r} not supported; hqctf reads {' or '.join(_NIFTI_ENDINGS)}")
        structures, self.regions = _parse_labels(meta, self.dataset_json)
        super().__init__(root, structures)
        self.absent, self.split = absent, split
        self.images_dir, self.labels_dir = root / f"images{split}", root / f"labels{split}"
        self.unknown_json = root / UNKNOWN_FILE
        self._unknown = _parse_unknown(self.unknown_json, structures) if self.unknown_json.is_file() else {}
        self.fix_affine = openkbp_affine if is_openkbp(meta) else None

    def case_ids(self) -> list[str]:
        if not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: images folder not found")
        suffix = f"_0000{self.file_ending}"
        return sorted(p.name[: -len(suffix)] for p in self.images_dir.iterdir() if p.name.endswith(suffix))

    def _paths(self, case_id: str) -> tuple[Path, Path | None]:
        image = self.images_dir / f"{case_id}_0000{self.file_ending}"
        label = self.labels_dir / f"{case_id}{self.file_ending}"
        return image, (label if self.split == "Tr" or label.is_file() else None)

    def files(self, case_id: str) -> list[Path]:
        extra = [self.unknown_json] if self.unknown_json.is_file() else []
        return [p for p in self._paths(case_id) if p is not None] + [self.dataset_json, *extra]

    def file_grid(self, case_id: str) -> tuple[np.ndarray, tuple[int, ...]]:
        """RAS affine (corrected) and shape of the case's image file as stored (before `read` reorders the axes)."""
        return stored_grid(self._paths(case_id)[0], self.fix_affine)

    def read(self, case_id: str) -> Case:
        image, label = self._paths(case_id)
        return read_nifti_case(
            case_id, image, label, self.labels, absent=self.absent, unknown=self._unknown.get(case_id), regions=self.regions,
            fix_affine=self.fix_affine,
        )


def _check_outside_inputs(out: Path, case: Case) -> None:
    """Refuse an output folder equal to, inside, or containing a folder ``case`` was read from."""
    for folder in {p.resolve().parent for p in case.sources}:
        if out == folder or folder in out.parents or out in folder.parents:
            raise DataError(f"{out}: output folder overlaps the input folder {folder}; write the nnU-Net dataset elsewhere")


def _image_for_disk(image: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer within int16 range, else float32."""
    info = np.iinfo(np.int16)
    if image.size and info.min <= image.min() and image.max() <= info.max and np.array_equal(image, np.round(image)):
        return image.astype(np.int16)
    return image.astype(np.float32, copy=False)


def _remap_label(case: Case, values: dict[str, int]) -> tuple[np.ndarray, list[str]]:
    """The case's label map renumbered to the output ``values`` (name -> value), and its unknown structure names.

    A structure of the output that the case does not have at all is unknown for it.
    """
    missing = [n for n in case.structures.values() if n not in values]
    if missing:
        raise DataError(f"{case.where}: structures {missing} are not among the output labels {sorted(values)}")
    lut = np.zeros(max(case.structures, default=0) + 1, dtype=np.uint16)
    for value, name in case.structures.items():
        lut[value] = values[name]
    label = lut[case.label].astype(np.uint8 if max(values.values()) <= 255 else np.uint16)
    known = set(case.known.values())
    return label, [n for n, v in values.items() if v != 0 and n not in known]


def write_nnunet_dataset(
    cases: Iterable[Case], out_dir: str | Path, labels: dict[int, str], description: str = "", progress: bool = True
) -> Path:
    """Write ``cases`` as an nnU-Net v2 raw dataset of single-channel CT, every file atomically.

    Writes ``imagesTr/<id>_0000.nii.gz`` (int16 when the HU values are integers in range, else float32),
    ``labelsTr/<id>.nii.gz`` (uint8, uint16 beyond 255), ``imagesTs/`` for cases without labels, ``dataset.json`` and
    the `UNKNOWN_FILE` sidecar. nnU-Net v2 needs consecutive label values, so the structures of ``labels`` are
    written as 1..K in the order of their values, and each case's label map is renumbered by structure name. Existing
    files of the same names are replaced; other files in ``out_dir`` are left alone. Regions are not written.

    Args:
        cases: the cases (a `Source` works), each with ``intensity == "HU"``.
        out_dir: the dataset folder to write; it may not overlap a folder a case was read from (checked per case,
            before that case is written), so inputs are never modified.
        labels: label value -> structure name of the output (values ordered, not kept); background (0) is added
            when missing.
        description: ``dataset.json`` description.
        progress: show a rich progress bar.

    Returns:
        the dataset folder.

    Raises:
        DataError: an invalid case, a non-HU case, a duplicate case id, a structure not in ``labels``, or an output
            folder overlapping an input folder.
    """
    out = Path(out_dir).resolve()
    names = {0: "background", **{int(v): str(n) for v, n in labels.items()}}
    if len(set(names.values())) != len(names) or min(names) < 0:
        raise ValueError(f"labels must map integers >= 0 to distinct names, got {labels}")
    values = {names[value]: i for i, value in enumerate(sorted(names))}  # nnU-Net v2 wants 0, 1, ..., K
    unknown: dict[str, list[str]] = {}
    written: set[str] = set()
    total = len(cases) if isinstance(cases, Sized) else None
    for case in track(cases, description=f"writing {out.name}", total=total, disable=not progress):
        _check_outside_inputs(out, case)
        case.validate()
        if case.intensity != "HU":
            raise DataError(f"{case.where}: intensity is {case.intensity!r}; an nnU-Net CT channel needs HU")
        if case.case_id in written or Path(case.case_id).name != case.case_id or case.case_id in ("", ".", ".."):
            raise DataError(f"{case.where}: case id {case.case_id!r} is duplicated or not a valid file name")
        written.add(case.case_id)
        remapped = None if case.label is None else _remap_label(case, values)  # before writing: it may raise
        split = "Ts" if remapped is None else "Tr"
        write_nifti(out / f"images{split}" / f"{case.case_id}_0000.nii.gz", _image_for_disk(case.image), case.affine)
        if remapped is not None:
            label, unknown[case.case_id] = remapped
            write_nifti(out / "labelsTr" / f"{case.case_id}.nii.gz", label, case.affine)
    meta = {
        "channel_names": {"0": "CT"},
        "labels": values,
        "numTraining": len(unknown),
        "file_ending": ".nii.gz",
        "description": description,
    }
    write_json_atomic(out / "dataset.json", meta)
    write_json_atomic(out / UNKNOWN_FILE, unknown)
    return out
