"""`write_seg`: a predicted label map on a CT series' grid as a DICOM Segmentation (highdicom, binary segments)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from .. import __version__
from ..atomic import atomic_path
from .rtstruct import SERIES_NUMBER, _check_label, _read_series

#: SeriesNumber of the written DICOM-SEG series (the RTSTRUCT's plus one).
SEG_SERIES_NUMBER = SERIES_NUMBER + 1


def write_seg(label: np.ndarray, ct_files: Sequence[Path], structures: dict[int, str], out_path: Path, *,
              series_description: str = "hqctf prediction") -> list[str]:
    """Write ``label`` as a DICOM-SEG referencing the CT series ``ct_files``, one binary segment per non-empty
    structure (labelled with its name); returns the names of the empty structures, which are left out.

    Nothing is written when every structure is empty. ``label``, ``ct_files`` and ``structures`` are as for
    `write_rtstruct`, which raises the same ValueErrors.
    """
    slices, _, _ = _read_series(ct_files)
    rows, columns = slices[0].size
    _check_label(label, structures, (columns, rows, len(slices)))
    filled = {v: n for v, n in sorted(structures.items()) if np.any(label == v)}
    empty = [n for v, n in sorted(structures.items()) if v not in filled]
    if not filled:
        return empty
    algorithm = hd.AlgorithmIdentificationSequence(name="hqctf", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(segment_number=number, segment_label=name,
                                          segmented_property_category=codes.SCT.Tissue,
                                          segmented_property_type=codes.SCT.Tissue,
                                          algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                          algorithm_identification=algorithm)
                for number, name in enumerate(filled.values(), start=1)]
    pixels = np.stack([label == v for v in filled], axis=-1).transpose(2, 1, 0, 3)  # (slices, rows, columns, segments)
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(s.path) for s in slices], pixel_array=pixels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="hqctf", manufacturer_model_name="hqctf", software_versions=__version__,
        device_serial_number="0", series_description=series_description)
    with atomic_path(out_path) as tmp:
        seg.save_as(tmp)
    return empty
