import numpy as np
import pytest

from hqctf.data.case import Case
from hqctf.data.errors import DataError


def _case(**kw):
    base = dict(case_id="c1", image=np.zeros((4, 5, 6), np.float32), affine=np.diag([2.0, 3.0, 4.0, 1.0]),
                label=np.zeros((4, 5, 6), np.uint8), structures={1: "Liver", 2: "Spleen"}, sources=("img.nii.gz", "lab.nii.gz"))
    base.update(kw)
    return Case(**base)


def test_spacing_volumes_and_known():
    label = np.zeros((4, 5, 6), np.uint8)
    label[0, 0, :5] = 1
    case = _case(label=label, unknown={2})
    assert case.spacing == (2.0, 3.0, 4.0)
    assert case.volumes_cc() == {"Liver": pytest.approx(5 * 24 / 1000), "Spleen": 0.0}
    assert case.known == {1: "Liver"}
    assert case.patient_id == "c1"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image": np.zeros((4, 5), np.float32)}, "img.nii.gz: expected a 3D image"),
        ({"image": np.full((4, 5, 6), np.nan, np.float32)}, "img.nii.gz: image has 120 NaN/inf voxels"),
        ({"label": np.zeros((4, 5, 7), np.uint8)}, "lab.nii.gz: label shape"),
        ({"label": np.full((4, 5, 6), 3, np.uint8)}, r"lab.nii.gz: label values \[3\]"),
        ({"affine": np.zeros((4, 4))}, "invalid affine"),
    ],
)
def test_validate_names_file_and_problem(change, message):
    with pytest.raises(DataError, match=message):
        _case(**change).validate()
