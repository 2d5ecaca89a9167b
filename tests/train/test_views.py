"""The one overlay convention: radiological axial view from the RAS affine, letters on every panel, the crop that
keeps every predicted pixel in view, and OpenKBP's true axes (`hqctf.data.openkbp`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hqctf.data.nnunet import NnUNetSource
from hqctf.data.openkbp import openkbp_affine
from hqctf.data.preprocess import PreprocessConfig, preprocess
from hqctf.data.sample import sample_dataset_dir
from hqctf.train.figures import COLOURS, overlay_box, overlay_figure, overlay_png
from hqctf.train.views import axial_axis, axial_view, busiest_slice, display_affine

RADIOLOGICAL_LETTERS = {"top": "A", "bottom": "P", "left": "R", "right": "L"}
SHAPE = (20, 16, 6)  # RAS: x (to the patient's right), y (to anterior), z (to superior)


def _ras_case() -> tuple[np.ndarray, np.ndarray]:
    """A RAS volume with one structure on the patient's left-anterior (low x, high y), largest on slice z = 3."""
    label = np.zeros(SHAPE, np.uint8)
    label[1:4, 12:15, 3] = 1
    label[1:3, 12:14, 4] = 1
    return label, np.diag([1.0, 1.0, 2.0, 1.0])


def _stored(codes: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The RAS case stored another way, built by hand (not with nibabel): (array, affine, the index of z = 3)."""
    ras, affine = _ras_case()
    nx, ny, nz = SHAPE
    if codes == "RAS":
        return ras, affine, 3
    if codes == "LPS":  # DICOM's order: x and y reversed
        lps = np.eye(4)
        lps[:3, :3] = np.diag([-1.0, -1.0, 2.0])
        lps[:3, 3] = [nx - 1, ny - 1, 0]
        return ras[::-1, ::-1, :].copy(), lps, 3
    if codes == "IPR":  # permuted and flipped (KiTS19-like): axis 0 to inferior, 1 to posterior, 2 to the right
        out = np.zeros((4, 4))
        out[:3, 0], out[:3, 1], out[:3, 2] = [0, 0, -2.0], [0, -1.0, 0], [1.0, 0, 0]
        out[:3, 3], out[3, 3] = [0, ny - 1, 2.0 * (nz - 1)], 1
        return ras.transpose(2, 1, 0)[::-1, ::-1, :].copy(), out, nz - 1 - 3
    raise ValueError(codes)


def _world_centroid(label: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(label > 0)
    return (affine[:3, :3] @ idx.T).T.mean(0) + affine[:3, 3]


@pytest.mark.parametrize("codes", ["RAS", "LPS", "IPR"])
def test_left_anterior_structure_lands_top_right(codes):
    label, affine, z3 = _stored(codes)
    ras, ras_affine = _ras_case()
    np.testing.assert_allclose(_world_centroid(label, affine), _world_centroid(ras, ras_affine))  # same patient
    assert busiest_slice(label, affine) == z3
    view = axial_view(label, affine, z3)
    assert view.image.shape == (SHAPE[1], SHAPE[0])  # rows along anterior-posterior, columns along right-left
    rows, cols = np.nonzero(view.image)
    assert rows.max() < SHAPE[1] // 2 and cols.min() >= SHAPE[0] // 2  # anterior: top; patient's left: image right
    assert view.letters == RADIOLOGICAL_LETTERS
    expected = axial_view(ras, ras_affine, 3).image
    np.testing.assert_array_equal(view.image, expected)  # every storage order shows the same picture
    # independent of nibabel: RAS displayed radiologically is the slice transposed, rows and columns reversed
    np.testing.assert_array_equal(expected, ras[:, :, 3].T[::-1, ::-1])


def test_unknown_orientation_is_drawn_as_stored():
    png_like = np.arange(12.0).reshape(4, 3, 1)  # (X = image columns, Y = image rows, 1)
    view = axial_view(png_like, None, 0)
    np.testing.assert_array_equal(view.image, png_like[:, :, 0].T)
    assert view.letters is None and axial_axis(None) == 2


def _centre(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(0)


def test_openkbp_sample_mandible_points_up():
    """The embedded OpenKBP files store a diagonal affine; their arrays run to posterior, the patient's left and
    inferior. Read through the corrected affine, the Mandible is anterior (up) and the RightParotid on the image
    left, in the raw file (demo) and after reorientation to RAS (training, validation overlays)."""
    source = NnUNetSource(sample_dataset_dir())
    mandible, cord, right, left = 7, 2, 3, 4
    for case_id in source.case_ids():
        raw = source.read(case_id)
        for case in (raw, preprocess(raw, PreprocessConfig())):
            affine = display_affine(case)
            z = busiest_slice(case.label == mandible, affine)
            view = axial_view(case.label, affine, z).image
            assert _centre(view == mandible)[0] < _centre(view == cord)[0] - 5  # mandible above (anterior of) the cord
            z = busiest_slice(np.isin(case.label, [right, left]), affine)
            view = axial_view(case.label, affine, z).image
            assert _centre(view == right)[1] < _centre(view == left)[1] - 10  # radiological: patient's right on the left
    affine, shape = source.file_grid("pt_4")
    assert shape == (128, 128, 128)
    np.testing.assert_allclose(affine[:3, :3], [[0, -3.906, 0], [-3.906, 0, 0], [0, 0, -2.5]], atol=1e-3)


def test_openkbp_affine_only_replaces_a_diagonal_one():
    fixed = openkbp_affine(np.diag([2.0, 3.0, 4.0, 1.0]))
    np.testing.assert_array_equal(fixed[:3, :3], [[0, -3.0, 0], [-2.0, 0, 0], [0, 0, -4.0]])
    assert np.linalg.det(fixed[:3, :3]) > 0  # a rotation of the stored frame, not a mirror
    oriented = np.array([[0, -1.0, 0, 5], [-1.0, 0, 0, 6], [0, 0, -1.0, 7], [0, 0, 0, 1]])
    np.testing.assert_array_equal(openkbp_affine(oriented), oriented)
    np.testing.assert_array_equal(openkbp_affine(np.diag([-1.0, 1, 1, 1])), np.diag([-1.0, 1, 1, 1]))


def _body_and_blob() -> tuple[np.ndarray, np.ndarray]:
    """A 100 x 100 slice: body (a disc) in the middle, air elsewhere; a predicted blob in the air's corner."""
    yy, xx = np.mgrid[:100, :100]
    image = np.where((yy - 50) ** 2 + (xx - 50) ** 2 < 15**2, 1.0, -1.0)
    label = np.zeros((100, 100), np.int64)
    label[45:55, 45:55] = 2
    label[3:13, 85:95] = 1  # outside the body
    return image, label


def test_crop_keeps_predictions_outside_the_body():
    image, label = _body_and_blob()
    rows, cols = overlay_box(image, [label])
    assert rows.start <= 3 and rows.stop >= 13 and cols.start <= 85 and cols.stop >= 95
    rows, cols = overlay_box(image)  # the body alone
    assert rows.start >= 30 and cols.stop <= 72


def _pixels(png: bytes, colour: str) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).sum(-1) < 30).sum())


def test_overlay_draws_the_blob_in_the_air():
    image, label = _body_and_blob()
    names = ["background", "blob", "organ"]
    png = overlay_png(image, {"prediction": label}, names, letters=RADIOLOGICAL_LETTERS)
    without = overlay_png(image, {"prediction": np.where(label == 1, 0, label)}, names, letters=RADIOLOGICAL_LETTERS)
    # the legend shows the blob's colour either way; only the blob's own contour adds more of it
    assert _pixels(png, COLOURS[0]) - _pixels(without, COLOURS[0]) > 50
    assert _pixels(png, COLOURS[1]) > 20


def test_letters_on_every_panel():
    label, affine, z = _stored("LPS")
    view = axial_view(label, affine, z)
    fig = overlay_figure(view.image.astype(float), {"reference": view.image, "prediction": view.image}, ["bg", "x"],
                         letters=view.letters)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    for ax in panels:
        placed = {t.get_text(): t.get_position() for t in ax.texts}
        assert set(placed) == {"A", "P", "R", "L"}
        assert placed["A"][1] > placed["P"][1] and placed["R"][0] < placed["L"][0]  # A on top, R on the left
    unknown = overlay_figure(view.image.astype(float), {"p": view.image}, ["bg", "x"], letters=None)
    assert not any(ax.texts for ax in unknown.axes)


def test_run_curves_have_whole_epoch_ticks():
    from hqctf.train.figures import run_curves_figure

    for last in (1, 3, 30):  # one validation point at epoch 2 alone once made the right panel's ticks 1.9, 1.925...
        history = [{"epoch": e, "loss": 1.0 / e, **({"val_dice": 0.01 * e} if e % 2 == 0 else {})}
                   for e in range(1, last + 1)]
        for ax in run_curves_figure(history).axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), (last, ticks)
