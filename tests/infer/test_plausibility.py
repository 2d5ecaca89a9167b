"""Plausibility of predicted sizes: the training labels' ranges in the run folder and the export's
hqctf-model.json, the ``flag`` column of volumes.csv (NIfTI input in cc, PNG input in pixels) and the log."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from hqctf.cli import main
from hqctf.data.nifti import read_nifti
from hqctf.train.config import load_config
from hqctf.data.case import Case
from hqctf.train.plausibility import RANGES_FILE, flag, volume_ranges
from hqctf.train.trainer import train_run


@pytest.fixture(scope="module")
def run(tiny_dataset, tiny_overrides, tmp_path_factory):
    root = tmp_path_factory.mktemp("plausible")
    train_run(load_config(None, tiny_overrides(tiny_dataset, root / "run", root / "cache", "classical",
                                               **{"optim.epochs": 1})), progress=False)
    return root / "run"


def _reference_ranges(dataset: Path, train_ids: list[str]) -> dict[str, dict]:
    """Min / max cc over non-empty labels, contoured and empty counts, from the label files through nibabel."""
    labels = {v: k for k, v in json.loads((dataset / "dataset.json").read_text())["labels"].items() if v}
    unknown = json.loads((dataset / "unknown_structures.json").read_text())
    sizes: dict[str, list[float]] = {}
    for case in train_ids:
        image = nib.load(dataset / "labelsTr" / f"{case}.nii.gz")
        label, voxel_cc = np.asarray(image.dataobj), float(np.prod(image.header.get_zooms()[:3])) / 1000
        for value, name in labels.items():
            if name not in unknown.get(case, []):
                sizes.setdefault(name, []).append(np.count_nonzero(label == value) * voxel_cc)
    return {n: {"min": min([v for v in s if v] or [None], key=lambda v: v or 0),
                "max": max([v for v in s if v] or [None], key=lambda v: v or 0),
                "contoured": len(s), "empty": s.count(0)} for n, s in sizes.items()}


def test_run_keeps_the_training_labels_size_range(run, tiny_dataset):
    ranges = json.loads((run / RANGES_FILE).read_text())
    train_ids = json.loads((run / "splits.json").read_text())[0]["train"]
    assert ranges["unit"] == "cc" and ranges["cases"] == len(train_ids) and "2" in ranges["rule"]
    reference = _reference_ranges(tiny_dataset, train_ids)
    assert set(ranges["structures"]) == set(reference)
    assert any(r["empty"] for r in reference.values())  # the tiny crops cut some organs out
    for name, expected in reference.items():
        got = ranges["structures"][name]
        assert (got["contoured"], got["empty"]) == (expected["contoured"], expected["empty"]), name
        for key in ("min", "max"):
            assert got[key] == pytest.approx(expected[key], abs=1e-3), (name, key)


def test_ranges_leave_out_structures_a_case_did_not_contour():
    affine = np.diag([2.0, 2.0, 2.5, 1.0])  # 10 mm^3 voxels
    label = np.zeros((4, 4, 4), np.uint8)
    label[:2, :2, :1] = 1  # 4 voxels of A, no B
    cases = [Case("a", np.zeros((4, 4, 4), np.float32), affine, label, {1: "A", 2: "B"}),
             Case("b", np.zeros((4, 4, 4), np.float32), affine, np.full((4, 4, 4), 1, np.uint8), {1: "A", 2: "B"},
                  unknown={2})]
    ranges = volume_ranges(cases)
    assert ranges["structures"]["A"] == {"min": 0.04, "max": 0.64, "contoured": 2, "empty": 0}
    assert ranges["structures"]["B"] == {"min": None, "max": None, "contoured": 1, "empty": 1}


def test_flag_rule():
    entry = {"min": 10.0, "max": 40.0}
    assert [flag(s, entry) for s in (0, 4.9, 5.0, 80.0, 80.1)] == ["empty", "below_range", "", "", "above_range"]
    assert flag(3.0, {"min": None, "max": None}) == flag(3.0, None) == "" and flag(0.0, None) == "empty"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_predict_flags_out_of_range_and_empty_structures(run, tiny_dataset, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(tiny_dataset / "imagesTr" / "pt_4_0000.nii.gz", inputs / "pt_4.nii.gz")
    first = tmp_path / "first"
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(first), "--no-progress"]) == 0
    sizes = {r["structure"]: float(r["volume_cc"]) for r in _rows(first / "volumes.csv")}
    predicted, affine = read_nifti(first / "pt_4.nii.gz")
    names = {v: k for k, v in json.loads((tiny_dataset / "dataset.json").read_text())["labels"].items() if v}
    for value, name in names.items():  # volumes.csv against the written label map
        assert sizes[name] == pytest.approx(np.count_nonzero(predicted == value) * abs(np.linalg.det(affine[:3, :3])) / 1000, abs=1e-3)
    trained = json.loads((run / RANGES_FILE).read_text())["structures"]
    assert [r["flag"] for r in _rows(first / "volumes.csv")] == [flag(s, trained.get(n)) for n, s in sizes.items()]
    present = [n for n, s in sizes.items() if s > 0]
    assert present, "the tiny model predicts nothing; the test needs some structure"
    # a run copy whose training ranges make one present structure too small, one too large, one plausible
    copy = tmp_path / "run-copy"
    shutil.copytree(run, copy)
    ranges = json.loads((copy / RANGES_FILE).read_text())
    small, large, plausible = (present * 3)[:3]
    ranges["structures"][small] = {"min": 4 * sizes[small], "max": 8 * sizes[small], "contoured": 3, "empty": 0}
    expected = {small: "below_range"}
    if large != small:
        ranges["structures"][large] = {"min": sizes[large] / 8, "max": sizes[large] / 4, "contoured": 3, "empty": 1}
        expected[large] = "above_range"
    if plausible not in expected:
        ranges["structures"][plausible] = {"min": sizes[plausible], "max": sizes[plausible], "contoured": 3, "empty": 0}
        expected[plausible] = ""
    expected.update({n: "empty" for n, s in sizes.items() if s == 0})
    (copy / RANGES_FILE).write_text(json.dumps(ranges))
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", str(copy), "-i", str(inputs), "-o", str(out), "--no-progress"]) == 0
    console = capsys.readouterr()
    rows = {r["structure"]: r for r in _rows(out / "volumes.csv")}
    assert list(_rows(out / "volumes.csv")[0]) == ["case", "structure", "volume_cc", "flag"]
    log = (out / "predict.log").read_text()
    for name, want in expected.items():
        assert rows[name]["flag"] == want, name
        if want:
            assert f"pt_4: {name} " in log and f"flagged pt_4: {name} " in console.out
    assert f"{sizes[small]:g} cc is below range" in log and "training ranges in cc" in log
    assert f"({sum(1 for w in expected.values() if w)} flagged)" in console.out
    # the export carries the same ranges, and predicting from it flags the same
    assert main(["export", str(copy), "--format", "torchscript", "-o", str(tmp_path / "exp")]) == 0
    assert json.loads((tmp_path / "exp" / "hqctf-model.json").read_text())["volume_ranges"] == ranges
    assert main(["predict", str(tmp_path / "exp"), "-i", str(inputs), "-o", str(tmp_path / "out2"), "--no-progress"]) == 0
    assert _rows(tmp_path / "out2" / "volumes.csv") == list(rows.values())


@pytest.fixture(scope="module")
def png_dataset(shared_data, tmp_path_factory):
    """Six 96 x 96 crops around the kidneys of three KiTS19 PNG patients (images/ + masks/)."""
    root = tmp_path_factory.mktemp("png") / "kits_png"
    names = ["10036_103", "10036_127", "10037_29", "10037_35", "10040_33", "10040_38"]
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for name in names:
        mask = np.asarray(Image.open(shared_data / "kits19_png" / "masks" / f"{name}.png").convert("RGB"))
        rows, cols = np.nonzero(mask.any(-1))
        top, left = (int(np.clip(c.mean() - 48, 0, 512 - 96)) for c in (rows, cols))
        for folder in ("images", "masks"):
            image = Image.open(shared_data / "kits19_png" / folder / f"{name}.png")
            image.crop((left, top, left + 96, top + 96)).save(root / folder / f"{name}.png")
    return root


def test_png_input_reports_areas_in_pixels(png_dataset, tiny_overrides, tmp_path):
    run = tmp_path / "run"
    overrides = tiny_overrides(png_dataset, run, tmp_path / "cache", "classical", **{
        "optim.epochs": 1, "data.format": "png", "data.n_folds": 3, "data.test_fraction": 0.0,
        "data.preprocess": "{spacing: null, clip: [0, 255], mean: 75, std: 52, crop_body: false}"})
    train_run(load_config(None, overrides), progress=False)
    ranges = json.loads((run / RANGES_FILE).read_text())
    assert ranges["unit"] == "px"
    train_ids = json.loads((run / "splits.json").read_text())[0]["train"]
    kidney = [int(np.all(np.asarray(Image.open(png_dataset / "masks" / f"{c}.png").convert("RGB")) == (0, 0, 255),
                         axis=-1).sum()) for c in train_ids]
    assert ranges["structures"]["kidney"]["min"] == min(k for k in kidney if k)
    assert ranges["structures"]["kidney"]["max"] == max(kidney)
    inputs = tmp_path / "in"
    (inputs / "images").mkdir(parents=True)  # images only: nothing to compare with
    shutil.copy(png_dataset / "images" / "10036_103.png", inputs / "images")
    out = tmp_path / "out"
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(out), "--no-progress"]) == 0
    rows = _rows(out / "volumes.csv")
    assert list(rows[0]) == ["case", "structure", "area_px", "flag"]
    predicted = np.asarray(Image.open(out / "10036_103.png"))
    assert predicted.shape == (96, 96)
    for value, row in enumerate(rows, start=1):
        assert float(row["area_px"]) == np.count_nonzero(predicted == value)
        assert row["flag"] == flag(float(row["area_px"]), ranges["structures"].get(row["structure"]))
    assert " px" in (out / "predict.log").read_text() and " cc" not in (out / "predict.log").read_text()
