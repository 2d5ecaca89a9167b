"""NnUNetSource on the real OpenKBP and IBSI datasets, on broken copies, and write_nnunet_dataset round trips."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hqctf.data.case import Case
from hqctf.data.errors import DataError
from hqctf.data.nifti import write_nifti
from hqctf.data.nnunet import UNKNOWN_FILE, NnUNetSource, write_nnunet_dataset

OPENKBP_LABELS = {1: "Brainstem", 2: "SpinalCord", 3: "RightParotid", 4: "LeftParotid", 5: "Esophagus", 6: "Larynx", 7: "Mandible"}


@pytest.fixture(scope="module")
def openkbp(shared_data: Path) -> NnUNetSource:
    return NnUNetSource(shared_data / "Dataset001_OpenKBPOAR")


def copy_dataset(src: Path, dst: Path, case_ids: list[str]) -> Path:
    """A writable nnU-Net dataset with a few cases of ``src``."""
    for folder in ("imagesTr", "labelsTr"):
        (dst / folder).mkdir(parents=True)
    shutil.copy(src / "dataset.json", dst / "dataset.json")
    for cid in case_ids:
        shutil.copy(src / "imagesTr" / f"{cid}_0000.nii.gz", dst / "imagesTr")
        shutil.copy(src / "labelsTr" / f"{cid}.nii.gz", dst / "labelsTr")
    return dst


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- real data ------------------------------------------------------------------------------------------------


def test_openkbp_dataset_json(openkbp: NnUNetSource) -> None:
    assert openkbp.format == "nnunet"
    assert openkbp.labels == OPENKBP_LABELS
    assert openkbp.regions == {}
    assert len(openkbp) == 203 and openkbp.case_ids()[:2] == ["pt_1", "pt_10"]


@pytest.mark.parametrize(
    ("case_id", "spacing", "unknown"),
    [
        ("pt_1", (3.906, 3.906, 2.5), {"Esophagus", "Larynx"}),
        ("pt_103", (3.906, 3.906, 2.5), {"Esophagus", "Mandible"}),
    ],
)
def test_openkbp_case(openkbp: NnUNetSource, case_id: str, spacing: tuple[float, ...], unknown: set[str]) -> None:
    case = openkbp.read(case_id)
    assert case.case_id == case.patient_id == case_id
    assert case.image.dtype == np.float32 and case.image.shape == (128, 128, 128)
    assert case.label is not None and case.label.dtype == np.uint8 and case.label.shape == case.image.shape
    assert case.spacing == pytest.approx(spacing, abs=1e-3)
    assert case.image.min() == -1024.0  # HU (air), not OpenKBP's HU + 1024
    assert case.structures == OPENKBP_LABELS
    assert {OPENKBP_LABELS[v] for v in case.unknown} == unknown
    assert not np.isin(case.label, list(case.unknown)).any()
    assert case.intensity == "HU" and case.sources[0].name == f"{case_id}_0000.nii.gz"


def test_openkbp_absent_as_background(shared_data: Path) -> None:
    case = NnUNetSource(shared_data / "Dataset001_OpenKBPOAR", absent="background").read("pt_1")
    assert case.unknown == frozenset() and case.known == OPENKBP_LABELS


@pytest.mark.parametrize("case_id", ["STS_019", "STS_025"])
def test_ibsi_case(shared_data: Path, case_id: str) -> None:
    root = shared_data / "Dataset002_IBSISarcomaGTV"
    source = NnUNetSource(root)
    assert source.labels == {1: "GTV_Mass"} and len(source) == 24
    case = source.read(case_id)
    affine = nib.load(root / "imagesTr" / f"{case_id}_0000.nii.gz").affine
    np.testing.assert_allclose(case.affine, affine, atol=1e-5)
    assert case.spacing == pytest.approx(np.linalg.norm(affine[:3, :3], axis=0), abs=1e-5)
    assert case.spacing[0] == pytest.approx(0.977, abs=1e-3) and 3.0 < case.spacing[2] < 3.5
    assert case.unknown == frozenset() and np.count_nonzero(case.label == 1) > 100


# --- small generated datasets ---------------------------------------------------------------------------------


def make_dataset(root: Path, labels: dict, cases: dict[str, np.ndarray | None], split: str = "Tr") -> Path:
    """An nnU-Net dataset of 8x7x6 volumes; a case's label None writes no label file."""
    meta = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": len(cases), "file_ending": ".nii.gz"}
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    for cid, label in cases.items():
        write_nifti(root / f"images{split}" / f"{cid}_0000.nii.gz", np.full((8, 7, 6), -500, np.int16), affine)
        if label is not None:
            write_nifti(root / f"labels{split}" / f"{cid}.nii.gz", label.astype(np.uint8), affine)
    return root


def blob_label(*values: int) -> np.ndarray:
    label = np.zeros((8, 7, 6), np.uint8)
    for i, v in enumerate(values):
        label[i, 0, 0] = v
    return label


def test_test_split_without_labels(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"background": 0, "organ": 1}, {"a": None, "b": None}, split="Ts")
    source = NnUNetSource(root, split="Ts")
    assert source.case_ids() == ["a", "b"]
    case = source.read("a")
    assert case.label is None and case.unknown == frozenset() and case.image.shape == (8, 7, 6)
    with pytest.raises(DataError, match="imagesTr: images folder not found"):
        NnUNetSource(root).case_ids()


def test_region_based_labels(tmp_path: Path) -> None:
    labels = {"background": 0, "kidney": [1, 2, 3], "masses": [2, 3], "tumor": 2}
    source = NnUNetSource(make_dataset(tmp_path / "ds", labels, {"c": blob_label(1, 2, 3)}))
    assert source.labels == {1: "label_1", 2: "tumor", 3: "label_3"}
    assert source.regions == {"kidney": (1, 2, 3), "masses": (2, 3)}
    case = source.read("c")
    assert case.regions == source.regions
    assert [int(np.isin(case.label, vals).sum()) for vals in case.regions.values()] == [3, 2]


def test_unknown_sidecar_decides(tmp_path: Path) -> None:
    labels = {"background": 0, "a": 1, "b": 2, "c": 3}
    root = make_dataset(tmp_path / "ds", labels, {"x": blob_label(1), "y": blob_label(1)})
    (root / UNKNOWN_FILE).write_text(json.dumps({"x": ["c"]}))
    source = NnUNetSource(root)
    assert source.read("x").unknown == {3}  # the sidecar: b is absent, c not contoured
    assert source.read("y").unknown == {2, 3}  # not listed: the absent rule
    assert root / UNKNOWN_FILE in source.files("x")
    (root / UNKNOWN_FILE).write_text(json.dumps({"x": ["Liver"]}))
    with pytest.raises(DataError, match=rf"{UNKNOWN_FILE}: case 'x' lists structures \['Liver'\]"):
        NnUNetSource(root)


# --- broken copies of an IBSI case ----------------------------------------------------------------------------

CASE = "STS_019"
IMAGE, LABEL = f"imagesTr/{CASE}_0000.nii.gz", f"labelsTr/{CASE}.nii.gz"


def _rewrite(path: Path, edit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
    img = nib.load(path)
    data, affine = edit(np.asarray(img.dataobj), img.affine)
    write_nifti(path, data, affine)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(root: Path, **changes: object) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, **changes}))


def _nan_image(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = data.astype(np.float32)
    image[3, 4, 5] = np.nan
    image[0, 0, 0] = np.inf
    return image, affine


def _stray_value(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label = data.copy()
    label[0, 0, :2] = 7
    return label, affine


BROKEN = [
    # (id, how to break the copy, file named, message fragment, fails at construction)
    ("missing label", lambda r: (r / LABEL).unlink(), LABEL, f"label file not found for image {CASE}_0000", False),
    ("shape mismatch", lambda r: _rewrite(r / LABEL, lambda d, a: (d[:-1], a)), LABEL, r"label shape \(135, 134, 47\) does not match", False),
    ("affine mismatch", lambda r: _rewrite(r / LABEL, lambda d, a: (d, a + np.eye(4, k=3) * 5)), LABEL, "label affine differs", False),
    ("stray label value", lambda r: _rewrite(r / LABEL, _stray_value), LABEL, r"label values \[7\] are not among", False),
    ("truncated image", lambda r: _truncate(r / IMAGE), IMAGE, "truncated or corrupt", False),
    ("corrupt label", lambda r: (r / LABEL).write_bytes(b"\x1f\x8bnot a nifti" * 50), LABEL, "truncated or corrupt", False),
    ("NaN and inf voxels", lambda r: _rewrite(r / IMAGE, _nan_image), IMAGE, "image has 2 NaN/inf voxels", False),
    ("non-CT channel", lambda r: _edit_json(r, channel_names={"0": "MRI"}), "dataset.json", "channel_names .*single-channel CT", True),
    ("two channels", lambda r: _edit_json(r, channel_names={"0": "CT", "1": "CT"}), "dataset.json", "single-channel CT", True),
    ("v1 labels", lambda r: _edit_json(r, labels={"0": "background", "1": "GTV"}), "dataset.json", "expected an integer", True),
    ("bad json", lambda r: (r / "dataset.json").write_text("{labels: 1"), "dataset.json", "invalid JSON", True),
    ("no dataset.json", lambda r: (r / "dataset.json").unlink(), "dataset.json", "dataset.json not found", True),
]


@pytest.mark.parametrize(("break_it", "named", "fragment", "at_init"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_input(shared_data: Path, tmp_path: Path, break_it: Callable[[Path], None], named: str, fragment: str, at_init: bool) -> None:
    root = copy_dataset(shared_data / "Dataset002_IBSISarcomaGTV", tmp_path / "ds", [CASE])
    break_it(root)
    with pytest.raises(DataError) as err:
        NnUNetSource(root).read(CASE)
    message = str(err.value)
    assert message.startswith(f"{root / named}: ") and "\n" not in message
    assert re.search(fragment, message), message
    if not at_init:
        NnUNetSource(root)  # the dataset opens; only reading the broken case fails


# --- writing --------------------------------------------------------------------------------------------------


def test_write_round_trip(shared_data: Path, tmp_path: Path) -> None:
    src = copy_dataset(shared_data / "Dataset001_OpenKBPOAR", tmp_path / "src", ["pt_1", "pt_103"])
    before = hashes(src)
    source = NnUNetSource(src)
    out = write_nnunet_dataset(source, tmp_path / "out", labels=source.labels, description="round trip", progress=False)
    assert hashes(src) == before
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert meta["labels"] == {"background": 0, **{n: v for v, n in OPENKBP_LABELS.items()}}
    assert json.loads((out / UNKNOWN_FILE).read_text()) == {"pt_1": ["Esophagus", "Larynx"], "pt_103": ["Esophagus", "Mandible"]}
    assert nib.load(out / "imagesTr/pt_1_0000.nii.gz").get_data_dtype() == np.int16
    assert nib.load(out / "labelsTr/pt_1.nii.gz").get_data_dtype() == np.uint8
    back = NnUNetSource(out, absent="background")  # the sidecar alone must carry the unknowns
    assert back.case_ids() == source.case_ids()
    for case_id in source.case_ids():
        a, b = source.read(case_id), back.read(case_id)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
        assert (a.structures, a.unknown) == (b.structures, b.unknown)
    # re-running over the output replaces its files
    write_nnunet_dataset(source, out, labels=source.labels, progress=True)
    assert NnUNetSource(out).case_ids() == ["pt_1", "pt_103"]
    assert not [p for p in out.rglob(".*")]  # no temporary files left


@pytest.mark.parametrize("target", [".", "imagesTr", "labelsTr/sub", ".."])
def test_write_refuses_input_folders(shared_data: Path, tmp_path: Path, target: str) -> None:
    src = copy_dataset(shared_data / "Dataset002_IBSISarcomaGTV", tmp_path / "parent" / "src", [CASE])
    before = hashes(tmp_path)
    source = NnUNetSource(src)
    with pytest.raises(DataError, match="output folder overlaps the input folder"):
        write_nnunet_dataset(source, src / target, labels=source.labels, progress=False)
    assert hashes(tmp_path) == before


def _case(case_id: str, image: np.ndarray, label: np.ndarray | None, structures: dict[int, str], unknown=()) -> Case:
    return Case(case_id, image, np.diag([1.0, 1.0, 2.0, 1.0]), label, structures, frozenset(unknown))


def test_write_renumbers_by_name_and_splits_unlabelled(tmp_path: Path) -> None:
    shape = (4, 3, 2)
    label = np.zeros(shape, np.uint8)
    label[0, 0, 0], label[1, 0, 0] = 1, 2
    cases = [
        _case("labelled", np.full(shape, 12.5, np.float32), label, {1: "liver", 2: "spleen"}, unknown={2}),
        _case("unlabelled", np.full(shape, -40.0, np.float32), None, {}),
    ]
    out = write_nnunet_dataset(iter(cases), tmp_path / "out", labels={3: "spleen", 300: "liver", 5: "heart"}, progress=False)
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "spleen": 1, "heart": 2, "liver": 3}
    assert nib.load(out / "imagesTr/labelled_0000.nii.gz").get_data_dtype() == np.float32  # 12.5 is not integral
    assert (out / "imagesTs/unlabelled_0000.nii.gz").is_file() and not (out / "labelsTr/unlabelled.nii.gz").exists()
    assert json.loads((out / UNKNOWN_FILE).read_text()) == {"labelled": ["spleen", "heart"]}
    case = NnUNetSource(out).read("labelled")
    assert case.structures == {1: "spleen", 2: "heart", 3: "liver"}
    assert case.label[0, 0, 0] == 3 and case.label[1, 0, 0] == 1 and case.unknown == {1, 2}
    np.testing.assert_array_equal(case.image, 12.5)
    assert NnUNetSource(out, split="Ts").read("unlabelled").label is None


def test_write_uint16_beyond_255_labels(tmp_path: Path) -> None:
    label = np.zeros((3, 3, 3), np.uint16)
    label[1, 1, 1] = 300
    labels = {v: f"s{v}" for v in range(1, 301)}
    out = write_nnunet_dataset([_case("many", np.zeros((3, 3, 3), np.float32), label, labels)], tmp_path / "out", labels, progress=False)
    assert nib.load(out / "labelsTr/many.nii.gz").get_data_dtype() == np.uint16
    case = NnUNetSource(out).read("many")
    assert case.label.dtype == np.uint16 and case.label[1, 1, 1] == 300 and case.structures == labels


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        (_case("a", np.zeros((2, 2, 2), np.float32), np.full((2, 2, 2), 1, np.uint8), {1: "lung"}), r"structures \['lung'\] are not among"),
        (Case("a", np.zeros((2, 2, 2), np.float32), np.eye(4), intensity="windowed"), "needs HU"),
        (_case("../a", np.zeros((2, 2, 2), np.float32), None, {}), "not a valid file name"),
        (_case("a", np.full((2, 2, 2), np.nan, np.float32), None, {}), "NaN/inf"),
    ],
    ids=["structure not in labels", "windowed", "bad case id", "NaN"],
)
def test_write_rejects_bad_cases(tmp_path: Path, case: Case, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        write_nnunet_dataset([case], tmp_path / "out", labels={1: "heart"}, progress=False)
    assert not (tmp_path / "out").exists()  # checked before anything is written
