"""The spectral index catalog: built-ins, the Awesome Spectral Indices catalog, user math.

NDVI and NDSI are built in so the common case needs no catalog. Every other index comes from
``spyndex`` (imported lazily, on first use) and is available when each of its band letters
maps to a Sentinel-2 band and each other symbol is a catalog constant with a default value.
All formulas, catalog and user alike, go through the allow-listed :mod:`madrone.expression`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from madrone.bands import catalog_letter_to_band
from madrone.errors import BandMissingError, ExpressionError, UnknownIndexError
from madrone.expression import CompiledExpression, compile_expression, evaluate

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class IndexDef:
    """One spectral index: its formula, the bands it reads and the constants it uses.

    Attributes:
        name: Catalog short name (``NDVI``), or the user's name (``EXPR`` by default).
        long_name: Human-readable name.
        formula: The formula as the catalog (or the user) writes it.
        variables: Pairs of (name in the formula, Sentinel-2 band id), e.g. ``("N", "B08")``.
        constants: Pairs of (constant name, default value), e.g. ``("g", 2.5)``.
        domain: Catalog application domain (vegetation, water, snow, ...) or ``custom``.
        reference: URL of the index's publication.
        keeps_snow: Snow pixels are kept (not masked) for this index.
    """

    name: str
    long_name: str
    formula: str
    variables: tuple[tuple[str, str], ...]
    constants: tuple[tuple[str, float], ...] = ()
    domain: str = "custom"
    reference: str = ""
    keeps_snow: bool = False

    @property
    def bands(self) -> tuple[str, ...]:
        """Sorted Sentinel-2 band ids the index reads."""
        return tuple(sorted({band for _, band in self.variables}))

    def compile(self) -> CompiledExpression:
        """The checked numexpr form of the formula (cached)."""
        return _compile(self.formula, self.variables, tuple(name for name, _ in self.constants))

    def compute(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Compute the index from reflectance arrays keyed by band id.

        Returns:
            float32 array, NaN where any input is nodata or the formula is undefined.

        Raises:
            BandMissingError: A band the index needs is not in ``arrays``.
        """
        missing = [band for band in self.bands if band not in arrays]
        if missing:
            given = ", ".join(sorted(arrays)) or "none"
            raise BandMissingError(
                f"index {self.name} needs band(s) {', '.join(missing)}; given: {given}"
            )
        needed = {band: arrays[band] for band in self.bands}
        return evaluate(self.compile(), needed, dict(self.constants))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description of the index."""
        return {
            "name": self.name,
            "long_name": self.long_name,
            "formula": self.formula,
            "variables": dict(self.variables),
            "bands": list(self.bands),
            "constants": dict(self.constants),
            "domain": self.domain,
            "reference": self.reference,
        }


@lru_cache(maxsize=1024)
def _compile(
    formula: str, variables: tuple[tuple[str, str], ...], constants: tuple[str, ...]
) -> CompiledExpression:
    names = dict(variables) | {name: name for name in constants}
    return compile_expression(formula, names)


NDVI = IndexDef(
    name="NDVI",
    long_name="Normalized Difference Vegetation Index",
    formula="(N-R)/(N+R)",
    variables=(("N", "B08"), ("R", "B04")),
    domain="vegetation",
    reference="https://ntrs.nasa.gov/citations/19740022614",
)
NDSI = IndexDef(
    name="NDSI",
    long_name="Normalized Difference Snow Index",
    formula="(G-S1)/(G+S1)",
    variables=(("G", "B03"), ("S1", "B11")),
    domain="snow",
    reference="https://doi.org/10.1109/IGARSS.1994.399618",
    keeps_snow=True,
)
BUILTINS: dict[str, IndexDef] = {index.name: index for index in (NDVI, NDSI)}


class _Catalog(NamedTuple):
    available: dict[str, IndexDef]
    unavailable: dict[str, str]


@lru_cache(maxsize=1)
def _catalog() -> _Catalog:
    """Read the spectral index catalog once, splitting it by Sentinel-2 availability."""
    import spyndex  # lazy: keeps ``import madrone`` fast

    available: dict[str, IndexDef] = {}
    unavailable: dict[str, str] = {}
    for short_name in spyndex.indices:
        entry = spyndex.indices[short_name]
        result = _from_catalog_entry(entry, spyndex.constants, spyndex.bands)
        if isinstance(result, IndexDef):
            available[result.name] = result
        else:
            unavailable[entry.short_name] = result
    available |= BUILTINS
    return _Catalog(available, unavailable)


def _from_catalog_entry(entry: Any, constants: Any, catalog_bands: Any) -> IndexDef | str:
    """Build an IndexDef from a spyndex entry, or return why Sentinel-2 cannot compute it."""
    variables: list[tuple[str, str]] = []
    values: list[tuple[str, float]] = []
    lacking_bands: list[str] = []
    lacking_defaults: list[str] = []
    for symbol in dict.fromkeys(entry.bands):
        band = catalog_letter_to_band(symbol)
        default = constants[symbol].default if symbol in constants else None
        if band is not None:
            variables.append((symbol, band))
        elif isinstance(default, int | float) and not isinstance(default, bool):
            values.append((symbol, float(default)))
        elif symbol in constants:
            lacking_defaults.append(symbol)
        elif symbol in catalog_bands:
            lacking_bands.append(f"{symbol} ({catalog_bands[symbol].long_name})")
        else:
            lacking_bands.append(symbol)
    reasons = []
    if lacking_bands:
        reasons.append(f"needs band(s) Sentinel-2 lacks: {', '.join(lacking_bands)}")
    if lacking_defaults:
        reasons.append(f"needs constant(s) without a default: {', '.join(lacking_defaults)}")
    if reasons:
        return "; ".join(reasons)
    index = IndexDef(
        name=entry.short_name,
        long_name=entry.long_name,
        formula=entry.formula,
        variables=tuple(sorted(variables)),
        constants=tuple(sorted(values)),
        domain=entry.application_domain,
        reference=entry.reference or "",
        keeps_snow=entry.application_domain == "snow",
    )
    try:
        index.compile()
    except ExpressionError as e:
        return f"formula cannot be compiled: {e}"
    return index


def resolve_index(name: str) -> IndexDef:
    """Find an index by name, case-insensitively (``ndvi`` and ``NDVI`` are the same).

    Raises:
        UnknownIndexError: The name is unknown (the message suggests close matches), is
            ambiguous, or names a catalog index Sentinel-2 cannot compute (with the reason).
    """
    key = name.strip() if isinstance(name, str) else ""
    if key.upper() in BUILTINS:  # no catalog name collides with a built-in, case aside
        return BUILTINS[key.upper()]
    catalog = _catalog()
    known = [*catalog.available, *catalog.unavailable]
    matches = [key] if key in known else [n for n in known if n.lower() == key.lower()]
    if len(matches) > 1:
        raise UnknownIndexError(
            f"index name {key!r} is ambiguous: {', '.join(sorted(matches))}; use exact case"
        )
    if matches and matches[0] in catalog.available:
        return catalog.available[matches[0]]
    if matches:
        reason = catalog.unavailable[matches[0]]
        raise UnknownIndexError(
            f"index {matches[0]} is in the catalog but not computable from Sentinel-2: {reason}"
        )
    raise UnknownIndexError(_unknown_message(key, list(catalog.available)))


def _unknown_message(name: str, candidates: list[str]) -> str:
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    message = f"unknown index {name!r}: neither built in nor in the spectral index catalog"
    if close:
        message += f"; did you mean {', '.join(by_lower[c] for c in close)}?"
    return message


def index_from_expression(expr: str, name: str | None = None) -> IndexDef:
    """Wrap user band math (``(nir-red)/(nir+red)``) as an index of domain ``custom``.

    Raises:
        ExpressionError: The expression is not allowed, or the name is unusable or already
            taken by a catalog index.
    """
    compiled = compile_expression(expr)
    label = "EXPR" if name is None else name.strip()
    if not _USER_NAME.match(label):
        raise ExpressionError(
            f"index name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a "
            "letter or digit"
        )
    if name is not None and label.lower() in {n.lower() for n in _catalog().available}:
        raise ExpressionError(
            f"index name {label!r} is taken by a catalog index; choose another name"
        )
    return IndexDef(
        name=label,
        long_name=f"User expression {compiled.text.strip()}",
        formula=compiled.text.strip(),
        variables=compiled.names,
    )


def list_indices() -> list[IndexDef]:
    """All indices computable from Sentinel-2, sorted by name."""
    return sorted(_catalog().available.values(), key=lambda index: (index.name.lower(), index.name))


def unavailable_indices() -> dict[str, str]:
    """Catalog indices Sentinel-2 cannot compute, name -> reason, sorted by name."""
    unavailable = _catalog().unavailable
    return {name: unavailable[name] for name in sorted(unavailable, key=str.lower)}
