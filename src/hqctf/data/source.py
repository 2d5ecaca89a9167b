"""`Source`: the interface every reader implements (a folder of cases in one format)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from .case import Case


def natural_key(name: str) -> list[int | str]:
    """Sort key ordering the numbers inside names by value: pt_1, pt_2, ..., pt_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class Source(ABC):
    """A dataset on disk in one format; cases are read one at a time, on demand.

    Attributes:
        root: the folder (or file) the source was opened on.
        labels: label value -> structure name for the whole dataset (background excluded).
        format: short format name shown by ``hqctf data inspect`` (``"nnunet"``, ``"dicom"``, ...).
    """

    format: str = ""

    def __init__(self, root: str | Path, labels: dict[int, str]) -> None:
        self.root = Path(root)
        self.labels = dict(labels)

    @abstractmethod
    def case_ids(self) -> list[str]:
        """Identifiers of all cases, sorted."""

    @abstractmethod
    def files(self, case_id: str) -> list[Path]:
        """Files a case is read from (their sizes and mtimes key the cache)."""

    @abstractmethod
    def read(self, case_id: str) -> Case:
        """Read and validate one case; raises `DataError` naming the file on bad input."""

    def __iter__(self) -> Iterator[Case]:
        for case_id in self.case_ids():
            yield self.read(case_id)

    def __len__(self) -> int:
        return len(self.case_ids())
