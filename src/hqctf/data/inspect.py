"""`hqctf data inspect`: read every case of a source, report shape, spacing, structure volumes and all problems."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from .errors import DataError
from .source import Source, natural_key


@dataclass
class CaseReport:
    """What `inspect_source` found for one case; ``volumes`` maps structure name -> cc, None when not contoured."""

    case_id: str
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    volumes: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _warnings(case) -> list[str]:
    notes = []
    if case.intensity == "HU" and float(np.ptp(case.image)) < 10.0:
        notes.append(f"{case.where}: intensity range {float(case.image.min()):.3g}..{float(case.image.max()):.3g} does not look like HU")
    if case.label is not None and case.known and not np.any(case.label):
        notes.append(f"{case.where}: label map has no foreground voxel")
    return notes


def inspect_source(source: Source, progress: bool = True) -> list[CaseReport]:
    """Read every case (in natural order: pt_2 before pt_10), collecting problems instead of stopping at the first."""
    reports = []
    ids = sorted(source.case_ids(), key=natural_key)
    for case_id in track(ids, description="inspecting", disable=not progress, transient=True):
        report = CaseReport(case_id)
        try:
            case = source.read(case_id)
        except DataError as exc:
            report.problems.append(str(exc))
            reports.append(report)
            continue
        report.shape, report.spacing = case.image.shape, case.spacing
        volumes = case.volumes_cc()
        report.volumes = {name: (None if value in case.unknown else volumes.get(name, 0.0)) for value, name in sorted(case.structures.items())}
        report.problems.extend(_warnings(case))
        reports.append(report)
    return reports


def _volume_cell(report: CaseReport, name: str) -> str:
    if not report.shape:
        return ""  # the case could not be read
    volume = report.volumes.get(name, 0.0)
    return "-" if volume is None else f"{volume:.1f}"


def render(source: Source, reports: list[CaseReport], console: Console) -> None:
    """Print the per-case table, then every problem on its own line."""
    names = list(dict.fromkeys(name for r in reports for name in r.volumes)) or list(source.labels.values())
    table = Table(title=f"{source.root} ({source.format}, {len(reports)} cases)", title_justify="left")
    for column in ("case", "shape", "spacing (mm)", *(f"{n} (cc)" for n in names), "problems"):
        table.add_column(column, justify="left" if column in ("case", "problems") else "right")
    for r in reports:
        cells = [
            r.case_id,
            "x".join(map(str, r.shape)) or "-",
            "x".join(f"{s:.3g}" for s in r.spacing) or "-",
            *(_volume_cell(r, n) for n in names),
            str(len(r.problems)) if r.problems else "",
        ]
        table.add_row(*cells)
    console.print(table)
    console.print("'-' = not contoured in that case (unknown, left out of its loss and metrics)")
    problems = [p for r in reports for p in r.problems]
    for problem in problems:
        console.print(f"problem: {problem}", markup=False, highlight=False)
    console.print(f"{len(problems)} problem(s) in {sum(bool(r.problems) for r in reports)} of {len(reports)} case(s)")
