"""PngSliceSource on the real KiTS19 PNG slices and on broken copies."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hqctf.data.errors import DataError
from hqctf.data.png import PngSliceSource

KIDNEY, TUMOUR = (0, 0, 255), (255, 0, 0)


@pytest.fixture(scope="module")
def kits_png(shared_data: Path) -> Path:
    return shared_data / "kits19_png"


def colour_count(mask: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(mask == colour, axis=-1).sum())


def test_real_slices_decode_to_kidney_and_tumour(kits_png: Path) -> None:
    source = PngSliceSource(kits_png)
    assert source.format == "png" and source.labels == {1: "kidney", 2: "tumor"}
    assert len(source) == 24
    totals: Counter[int] = Counter()
    for case in source:
        png = np.asarray(Image.open(kits_png / "images" / f"{case.case_id}.png"))
        mask = np.asarray(Image.open(kits_png / "masks" / f"{case.case_id}.png").convert("RGB"))
        assert case.image.shape == case.label.shape == (512, 512, 1) and case.image.dtype == np.float32
        np.testing.assert_array_equal(case.image, png.T[..., None])
        assert np.count_nonzero(case.label == 1) == colour_count(mask, KIDNEY)
        assert np.count_nonzero(case.label == 2) == colour_count(mask, TUMOUR)
        np.testing.assert_array_equal(case.label[..., 0].T == 1, np.all(mask == KIDNEY, axis=-1))
        assert case.intensity == "windowed" and case.unknown == frozenset()
        np.testing.assert_array_equal(case.affine, np.eye(4))
        totals.update({v: int(np.count_nonzero(case.label == v)) for v in (1, 2)})
    assert totals[1] > 0 and totals[2] > 0


def test_patient_grouping(kits_png: Path) -> None:
    source = PngSliceSource(kits_png)
    patients = Counter(source.read(cid).patient_id for cid in source.case_ids())
    assert patients == {"10036": 16, "10037": 3, "10038": 1, "10040": 3, "10041": 1}
    assert source.read("10036_103").patient_id == "10036"


@pytest.fixture
def copy_one(kits_png: Path, tmp_path: Path) -> Path:
    """A writable copy holding one real slice, 10036_127 (kidney and tumour)."""
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
        shutil.copy(kits_png / folder / "10036_127.png", tmp_path / folder)
    return tmp_path


def test_rgb_grey_image_and_custom_colours(copy_one: Path) -> None:
    image_path = copy_one / "images/10036_127.png"
    grey = np.asarray(Image.open(image_path))
    Image.open(image_path).convert("RGB").save(image_path)
    source = PngSliceSource(copy_one, colours={"tumour": TUMOUR, "kidney": KIDNEY})
    case = source.read("10036_127")
    np.testing.assert_array_equal(case.image[..., 0], grey.T)
    assert case.structures == {1: "tumour", 2: "kidney"}
    mask = np.asarray(Image.open(copy_one / "masks/10036_127.png"))
    assert np.count_nonzero(case.label == 1) == colour_count(mask, TUMOUR)


def _paint_mask(root: Path) -> None:
    path = root / "masks/10036_127.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0], mask[0, 1] = (0, 255, 0), (10, 20, 30)
    Image.fromarray(mask).save(path)


def _colour_image(root: Path) -> None:
    path = root / "images/10036_127.png"
    rgb = np.asarray(Image.open(path).convert("RGB")).copy()
    rgb[5, 5] = (1, 2, 3)
    Image.fromarray(rgb).save(path)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("break_it", "named", "fragment"),
    [
        (_paint_mask, "masks/10036_127.png", r"unexpected mask colours \[\(0, 255, 0\), \(10, 20, 30\)\]"),
        (lambda r: (r / "masks/10036_127.png").unlink(), "masks/10036_127.png", "mask file not found for image 10036_127.png"),
        (_colour_image, "images/10036_127.png", "colour image; expected grey"),
        (lambda r: _truncate(r / "images/10036_127.png"), "images/10036_127.png", "truncated or corrupt"),
        (lambda r: (r / "masks/10036_127.png").write_bytes(b"garbage" * 10), "masks/10036_127.png", "truncated or corrupt"),
        (lambda r: Image.new("L", (4, 4)).save(r / "masks/10036_127.png"), "masks/10036_127.png", r"label shape \(4, 4, 1\)"),
    ],
    ids=["unexpected colours", "missing mask", "colour image", "truncated image", "corrupt mask", "mask size"],
)
def test_broken_slices(copy_one: Path, break_it, named: str, fragment: str) -> None:
    break_it(copy_one)
    with pytest.raises(DataError, match=fragment) as err:
        PngSliceSource(copy_one).read("10036_127")
    assert str(err.value).startswith(f"{copy_one / named}: ") and "\n" not in str(err.value)


def test_missing_images_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="images folder not found"):
        PngSliceSource(tmp_path).case_ids()


@pytest.mark.parametrize("colours", [{"a": (0, 0, 0)}, {"a": (1, 2, 3), "b": (1, 2, 3)}, {"a": (1, 2, 300)}])
def test_bad_colour_maps(tmp_path: Path, colours: dict) -> None:
    with pytest.raises(ValueError, match="colours must be distinct RGB triples"):
        PngSliceSource(tmp_path, colours=colours)
