"""Example training configs shipped with the package (``hqctf/configs/*.yaml``), addressable by name.

``hqctf train openkbp-2d`` uses ``hqctf/configs/openkbp-2d.yaml`` unless a file ``openkbp-2d`` exists in the
current folder: an existing path always wins. Relative paths inside a config (``data.path``, ``data.cache``,
``out``) resolve against the current working directory, not against the config file.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from .config import ConfigError

SUFFIX = ".yaml"


def bundled_dir(kind: str = "train") -> Path:
    """Folder of the bundled configs of a kind (``train``: ``configs/``, ``bench``: ``configs/bench/``)."""
    folder = Path(str(files("hqctf") / "configs"))
    return folder if kind == "train" else folder / kind


def bundled_configs(kind: str = "train") -> list[str]:
    """Names of the bundled configs of a kind (file names without ``.yaml``), sorted."""
    folder = bundled_dir(kind)
    return sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}") if p.is_file()) if folder.is_dir() else []


def _is_name(text: str) -> bool:
    separators = [s for s in (os.sep, os.altsep, "/") if s]
    return bool(text) and not any(s in text for s in separators) and not text.endswith(SUFFIX)


def resolve_config_path(name_or_path: str | os.PathLike[str], kind: str = "train") -> Path:
    """The config file for a path or a bundled config's name.

    Args:
        name_or_path: an existing file (relative to the current folder or absolute), or the name of a bundled
            config (no path separator, no ``.yaml``), e.g. ``openkbp-2d``.
        kind: ``train`` or ``bench`` configs.

    Returns:
        the path of the file to load with `load_config`.

    Raises:
        ConfigError: neither an existing file nor a bundled name; the message lists the bundled names.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    if _is_name(text):
        bundled = bundled_dir(kind) / f"{text}{SUFFIX}"
        if bundled.is_file():
            return bundled
    names = bundled_configs(kind)
    what = "not a file" if path.exists() else "no such file"
    raise ConfigError(f"config {text!r}: {what} and not a bundled {kind} config; bundled {kind} configs: "
                      f"{', '.join(names) or '(none installed)'}")
