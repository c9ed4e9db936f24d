"""The mosaic benchmark's output check and tables.

Outputs are compared with the rasterio peer's on the pixels both grids share (the grids must
have the same CRS and resolution, and origins a whole number of pixels apart) where both are
valid; pixels valid in one and nodata in the other are counted separately.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

Row = dict[str, Any]
MIB = 2**20


def compare_outputs(path: Path, reference: Path) -> dict[str, Any]:
    """Max and 99th percentile |difference| of ``path`` against ``reference``."""
    with rasterio.open(path) as out, rasterio.open(reference) as ref:
        if out.crs != ref.crs or not np.allclose(out.res, ref.res):
            return {"note": f"grids differ: {out.crs} {out.res} vs {ref.crs} {ref.res}"}
        col_shift = (ref.transform.c - out.transform.c) / out.res[0]
        row_shift = (out.transform.f - ref.transform.f) / out.res[1]
        if abs(col_shift - round(col_shift)) > 1e-6 or abs(row_shift - round(row_shift)) > 1e-6:
            return {"note": "grids differ by a fraction of a pixel"}
        col_shift, row_shift = round(col_shift), round(row_shift)
        got = out.read(1, masked=True).astype(np.float64).filled(np.nan)
        want = ref.read(1, masked=True).astype(np.float64).filled(np.nan)
        grid_note = (
            ""
            if (out.transform, out.shape) == (ref.transform, ref.shape)
            else (
                f"grid {out.width} x {out.height} vs {ref.width} x {ref.height}, "
                f"offset {col_shift}, {row_shift} px"
            )
        )
    # ``ref`` pixel (r, c) is ``out`` pixel (r + row_shift, c + col_shift).
    r0, c0 = max(0, -row_shift), max(0, -col_shift)
    r1 = min(want.shape[0], got.shape[0] - row_shift)
    c1 = min(want.shape[1], got.shape[1] - col_shift)
    if r1 <= r0 or c1 <= c0:
        return {"note": "the grids do not overlap"}
    want = want[r0:r1, c0:c1]
    got = got[r0 + row_shift : r1 + row_shift, c0 + col_shift : c1 + col_shift]
    both = ~np.isnan(want) & ~np.isnan(got)
    diff = np.abs(got[both] - want[both])
    return {
        "max_abs_diff": float(diff.max()) if diff.size else None,
        "p99_abs_diff": float(np.percentile(diff, 99)) if diff.size else None,
        "common_valid": int(both.sum()),
        "nodata_mismatch": int((np.isnan(want) != np.isnan(got)).sum()),
        "note": grid_note,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _cells(row: Row, http: bool) -> list[str]:
    if row["status"] != "ok":
        return [row["label"], row["status"].upper(), *[""] * (8 if http else 5)]
    check = row.get("check") or {}
    if row.get("is_reference"):
        agreement = "reference"
    elif check.get("max_abs_diff") is not None:
        agreement = f"{check['max_abs_diff']:.1e} / {check['p99_abs_diff']:.1e}"
    else:
        agreement = check.get("note", "")
    cells = [
        row["label"],
        f"{row['wall_s']:.1f}",
        f"{row['cpu_s']:.1f}",
        f"{row['peak_rss_mib']:.0f}",
        f"{row['mpx_per_s']:.2f}",
    ]
    if http:
        cells += [
            f"{row['http_bytes'] / MIB:.1f}",
            str(row["http_requests"]),
            _fmt(row.get("read_to_needed"), ".2f"),
        ]
    return [*cells, _fmt(row.get("ratio_to_madrone"), ".2f"), agreement]


def markdown_table(rows: list[Row], http: bool = False) -> str:
    headers = ["tool", "wall s", "CPU s", "peak MiB", "Mpx/s"]
    if http:
        headers += ["HTTP MiB read", "requests", "x needed"]
    headers += ["x madrone", "max / p99 abs diff vs rasterio"]
    aligns = ["---", *["---:"] * (len(headers) - 2), "---"]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(_cells(row, http)) + " |" for row in rows]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"\n{row['tool']}: {row['status']}: {row.get('message', '')}")
        else:
            check = row.get("check") or {}
            if check.get("note"):
                lines.append(f"\n{row['tool']}: {check['note']}")
            if check.get("nodata_mismatch"):
                lines.append(
                    f"\n{row['tool']}: {check['nodata_mismatch']} pixels are valid in one "
                    "output and nodata in the other"
                )
        if row.get("machine_busy"):
            lines.append(
                f"\n{row['tool']}: other processes used {row['other_cpu_s']:.1f} CPU s "
                "meanwhile; its timing is not trustworthy"
            )
    return "\n".join(lines)


def console_table(title: str, rows: list[Row], http: bool = False) -> str:
    """The Markdown table, realigned for a terminal."""
    table = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in markdown_table(rows, http).splitlines()
        if line.startswith("|") and not line.startswith("| ---")
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = [title]
    for n, line in enumerate(table):
        out.append(
            "  ".join(
                cell.ljust(w) if i in (0, len(line) - 1) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


SECTION_TITLES = {
    "local": "Local COG mosaic",
    "http": "The same mosaic over HTTP (range requests)",
    "composite": "5-date median composite from a static STAC catalog",
}


def _section_intro(name: str, results: dict[str, Any]) -> str:
    m = results["mosaic"]
    grid = m["grid"]
    pixels = grid["width"] * grid["height"]
    request = (
        f"bbox {','.join(f'{v:g}' for v in m['request_wsen'])} onto {grid['crs']} at 10 m: "
        f"{grid['width']} x {grid['height']} = {pixels / 1e6:.1f} Mpx"
    )
    if name == "local":
        return f"{request}; the page cache is warm."
    if name == "http":
        return (
            f"{request}. HTTP MiB read: what the range server sent (its log of Range headers); "
            f"x needed: that over the {m['needed_bytes'] / MIB:.1f} MiB the area needs (the "
            "compressed full-resolution B04 and B08 tiles that meet the output's footprint, "
            "from the COG's tile byte counts; all four bands' tiles there are "
            f"{m['needed_bytes_all_bands'] / MIB:.1f} MiB). Each run gets a fresh server and "
            "GDAL cache; the server shares the machine's cores."
        )
    c = results["composite"]
    g = c["grid"]
    return (
        f"`{Path(c['catalog']).parent.name}` (10 items: tiles 33TWL and 33TWM, five dates, "
        f"JPEG 2000 at 120 m), bbox {','.join(f'{v:g}' for v in c['wsen'])} ({c['area']}), "
        f"datetime {c['datetime']}, "
        f"onto {g['crs']} at 120 m: {g['width']} x {g['height']} = "
        f"{g['width'] * g['height'] / 1e6:.2f} Mpx. Per day the first valid item wins (least "
        "cloudy first), then the median over days of NDVI; SCL classes 0, 1, 3, 8, 9, 10, 11 "
        "and values above 11 are masked."
    )


def format_markdown(results: dict[str, Any]) -> str:
    machine, m = results["machine"], results["mosaic"]
    west, south, east, north = m["wsen"]
    lines = [
        "# Mosaic benchmark",
        "",
        f"`{results['command']}`, {results['started']}, commit "
        f"{(machine.get('git_commit') or 'unknown')[:10]}: {machine['nproc']} cores "
        f"({machine['cpu_model']}), {machine['memory_gib']} GiB, GDAL {machine['gdal_rasterio']} "
        f"(rasterio, madrone) / {machine['gdal_system']} (gdalwarp, gdal_calc.py).",
        "",
        f"The mosaic: synthetic (bench/mosaic_data.py), {east - west:g} x {north - south:g} "
        "degree in EPSG:4326 at 0.0001 degree, uint16 bands B03, B04, B08, B11 named by their "
        "descriptions, tiled 512, DEFLATE with predictor 2, band-interleaved, with overviews; "
        f"{m['file_bytes'] / MIB:.0f} MiB. Every output is NDVI, float32, tiled 512, DEFLATE "
        "level 1, NaN nodata (madrone's is a COG with overviews). Each tool runs once; peak "
        "MiB is the largest sum of RSS over the tool's processes. Mpx/s = output pixels / wall "
        "seconds.",
    ]
    for name, rows in results["sections"].items():
        lines += ["", f"**{SECTION_TITLES[name]}**", "", _section_intro(name, results), ""]
        lines.append(markdown_table(rows, http=name == "http"))
    lines += [
        "",
        "max / p99 abs diff: NDVI differences against the rasterio peer over the pixels both "
        "hold valid. The warping tools differ at parcel edges because GDAL's warper maps "
        "coordinates with an approximate transformer (error threshold 0.125 pixel by default) "
        "that it fits per warp chunk, and every tool chunks differently; with the exact "
        "transformer (gdalwarp -et 0) GDAL 3.6 and 3.10 agree to rounding.",
        "",
        "A WarpedVRT warps every band of its source, so a reader that goes through one on "
        "this four-band mosaic fetches and decodes all four bands' tiles, about twice what "
        "NDVI needs; gdalwarp here reads only the two bands its VRT selects.",
    ]
    return "\n".join(lines) + "\n"


def format_console(results: dict[str, Any]) -> str:
    return "\n\n".join(
        console_table(SECTION_TITLES[name], rows, http=name == "http")
        for name, rows in results["sections"].items()
    )


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
