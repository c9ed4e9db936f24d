"""JobSpec: a processing request as plain, JSON-serialisable data.

The CLI, the Python API and (later) the web form and the job queue all build one of these;
nothing in it is a live object, so it can be stored in a database row and replayed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from madrone.area import Area
from madrone.engine.vocabulary import (  # noqa: F401 (re-exported)
    ALL_PRODUCTS,
    COMPOSITE_METHODS,
    PRODUCT_KINDS,
    RESAMPLING_METHODS,
)
from madrone.sources.catalog import SearchSpec
from madrone.sources.spec import SourceSpec


@dataclass(frozen=True)
class JobSpec:
    """What to compute and where to put it.

    Attributes:
        sources: the inputs; several in one CRS mosaic into one output, first valid wins.
        indices: index names (``ndvi``, ``ndsi`` or any catalog index).
        expressions: (name, expression) pairs of user band math.
        output_dir: where the products go.
        name: product name prefix; defaults to the first source's name.
        resolution: output pixel size in CRS units; default the finest needed band's.
        crs: output CRS (``EPSG:32633``); default the sources' CRS.
        bbox: (west, south, east, north) in degrees (WGS84) to clip the output to.
        tile_size: tile edge in pixels; default aligned to the sources' blocks.
        resampling: how coarser bands (and other grids) are resampled onto the output grid.
        mask_classes: SCL classes to mask; default clouds, shadow, cirrus, saturated,
            no data, and snow except for snow indices.
        products: which of cog, png, legend, json, count to write.
        area: the area of interest; when given the output grid covers exactly it (in the
            UTM zone of its centre unless ``crs`` says otherwise) and ``bbox`` is unused.
        search: a STAC search run at plan time when ``sources`` is empty; its items become
            the sources (the planned spec carries them, so workers never search).
        method: how observations of different solar days combine (``COMPOSITE_METHODS``).
        datetime: the acquisition date of sources that do not state one (a mosaic file).
    """

    sources: tuple[SourceSpec, ...]
    indices: tuple[str, ...] = ("ndvi",)
    expressions: tuple[tuple[str, str], ...] = ()
    output_dir: str = "."
    name: str | None = None
    resolution: float | None = None
    crs: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    tile_size: int | None = None
    resampling: str = "bilinear"
    mask_classes: tuple[int, ...] | None = None
    products: tuple[str, ...] = field(default=ALL_PRODUCTS)
    area: Area | None = None
    search: SearchSpec | None = None
    method: str = "first"
    datetime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = [source.to_dict() for source in self.sources]
        data["area"] = self.area.to_dict() if self.area else None
        data["search"] = self.search.to_dict() if self.search else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        values = dict(data)
        values["sources"] = tuple(SourceSpec.from_dict(s) for s in data["sources"])
        for key in ("indices", "products", "mask_classes", "bbox"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        values["expressions"] = tuple(tuple(pair) for pair in data.get("expressions", ()))
        if values.get("area") is not None:
            values["area"] = Area.from_dict(values["area"])
        if values.get("search") is not None:
            values["search"] = SearchSpec.from_dict(values["search"])
        return cls(**values)
