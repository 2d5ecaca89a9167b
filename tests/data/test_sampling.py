"""SliceDataset / PatchDataset: shapes, foreground oversampling, known structures, augmentation, crops, determinism."""

import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hqctf.data.case import Case
from hqctf.data.errors import DataError
from hqctf.data.nifti import read_nifti
from hqctf.data.preprocess import PreprocessConfig, preprocess
from hqctf.data.sample import sample_dataset_dir
from hqctf.data.sampling import PatchDataset, SliceDataset, lateral


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    """Two preprocessed OpenKBP cases of the embedded sample; Esophagus (5) not contoured in pt_13."""
    root = sample_dataset_dir()
    labels = {int(v): k for k, v in json.loads((root / "dataset.json").read_text())["labels"].items() if int(v)}
    out = []
    for case_id, unknown in (("pt_4", ()), ("pt_13", (5,))):
        image, affine = read_nifti(root / "imagesTr" / f"{case_id}_0000.nii.gz")
        label, _ = read_nifti(root / "labelsTr" / f"{case_id}.nii.gz")
        label[label == 5] = 0 if unknown else 5
        case = Case(case_id, image.astype(np.float32), affine, label, labels, unknown=unknown)
        out.append(preprocess(case, PreprocessConfig()))
    return out


def _same(a: dict, b: dict) -> bool:
    return a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_slice_shapes_and_dtypes(cases):
    ds = SliceDataset(cases, (128, 96), samples_per_epoch=20, augment=True, seed=1)
    assert len(ds) == 20
    for i in range(20):
        s = ds[i]
        assert s["image"].shape == (1, 128, 96) and s["image"].dtype == torch.float32
        assert s["label"].shape == (128, 96) and s["label"].dtype == torch.int64
        assert s["known"].shape == (8,) and s["known"].dtype == torch.bool
        assert s["case_id"] in {"pt_4", "pt_13"} and torch.isfinite(s["image"]).all()
    whole = SliceDataset(cases, None, samples_per_epoch=4, augment=False)
    assert {tuple(whole[i]["image"].shape) for i in range(4)} <= {(1, *c.image.shape[:2]) for c in cases}
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 1, 128, 96) and batch["known"].shape == (4, 8) and len(batch["case_id"]) == 4
    with pytest.raises(IndexError):
        ds[20]


def test_patch_shapes_and_dtypes(cases):
    ds = PatchDataset(cases, (48, 40, 32), samples_per_epoch=4, augment=True, seed=0)
    s = ds[0]
    assert s["image"].shape == (1, 48, 40, 32) and s["image"].dtype == torch.float32
    assert s["label"].shape == (48, 40, 32) and s["label"].dtype == torch.int64 and s["known"].shape == (8,)


def test_foreground_oversampling_raises_the_foreground_fraction(cases):
    def fraction(p: float) -> float:
        ds = SliceDataset(cases, (40, 40), foreground_fraction=p, samples_per_epoch=400, augment=False, seed=3)
        return float(np.mean([bool(ds[i]["label"].any()) for i in range(400)]))

    always, never = fraction(1.0), fraction(0.0)
    assert always == 1.0
    assert never < 0.7, never  # random 40x40 crops of random slices often miss the small organs (0.54 here)
    assert 0.5 * (always + never) - 0.1 < fraction(0.5) < 0.5 * (always + never) + 0.1


def test_known_marks_the_unknown_structures(cases):
    ds = SliceDataset(cases, (64, 64), samples_per_epoch=30, augment=False)
    seen = {}
    for i in range(30):
        s = ds[i]
        seen[s["case_id"]] = s["known"]
    assert seen["pt_4"].all()
    assert seen["pt_13"].tolist() == [True] * 5 + [False] + [True] * 2
    wider = PatchDataset(cases, (16, 16, 16), samples_per_epoch=2, max_label=10)
    assert wider[0]["known"].shape == (11,)


def test_augmentation_keeps_labels_and_is_deterministic(cases):
    a = SliceDataset(cases, (96, 96), foreground_fraction=1.0, samples_per_epoch=40, augment=True, seed=7)
    b = SliceDataset(cases, (96, 96), foreground_fraction=1.0, samples_per_epoch=40, augment=True, seed=7)
    plain = SliceDataset(cases, (96, 96), foreground_fraction=1.0, samples_per_epoch=40, augment=False, seed=7)
    order = [5, 3, 39, 0, 3]
    first = [a[i] for i in order]
    assert all(_same(x, b[i]) for x, i in zip(first, order))  # another instance, the same samples
    assert _same(first[1], first[4])  # the same index again
    changed = 0
    for i in range(40):
        s = a[i]
        values = set(torch.unique(s["label"]).tolist())
        case = next(c for c in cases if c.case_id == s["case_id"])
        assert values <= {0, *np.unique(case.label).tolist()}  # nearest: no new or blended values
        changed += not torch.equal(s["image"], plain[i]["image"])
    assert changed > 20  # augmentation does something
    other = SliceDataset(cases, (96, 96), foreground_fraction=1.0, samples_per_epoch=40, augment=True, seed=8)
    assert not all(_same(a[i], other[i]) for i in range(5))
    a.set_epoch(1)
    assert not all(_same(a[i], b[i]) for i in range(5))
    a.set_epoch(0)
    assert _same(a[3], b[3])


def test_dataloader_workers_reproduce_the_samples(cases):
    ds = PatchDataset(cases, (32, 32, 32), samples_per_epoch=6, augment=True, seed=5)
    direct = torch.stack([ds[i]["image"] for i in range(6)])
    loaded = torch.cat([b["image"] for b in DataLoader(ds, batch_size=2, num_workers=2)])
    assert torch.equal(direct, loaded)


def test_lateral_structures_are_not_mirrored_left_right(cases):
    assert lateral(["Brainstem", "LeftParotid"]) and lateral(["Parotid_L"]) and lateral(["kidney_right"])
    assert not lateral(["Liver", "Lung", "L1_vertebra", "Larynx"])
    assert SliceDataset(cases, (64, 64)).flip_axes == (1,)  # OpenKBP has Left/RightParotid
    liver = Case("c", np.zeros((8, 8, 8), np.float32), np.eye(4), np.ones((8, 8, 8), np.uint8), {1: "Liver"})
    assert PatchDataset([liver], (4, 4, 4)).flip_axes == (0, 1, 2)
    assert SliceDataset([liver], (4, 4), flip_axes=()).transform.transforms[0].__class__.__name__ == "RandAffined"


def _coordinates(shape) -> Case:
    """A case whose image value encodes the voxel (x * 10000 + y * 100 + z + 1); label 1 on one voxel."""
    x, y, z = np.indices(shape)
    label = np.zeros(shape, np.uint8)
    label[tuple(s - 2 for s in shape)] = 1
    return Case("grid", (x * 10000 + y * 100 + z + 1).astype(np.float32), np.eye(4), label, {1: "Spot"})


@pytest.mark.parametrize("foreground_fraction", [0.0, 1.0])
def test_patches_are_blocks_inside_the_volume(foreground_fraction):
    case = _coordinates((30, 25, 20))
    ds = PatchDataset([case], (16, 12, 8), foreground_fraction, samples_per_epoch=50, augment=False, seed=2)
    for i in range(50):
        s = ds[i]
        v = s["image"][0].numpy().astype(np.int64) - 1
        x, y, z = v // 10000, v // 100 % 100, v % 100
        assert np.array_equal(x, np.broadcast_to(x[0, 0, 0] + np.arange(16)[:, None, None], x.shape))
        assert np.array_equal(y, np.broadcast_to(y[0, 0, 0] + np.arange(12)[None, :, None], y.shape))
        assert np.array_equal(z, np.broadcast_to(z[0, 0, 0] + np.arange(8)[None, None, :], z.shape))
        assert x.max() < 30 and y.max() < 25 and z.max() < 20 and v.min() >= 0
        assert foreground_fraction == 0.0 or s["label"].sum() == 1  # the foreground voxel is inside


def test_small_volumes_are_padded():
    case = _coordinates((6, 5, 4))
    patch = PatchDataset([case], (10, 9, 8), samples_per_epoch=1, augment=False)[0]
    assert patch["image"].shape == (1, 10, 9, 8)
    assert torch.equal(patch["image"][0, 2:8, 2:7, 2:6], torch.from_numpy(case.image))
    assert patch["image"][0, :2].eq(1.0).all() and patch["label"].sum() == 1  # padded with the minimum, label 0
    image = SliceDataset([case], (8, 8), samples_per_epoch=3, augment=False)[2]["image"]
    inner = image[0, 1:7, 1:6].numpy()
    assert image.shape == (1, 8, 8) and np.array_equal(inner, case.image[:, :, int(inner[0, 0]) - 1])
    assert image[0, 0].eq(inner.min()).all()


def test_memory_mapped_fortran_arrays_give_the_same_samples(cases, tmp_path):
    mapped = []
    for case in cases:
        np.save(tmp_path / f"{case.case_id}.i.npy", np.asfortranarray(case.image))
        np.save(tmp_path / f"{case.case_id}.l.npy", np.asfortranarray(case.label))
        mapped.append(Case(case.case_id, np.load(tmp_path / f"{case.case_id}.i.npy", mmap_mode="r"), case.affine,
                           np.load(tmp_path / f"{case.case_id}.l.npy", mmap_mode="r"), case.structures,
                           case.unknown))
    for cls, size in ((SliceDataset, (64, 64)), (PatchDataset, (32, 32, 16))):
        a = cls(cases, size, samples_per_epoch=10, augment=True, seed=4)
        b = cls(mapped, size, samples_per_epoch=10, augment=True, seed=4)
        assert all(_same(a[i], b[i]) for i in range(10))
        blob = pickle.dumps(b)  # what spawn / forkserver DataLoader workers receive: file references, not voxels
        assert len(blob) < sum(case.image.nbytes for case in cases) / 20  # (plus the foreground locations)
        c = pickle.loads(blob)
        assert isinstance(c.cases[0].image, np.memmap) and all(_same(a[i], c[i]) for i in range(10))


def test_bad_inputs_raise():
    unlabelled = Case("c", np.zeros((4, 4, 4), np.float32), np.eye(4), sources=("scan.nii.gz",))
    with pytest.raises(DataError, match="scan.nii.gz: case c has no label map"):
        SliceDataset([unlabelled], (4, 4))
    ok = _coordinates((4, 4, 4))
    for bad in (dict(foreground_fraction=1.5), dict(samples_per_epoch=0), dict(size=(4, 4, 4))):
        with pytest.raises(ValueError):
            SliceDataset([ok], **{"size": (4, 4), **bad})
