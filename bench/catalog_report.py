"""Rows and tables of the catalog benchmark (bench/catalog.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog_measure import Usage


@dataclass
class Row:
    """One line of the table: a case on one engine.

    ``rate`` is per second of wall (claims/s, queries/s); ``goal`` says what counts as good
    and ``met`` whether this row reached it (None: no goal for this row).
    """

    case: str
    engine: str
    n: str
    usage: Usage | None = None
    rate: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    goal: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


HEADERS = (
    "case",
    "engine",
    "n",
    "wall s",
    "CPU s",
    "peak MiB",
    "per s",
    "p50 ms",
    "p95 ms",
    "max ms",
    "goal",
    "met",
)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cells(row: Row) -> list[str]:
    usage = row.usage
    met = {True: "yes", False: "**no**", None: "-"}[row.met]
    if usage is not None and usage.busy:
        met += " (busy machine)"
    return [
        row.case,
        row.engine,
        row.n,
        _num(usage and usage.wall_s, ".2f"),
        _num(usage and usage.cpu_s, ".2f"),
        _num(usage and usage.peak_rss_mib, ".0f"),
        _num(row.rate, ",.0f"),
        _num(row.latency.get("p50_ms"), ".2f"),
        _num(row.latency.get("p95_ms"), ".2f"),
        _num(row.latency.get("max_ms"), ".2f"),
        row.goal or "-",
        met,
    ]


def markdown_table(rows: list[Row]) -> str:
    """The rows as one Markdown table (numbers right-aligned)."""
    aligns = ["---"] * 3 + ["---:"] * 7 + ["---"] * 2
    lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def notes(rows: list[Row]) -> str:
    """Every row's notes as a bullet list, each under its row's name."""
    lines = []
    for row in rows:
        for note in row.notes:
            lines.append(f"- {row.case}, {row.engine}: {note}")
    return "\n".join(lines)


def format_markdown(header: str, rows: list[Row], explanation: str) -> str:
    """The whole results page: the command and machine, the table, the notes."""
    parts = ["# Catalog benchmark", header, markdown_table(rows), notes(rows), explanation]
    return "\n\n".join(part for part in parts if part) + "\n"
