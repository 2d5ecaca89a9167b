"""On-disk cache of preprocessed cases: one ``.npy`` per array, memory-mapped on read, keyed by config and files.

Layout: ``cache_dir/<dataset>-<hash of its resolved path>/<config.key()>/`` (so datasets with the same case ids
never share entries) holds ``config.json`` (the settings, for people), ``manifest.json`` and
``<case>.image.npy`` / ``<case>.label.npy``. Arrays are stored in Fortran order, so an axial slice
``[:, :, z]`` is one contiguous block of the file and a 2D sampler reads only the slices it uses. The
manifest records per case the fingerprints (path, size, mtime_ns) of ``source.files(case_id)``, the arrays'
file names, shapes, dtypes and byte sizes, and the case's metadata (affine, spacing, structures, unknown,
regions, patient_id, intensity, sources).

Every write goes to a temporary file in the same folder and is renamed into place (`hqctf.atomic`): arrays
first, then the manifest entry (read-modify-write under an ``flock``, so several processes may fill one cache).
An entry is trusted only when its fingerprints match the source's files now and its arrays exist with the
recorded size, shape and dtype; otherwise the case is read and preprocessed again. A kill leaves at most a
stray ``.*.tmp`` file, never a half-written entry that is later trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..atomic import atomic_path, write_json_atomic
from .case import Case
from .errors import DataError
from .preprocess import PreprocessConfig, preprocess
from .source import Source

MANIFEST = "manifest.json"


def _fingerprints(files: Sequence[Path]) -> list[list]:
    """[path, size, mtime_ns] of each file (size and mtime None for a missing file)."""
    out = []
    for path in files:
        try:
            st = os.stat(path)
            out.append([str(path), st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            out.append([str(path), None, None])
    return out


def _stem(case_id: str) -> str:
    """A file-name-safe stem for a case id (a hash suffix keeps altered ids unique)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)
    if safe != case_id or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha1(case_id.encode()).hexdigest()[:8]}"
    return safe


class CaseCache:
    """Preprocessed cases of one source under one config, read back memory-mapped.

    Args:
        cache_dir: root folder of the cache (shared by configs and sources: one subfolder per config key).
        source: where cases come from.
        config: how they are preprocessed.
    """

    def __init__(self, cache_dir: str | Path, source: Source, config: PreprocessConfig) -> None:
        self.source = source
        self.config = config
        root = Path(source.root).resolve()
        dataset = f"{_stem(root.name)}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
        self.folder = Path(cache_dir) / dataset / config.key()  # made when the first case is written

    def _make_folder(self) -> None:
        """The cache folder with its ``config.json``: made on the first write, so a command that fails before
        reading any case leaves nothing behind."""
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = self.folder / "config.json"
        if not settings.is_file():
            write_json_atomic(settings, self.config.to_dict())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._make_folder()
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def manifest(self) -> dict[str, dict]:
        """Case id -> manifest entry (empty when the manifest is missing or unreadable)."""
        try:
            data = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _load(self, entry: dict) -> Case | None:
        """The case an entry describes, arrays memory-mapped; None when the entry or an array is damaged."""
        try:
            arrays = {}
            for name in ("image", "label"):
                spec = entry["arrays"][name]
                if spec is None:
                    arrays[name] = None
                    continue
                path = self.folder / spec["file"]
                if path.stat().st_size != spec["bytes"]:
                    return None
                arrays[name] = np.load(path, mmap_mode="r")
                if list(arrays[name].shape) != spec["shape"] or str(arrays[name].dtype) != spec["dtype"]:
                    return None
            return Case(
                case_id=entry["case_id"],
                image=arrays["image"],
                affine=np.array(entry["affine"], dtype=np.float64),
                label=arrays["label"],
                structures={int(v): n for v, n in entry["structures"].items()},
                unknown=frozenset(entry["unknown"]),
                regions={k: tuple(v) for k, v in entry["regions"].items()},
                patient_id=entry["patient_id"],
                intensity=entry["intensity"],
                sources=tuple(entry["sources"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _store(self, case: Case, fingerprints: list[list]) -> dict:
        """Write a preprocessed case's arrays, then its manifest entry; returns the entry."""
        self._make_folder()
        stem = _stem(case.case_id)
        specs = {}
        for name, array in (("image", case.image), ("label", case.label)):
            if array is None:
                specs[name] = None
                continue
            path = self.folder / f"{stem}.{name}.npy"
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, np.asfortranarray(array))
            specs[name] = dict(file=path.name, shape=list(array.shape), dtype=str(array.dtype),
                               bytes=path.stat().st_size)
        entry = dict(
            case_id=case.case_id,
            files=fingerprints,
            arrays=specs,
            affine=case.affine.tolist(),
            spacing=list(case.spacing),
            shape=list(case.image.shape),
            structures={str(v): n for v, n in sorted(case.structures.items())},
            unknown=sorted(case.unknown),
            regions={k: list(v) for k, v in case.regions.items()},
            patient_id=case.patient_id,
            intensity=case.intensity,
            sources=[str(p) for p in case.sources],
        )
        with self._locked():
            manifest = self.manifest()
            manifest[case.case_id] = entry
            write_json_atomic(self.folder / MANIFEST, manifest)
        return entry

    def _get(self, case_id: str) -> tuple[Case, bool]:
        fingerprints = _fingerprints(self.source.files(case_id))
        entry = self.manifest().get(case_id)
        if entry is not None and entry.get("files") == fingerprints:
            case = self._load(entry)
            if case is not None:
                return case, True
        entry = self._store(preprocess(self.source.read(case_id), self.config), fingerprints)
        case = self._load(entry)
        if case is None:
            raise DataError(f"{self.folder / entry['arrays']['image']['file']}: cache entry unreadable after writing")
        return case, False

    def get(self, case_id: str) -> Case:
        """A preprocessed case: from the cache when its files are unchanged, else read, preprocessed and stored.

        Returns:
            the case with read-only memory-mapped arrays (image float32, label in the source's dtype).

        Raises:
            DataError: from the source, when the case has to be read and its files are bad.
        """
        return self._get(case_id)[0]

    def build(self, case_ids: Sequence[str] | None = None, progress: bool = True) -> dict[str, int]:
        """Fill the cache for ``case_ids`` (default: all of the source's cases).

        Args:
            case_ids: cases to prepare.
            progress: show a rich progress bar.

        Returns:
            ``{"cached": n, "built": m}``: cases found up to date and cases (re)built.
        """
        ids = list(self.source.case_ids() if case_ids is None else case_ids)
        counts = {"cached": 0, "built": 0}
        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task(f"Preprocessing {self.source.root.name}", total=len(ids))
            for case_id in ids:
                _, hit = self._get(case_id)
                counts["cached" if hit else "built"] += 1
                bar.advance(task)
        return counts
