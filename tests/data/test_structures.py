import pytest

from hqctf.data.errors import DataError
from hqctf.data.structures import aliases_of, match_structures, normalise, tg263_name


@pytest.mark.parametrize(
    "present, label, aliases, expected",
    [
        (["BrainStem", "Cord"], "Brainstem", None, "BrainStem"),
        (["brain stem"], "Brainstem", None, "brain stem"),
        (["Parotid Lt", "Parotid Rt"], "LeftParotid", None, "Parotid Lt"),
        (["Parotid Lt", "Parotid Rt"], "Parotid_R", None, "Parotid Rt"),
        (["OESOPHAGUS"], "Esophagus", None, "OESOPHAGUS"),
        (["Mandible"], "Bone_Mandible", None, "Mandible"),
        (["GTV_Mass_CT", "BODY"], "GTV_Mass", {"GTV_Mass": ["GTV_Mass*"]}, "GTV_Mass_CT"),
        (["GTV_Mass_CT"], "GTV_Mass", None, None),
        (["Liver"], "Spleen", None, None),
        (["PTV 70"], "PTV70", None, "PTV 70"),
    ],
)
def test_match_structures(present, label, aliases, expected):
    assert match_structures(present, {1: label}, aliases) == {1: expected}


def test_left_and_right_are_distinct():
    assert aliases_of("Parotid_L").isdisjoint(aliases_of("Parotid_R"))
    assert normalise(" Parotid_L ") == "parotidl"


def test_ambiguous_match_is_an_error():
    with pytest.raises(DataError, match="matches several structures"):
        match_structures(["GTV_1", "GTV_2"], {1: "GTV"}, {"GTV": ["GTV_*"]})


@pytest.mark.parametrize("name, primary", [("RightParotid", "Parotid_R"), ("Mandible", "Bone_Mandible"),
                                           ("brain stem", "Brainstem"), ("GTV_Mass", "GTV_Mass")])
def test_tg263_name(name, primary):
    assert tg263_name(name) == primary
