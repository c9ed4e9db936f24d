"""Turn benchmark rows into a console table, a Markdown table, a chart and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Row = dict[str, Any]
HEADERS = ("tool", "wall s", "CPU s", "peak MiB", "x madrone")


def _cells(row: Row) -> tuple[str, ...]:
    if row["status"] != "ok":
        status = row["status"].upper()
        return (row["label"], status, "", "", "")
    ratio = row.get("ratio_to_madrone")
    peak = row.get("peak_rss_mib")
    return (
        row["label"],
        f"{row['wall_s']:.1f}",
        f"{row['cpu_s']:.1f}",
        f"{peak:.0f}" if peak is not None else "n/a",
        f"{ratio:.2f}" if ratio is not None else "",
    )


def _lower_bound_note(rows: list[Row]) -> str | None:
    for row in rows:
        parts = row.get("lower_bound")
        if row["status"] == "ok" and parts:
            return (
                f"lower bound = (decode {parts['decode_cpu_s']:.1f} s + encode "
                f"{parts['encode_cpu_s']:.1f} s) / {parts['cores']} cores, in CPU seconds; "
                "decode reads the red and NIR bands block by block, encode writes the finished "
                f"float32 NDVI as a tiled {parts.get('codec', 'DEFLATE level 1')} GeoTIFF, "
                "both single-threaded"
            )
    return None


def format_console(title: str, rows: list[Row]) -> str:
    """A fixed-width table for the terminal."""
    cells = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = [title]
    for n, line in enumerate(cells):
        first = line[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]))
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    for note in (_lower_bound_note(rows), _runs_note(rows)):
        if note:
            lines.append(note)
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"{row['tool']}: {row['status']}: {row.get('message', '')}")
    busy = _busy_note(rows)
    if busy:
        lines.append(busy)
    return "\n".join(lines)


def _runs_note(rows: list[Row]) -> str | None:
    """Every run's wall time per tool, when each ran more than once."""
    spread = [
        f"{row['tool']} {min(row['wall_runs_s']):.1f}-{max(row['wall_runs_s']):.1f}"
        for row in rows
        if len(row.get("wall_runs_s", ())) > 1
    ]
    if not spread:
        return None
    count = max(len(row.get("wall_runs_s", ())) for row in rows)
    return f"medians of {count} interleaved runs; wall s from fastest to slowest: " + ", ".join(
        spread
    )


def _busy_note(rows: list[Row]) -> str | None:
    busy = [row["tool"] for row in rows if row.get("machine_busy")]
    if not busy:
        return None
    return (
        f"WARNING: other processes were using the CPU during: {', '.join(busy)}; "
        "those timings are not trustworthy"
    )


def format_markdown(results: dict[str, Any]) -> str:
    """Markdown tables, one per format, with the machine facts above them."""
    machine = results["machine"]
    size = results["size"]
    lines = [
        f"NDVI of one synthetic Sentinel-2 scene ({size} x {size} pixels at 10 m, B04 and "
        f"B08 uint16) on {machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']:.0f} GiB, GDAL {machine['gdal_rasterio']} (rasterio) / "
        f"{machine['gdal_system']} (gdal_calc). Outputs: float32 tiled "
        f"{results.get('codec', 'DEFLATE level 1')} GeoTIFF, predictor 3, for every tool but "
        "the one marked usual settings; madrone writes a COG with overviews. "
        "Peak memory is the largest sum of RSS over each tool's whole process tree. "
        + (
            f"Each tool ran {results['repeats']} times, interleaved (every tool once per "
            "round), with a warm page cache; the table gives each tool's median run."
            if results.get("repeats", 1) > 1
            else "Each run happens once, with a warm page cache."
        ),
        "",
    ]
    for fmt, rows in results["formats"].items():
        lines.append(f"**{FORMAT_TITLES.get(fmt, fmt)}**")
        lines.append("")
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "---|" + "---:|" * (len(HEADERS) - 1))
        for row in rows:
            lines.append("| " + " | ".join(_cells(row)) + " |")
        note = _lower_bound_note(rows)
        if note:
            lines.extend(["", f"The {note}."])
        runs = _runs_note(rows)
        if runs:
            lines.extend(["", f"{runs[0].upper()}{runs[1:]}."])
        if fmt in FORMAT_NOTES:
            lines.extend(["", f"{FORMAT_NOTES[fmt]}."])
        busy = _busy_note(rows)
        if busy:
            lines.extend(["", f"{busy}."])
        lines.append("")
    return "\n".join(lines)


FORMAT_NOTES = {
    "jp2": "GDAL decodes JPEG 2000 tiles on all cores by default (GDAL_NUM_THREADS), so even "
    "the single-process tools use both cores here; the lower bound decodes single-threaded",
}
FORMAT_TITLES = {
    "gtiff": "GeoTIFF inputs (tiled 512, DEFLATE)",
    "jp2": "JPEG 2000 inputs (lossless, 1024 tiles, like ESA's products)",
}


def write_chart(path: Path, results: dict[str, Any]) -> None:
    """Horizontal bars of wall time per tool, one panel per input format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(fmt, rows) for fmt, rows in results["formats"].items() if rows]
    if not panels:
        return
    height = sum(0.45 * len(rows) + 1.0 for _, rows in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, height), squeeze=False)
    for ax, (fmt, rows) in zip(axes[:, 0], panels, strict=True):
        ok = [row for row in reversed(rows) if row["status"] == "ok"]
        walls = [row["wall_s"] for row in ok]
        colors = [_bar_color(row["tool"]) for row in ok]
        bars = ax.barh([row["label"] for row in ok], walls, color=colors)
        for bar, row in zip(bars, ok, strict=True):
            if row.get("lower_bound"):
                bar.set_hatch("//")
            peak = row.get("peak_rss_mib")
            memory = f", peak {peak:.0f} MiB" if peak is not None else ""
            ax.annotate(
                f" {row['wall_s']:.1f} s{memory}",
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                va="center",
                fontsize=8,
            )
        ax.set_xlim(0, max(walls, default=1) * 1.45)
        ax.set_title(FORMAT_TITLES.get(fmt, fmt), fontsize=10)
        ax.set_xlabel("wall seconds (lower is better)")
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(
        f"NDVI, {results['size']} x {results['size']} scene, {results['machine']['nproc']} cores",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bar_color(tool: str) -> str:
    if tool.startswith("madrone"):
        return "#2e7d32"
    if tool == "lower-bound":
        return "#bdbdbd"
    return "#5c6bc0"


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
