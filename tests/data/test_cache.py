"""CaseCache: hits skip the source, changed files and broken entries are rebuilt, configs get their own folder."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from hqctf.data.cache import CaseCache
from hqctf.data.case import Case
from hqctf.data.errors import DataError
from hqctf.data.nifti import read_nifti
from hqctf.data.preprocess import PreprocessConfig, preprocess
from hqctf.data.sample import sample_dataset_dir
from hqctf.data.source import Source

CASES = ["pt_4", "pt_13"]


class PairSource(Source):
    """nnU-Net raw image/label pairs, counting reads."""

    format = "test-pairs"

    def __init__(self, root: Path) -> None:
        labels = json.loads((root / "dataset.json").read_text())["labels"]
        super().__init__(root, {int(v): k for k, v in labels.items() if int(v)})
        self.reads: list[str] = []

    def case_ids(self) -> list[str]:
        return sorted(p.name.removesuffix("_0000.nii.gz") for p in (self.root / "imagesTr").glob("*_0000.nii.gz"))

    def files(self, case_id: str) -> list[Path]:
        return [self.root / "imagesTr" / f"{case_id}_0000.nii.gz", self.root / "labelsTr" / f"{case_id}.nii.gz"]

    def read(self, case_id: str) -> Case:
        self.reads.append(case_id)
        image_path, label_path = self.files(case_id)
        image, affine = read_nifti(image_path)
        label, _ = read_nifti(label_path)
        return Case(case_id, image.astype(np.float32), affine, label, self.labels, unknown={5},
                    regions={"glands": (3, 4)}, patient_id=f"patient-{case_id}", sources=(image_path, label_path)
                    ).validate()


@pytest.fixture
def source(tmp_path) -> PairSource:
    root = tmp_path / "data"
    sample = sample_dataset_dir()
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(sample / "dataset.json", root)
    for case_id in CASES:
        shutil.copy(sample / "imagesTr" / f"{case_id}_0000.nii.gz", root / "imagesTr")
        shutil.copy(sample / "labelsTr" / f"{case_id}.nii.gz", root / "labelsTr")
    return PairSource(root)


CONFIG = PreprocessConfig(margin_mm=5.0)


def test_second_run_hits_without_reading_the_source(source, tmp_path):
    cache = CaseCache(tmp_path / "cache", source, CONFIG)
    assert cache.build(progress=False) == {"cached": 0, "built": 2}
    assert source.reads == CASES[::-1]  # case_ids() sorts "pt_13" first
    again = CaseCache(tmp_path / "cache", source, CONFIG)
    assert again.build(progress=False) == {"cached": 2, "built": 0}
    case = again.get("pt_4")
    assert len(source.reads) == 2
    expected = preprocess(source.read("pt_4"), CONFIG)
    assert isinstance(case.image, np.memmap) and isinstance(case.label, np.memmap)
    assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
    assert np.array_equal(case.image, expected.image) and np.array_equal(case.label, expected.label)
    assert case.image[:, :, 3].flags.c_contiguous or case.image[:, :, 3].flags.f_contiguous  # axial slice contiguous
    assert np.allclose(case.affine, expected.affine) and case.spacing == pytest.approx(expected.spacing)
    assert (case.structures, case.unknown, case.regions, case.patient_id, case.intensity) == (
        source.labels, frozenset({5}), {"glands": (3, 4)}, "patient-pt_4", "HU")
    assert case.sources == tuple(source.files("pt_4"))
    entry = json.loads((cache.folder / "manifest.json").read_text())["pt_4"]
    assert [f[0] for f in entry["files"]] == [str(p) for p in source.files("pt_4")]
    assert entry["shape"] == list(expected.image.shape) and entry["unknown"] == [5]


def test_changed_file_invalidates_that_case_only(source, tmp_path):
    cache = CaseCache(tmp_path / "cache", source, CONFIG)
    cache.build(progress=False)
    source.reads.clear()
    label = source.files("pt_4")[1]
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache.build(progress=False) == {"cached": 1, "built": 1}
    assert source.reads == ["pt_4"]
    with open(label, "ab") as f:  # same mtime, new size (gzip ignores trailing zeros)
        f.write(b"\0\0")
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    source.reads.clear()
    cache.get("pt_4")
    cache.get("pt_13")
    assert source.reads == ["pt_4"]
    label.write_bytes(label.read_bytes()[:100])  # a truncated file is read again and reported, never served stale
    with pytest.raises(DataError, match="pt_4.nii.gz"):
        cache.get("pt_4")


def test_same_case_ids_of_two_datasets_do_not_collide(source, tmp_path):
    other = tmp_path / "copy" / source.root.name
    shutil.copytree(source.root, other)
    a = CaseCache(tmp_path / "cache", source, CONFIG)
    b = CaseCache(tmp_path / "cache", type(source)(other), CONFIG)
    assert a.folder != b.folder and a.folder.name == b.folder.name


def test_different_config_gets_its_own_folder(source, tmp_path):
    a = CaseCache(tmp_path / "cache", source, CONFIG)
    b = CaseCache(tmp_path / "cache", source, PreprocessConfig(spacing=(5.0, 5.0, 5.0), margin_mm=5.0))
    assert a.folder != b.folder and a.folder.parent == b.folder.parent
    assert a.folder.name == CONFIG.key() and a.folder.parent.parent == tmp_path / "cache"
    a.get("pt_4")
    assert b.get("pt_4").spacing == pytest.approx((5.0, 5.0, 5.0))
    assert source.reads == ["pt_4", "pt_4"]
    assert json.loads((b.folder / "config.json").read_text())["spacing"] == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("damage", ["delete_label", "truncate_image", "garbage_manifest", "entry_without_keys",
                                    "stale_tmp"])
def test_broken_entry_is_rebuilt(source, tmp_path, damage):
    cache = CaseCache(tmp_path / "cache", source, CONFIG)
    good = cache.get("pt_4")
    image = np.array(good.image)
    del good
    source.reads.clear()
    files = {p.name: p for p in cache.folder.iterdir()}
    if damage == "delete_label":
        files["pt_4.label.npy"].unlink()
    elif damage == "truncate_image":
        path = files["pt_4.image.npy"]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage_manifest":
        files["manifest.json"].write_text('{"pt_4": {"case_id": "pt_4", "fil')
    elif damage == "entry_without_keys":
        manifest = json.loads(files["manifest.json"].read_text())
        del manifest["pt_4"]["arrays"]["label"], manifest["pt_4"]["affine"]
        files["manifest.json"].write_text(json.dumps(manifest))
    else:  # a killed writer leaves only a temporary file; the entry stays valid
        (cache.folder / ".pt_4.image.npy.x1y2.tmp").write_bytes(b"partial")
    case = cache.get("pt_4")
    assert source.reads == ([] if damage == "stale_tmp" else ["pt_4"])
    assert np.array_equal(case.image, image)
    assert cache.get("pt_4") is not None and len(source.reads) <= 1  # and the rebuilt entry is a hit


def test_case_ids_with_odd_characters_get_safe_distinct_files(tmp_path):
    class Slices(Source):
        def case_ids(self):
            return ["a/b", "a_b"]

        def files(self, case_id):
            return []

        def read(self, case_id):
            image = np.full((4, 4, 1), 40.0 if case_id == "a/b" else 0.0, np.float32)
            return Case(case_id, image, np.eye(4), intensity="windowed")

    cache = CaseCache(tmp_path / "cache", Slices(tmp_path, {}), CONFIG)
    assert cache.build(progress=False) == {"cached": 0, "built": 2}
    assert cache.get("a/b").image.max() > cache.get("a_b").image.max()
    assert cache.get("a/b").label is None
    assert len(list(cache.folder.glob("*.npy"))) == 2


def test_second_run_reads_no_dicom(shared_data, tmp_path, monkeypatch):
    """Real DICOM CT + RTSTRUCT: after the first run, a new run (new source, same cache) never calls pydicom."""
    import pydicom

    from hqctf.data.formats import open_source

    options = dict(labels={1: "GTV_Mass"}, aliases={"GTV_Mass": ["GTV_Mass*"]}, cache_dir=tmp_path / "cache")
    config = PreprocessConfig(spacing=(2.0, 2.0, 3.27))
    first = CaseCache(tmp_path / "cache", open_source(shared_data / "ibsi_dicom", **options), config)
    assert first.build(progress=False) == {"cached": 0, "built": 4}
    built = {i: np.asarray(first.get(i).label).sum() for i in ("STS_008", "STS_042")}

    def no_dicom(*args, **kwargs):
        raise AssertionError("DICOM read on a cached run")

    monkeypatch.setattr(pydicom, "dcmread", no_dicom)
    monkeypatch.setattr("hqctf.data.dicom.pydicom.dcmread", no_dicom)
    second = CaseCache(tmp_path / "cache", open_source(shared_data / "ibsi_dicom", **options), config)
    assert second.build(progress=False) == {"cached": 4, "built": 0}
    assert {i: np.asarray(second.get(i).label).sum() for i in built} == built
