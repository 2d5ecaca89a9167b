"""Reading and preparing CT; knows nothing of models.

Readers (`open_source` picks one from the files) yield `Case` objects; `preprocess` and `CaseCache` prepare them
once; `SliceDataset` / `PatchDataset` draw training samples; `make_splits` writes nnU-Net-style folds.
"""

from .cache import CaseCache
from .case import Case
from .errors import DataError
from .formats import FORMATS, detect_format, open_source
from .preprocess import PreprocessConfig, preprocess
from .sample import list_cases, load_slices, read_labels, sample_dataset_dir
from .sampling import PatchDataset, SliceDataset
from .source import Source
from .splits import load_splits, make_splits, save_splits

__all__ = [
    "Case", "CaseCache", "DataError", "FORMATS", "PatchDataset", "PreprocessConfig", "SliceDataset", "Source",
    "detect_format", "list_cases", "load_slices", "load_splits", "make_splits", "open_source", "preprocess",
    "read_labels", "sample_dataset_dir", "save_splits",
]
