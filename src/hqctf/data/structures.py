"""Matching structure (ROI / segment) names to label values: TG-263 names, common aliases, user patterns."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence

from .errors import DataError

#: TG-263 primary names with aliases seen in clinical and challenge data (compared after `normalise`).
TG263_ALIASES: dict[str, tuple[str, ...]] = {
    "Brainstem": ("Brain_Stem", "BrainStem", "Brain Stem", "Stem"),
    "SpinalCord": ("Spinal_Cord", "Cord", "Spinal Cord", "SC"),
    "Parotid_R": ("RightParotid", "Right_Parotid", "Parotid_Rt", "R_Parotid", "Parotid Right", "RtParotid"),
    "Parotid_L": ("LeftParotid", "Left_Parotid", "Parotid_Lt", "L_Parotid", "Parotid Left", "LtParotid"),
    "Esophagus": ("Oesophagus", "Esophagus_S", "Esoph"),
    "Larynx": ("Larynx_SG", "Glottis"),
    "Bone_Mandible": ("Mandible", "Jaw"),
    "Kidney_R": ("RightKidney", "Right_Kidney", "kidney_right", "Kidney_Rt"),
    "Kidney_L": ("LeftKidney", "Left_Kidney", "kidney_left", "Kidney_Lt"),
    "Kidneys": ("Kidney", "Kidney_Both"),
    "Liver": ("Hepar",),
    "Spleen": (),
    "Heart": ("Cor",),
    "Lung_R": ("RightLung", "Right_Lung", "lung_right", "Lung_Rt"),
    "Lung_L": ("LeftLung", "Left_Lung", "lung_left", "Lung_Lt"),
    "Lungs": ("Lung", "Lung_Both", "Lungs_Total"),
    "Bladder": ("Urinary_Bladder", "urinary_bladder"),
    "Rectum": (),
    "Prostate": (),
    "Femur_Head_R": ("Femoral_Head_R", "FemoralHead_R", "femur_right"),
    "Femur_Head_L": ("Femoral_Head_L", "FemoralHead_L", "femur_left"),
    "Eye_R": ("RightEye", "Globe_R"),
    "Eye_L": ("LeftEye", "Globe_L"),
    "OpticNrv_R": ("OpticNerve_R", "Optic_Nerve_R"),
    "OpticNrv_L": ("OpticNerve_L", "Optic_Nerve_L"),
    "OpticChiasm": ("Chiasm", "Optic_Chiasm"),
    "Body": ("External", "Skin", "BODY", "Outline"),
}


def normalise(name: str) -> str:
    """Case-insensitive comparison key: lower case, letters and digits only (``"Parotid_L "`` -> ``"parotidl"``)."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def aliases_of(name: str) -> set[str]:
    """Normalised spellings that count as ``name``: itself, and its TG-263 group if it belongs to one."""
    key = normalise(name)
    for primary, aliases in TG263_ALIASES.items():
        group = {normalise(primary), *(normalise(a) for a in aliases)}
        if key in group:
            return group
    return {key}


def tg263_name(name: str) -> str:
    """The TG-263 primary name of ``name`` when it is a known alias (``RightParotid`` -> ``Parotid_R``), else ``name``."""
    key = normalise(name)
    for primary, aliases in TG263_ALIASES.items():
        if key in {normalise(primary), *(normalise(a) for a in aliases)}:
            return primary
    return name


def _matches(roi: str, label_name: str, patterns: Sequence[str]) -> bool:
    if normalise(roi) in aliases_of(label_name):
        return True
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            if fnmatch.fnmatchcase(roi.casefold(), pattern.casefold()):
                return True
        elif normalise(roi) in aliases_of(pattern):
            return True
    return False


def match_structures(
    present: Iterable[str],
    labels: Mapping[int, str],
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> dict[int, str | None]:
    """Find, for every label, the one structure name in ``present`` that means it.

    Args:
        present: structure names found in the file (RTSTRUCT ROI names, DICOM-SEG segment labels).
        labels: label value -> label name (background excluded). Names match case-insensitively, ignoring
            punctuation, and through TG-263 aliases (``RightParotid`` finds ``Parotid_R``).
        aliases: label name -> extra names or glob patterns (``{"GTV": ["GTV_Mass*"]}``), matched the same way.

    Returns:
        label value -> the matching name from ``present``, or None where nothing matches.

    Raises:
        DataError: a label matches several present names (ambiguous). The caller adds the file name.
    """
    present = list(present)
    aliases = aliases or {}
    found: dict[int, str | None] = {}
    for value, name in labels.items():
        hits = [roi for roi in present if _matches(roi, name, list(aliases.get(name, ())))]
        if len(hits) > 1:
            raise DataError(f"label '{name}' matches several structures {hits}; give an exact alias")
        found[value] = hits[0] if hits else None
    return found
