"""make_splits / save_splits / load_splits: partitions, patient grouping, determinism, round trip, bad files."""

import json
import random

import pytest

from hqctf.data.errors import DataError
from hqctf.data.splits import load_splits, make_splits, save_splits

CASES = [f"case_{i:03d}" for i in range(23)]
PATIENTS = [f"p{i // 3 if i < 15 else i}" for i in range(23)]  # five patients with three cases each, then singles


def _patient(case: str) -> str:
    return PATIENTS[CASES.index(case)]


@pytest.mark.parametrize("test_fraction", [0.0, 0.2])
def test_folds_partition_the_cases_and_group_patients(test_fraction):
    splits = make_splits(CASES, PATIENTS, n_folds=4, test_fraction=test_fraction, seed=1)
    assert len(splits) == 4
    test = set(splits[0].get("test", []))
    assert ("test" in splits[0]) == (test_fraction > 0)
    if test_fraction:
        assert all(set(s["test"]) == test for s in splits)
        assert abs(len(test) - 0.2 * 23) <= 3
    vals = [set(s["val"]) for s in splits]
    assert sum(map(len, vals)) == len(set().union(*vals)) == 23 - len(test)  # disjoint, covering
    assert set().union(*vals) | test == set(CASES)
    for s in splits:
        assert set(s["train"]) | set(s["val"]) == set(CASES) - test and not set(s["train"]) & set(s["val"])
        assert s["train"] == sorted(s["train"]) and s["val"] == sorted(s["val"])
        groups = [{_patient(c) for c in s[k]} for k in ("train", "val")] + [{_patient(c) for c in test}]
        assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 3  # balanced up to one patient


def test_deterministic_order_independent_and_seeded():
    a = make_splits(CASES, PATIENTS, n_folds=5, test_fraction=0.1, seed=3)
    pairs = list(zip(CASES, PATIENTS))
    random.Random(0).shuffle(pairs)
    b = make_splits([c for c, _ in pairs], [p for _, p in pairs], n_folds=5, test_fraction=0.1, seed=3)
    assert a == b == make_splits(CASES, PATIENTS, n_folds=5, test_fraction=0.1, seed=3)
    assert make_splits(CASES, PATIENTS, n_folds=5, test_fraction=0.1, seed=4) != a


def test_cases_are_their_own_patients_by_default():
    splits = make_splits(CASES, n_folds=5)
    assert sorted(len(s["val"]) for s in splits) == [4, 4, 5, 5, 5] and "test" not in splits[0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(case_ids=["a", "a", "b"]), "duplicates"),
    (dict(case_ids=["a", "b"], patient_ids=["p"]), "1 patient_ids for 2"),
    (dict(case_ids=["a", "b", "c"], n_folds=4), "n_folds=4"),
    (dict(case_ids=["a", "b", "c"], n_folds=1), "n_folds=1"),
    (dict(case_ids=["a", "b", "c"], test_fraction=1.0), "test_fraction"),
])
def test_make_splits_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_splits(**kwargs)


def test_round_trip(tmp_path):
    splits = make_splits(CASES, PATIENTS, n_folds=3, test_fraction=0.2)
    path = tmp_path / "nested" / "splits_final.json"
    save_splits(path, splits)
    assert load_splits(path, CASES) == splits
    assert json.loads(path.read_text()) == splits  # plain nnU-Net layout
    assert [p.name for p in path.parent.iterdir()] == ["splits_final.json"]  # no temporary file left


@pytest.mark.parametrize("content, message", [
    ('[{"train": ["case_000"], "val": [', "not valid JSON"),
    ('{"train": [], "val": []}', "expected a non-empty JSON list"),
    ('[{"train": ["case_000"]}]', "fold 0 must be an object with 'train' and 'val'"),
    ('[{"train": ["case_000"], "val": [3]}]', "fold 0 'val' must be a list of case id strings"),
    ('[{"train": ["case_000"], "val": ["case_001"]}, {"train": ["case_001"], "val": ["nope"]}]',
     r"fold 1 'val' has unknown case ids \['nope'\]"),
    ('[{"train": ["case_000", "case_001"], "val": ["case_001"]}]', "fold 0 has cases in both 'train' and 'val'"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "splits_final.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_splits(path, CASES)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="splits_final.json: split file not found"):
        load_splits(tmp_path / "splits_final.json")
