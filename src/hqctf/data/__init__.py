"""Reading and preparing CT; knows nothing of models."""

from .errors import DataError
from .sample import list_cases, load_slices, read_labels, sample_dataset_dir

__all__ = ["DataError", "list_cases", "load_slices", "read_labels", "sample_dataset_dir"]
