"""The engine's words, importable without rasterio, numpy or pyproj: the CLI builds its
choices and defaults from them at start-up, and the spec and the plan check against the
same tuples."""

ALL_PRODUCTS = ("cog", "png", "legend", "json")
# "count": per index, a COG of how many valid observations (solar days) each pixel had.
PRODUCT_KINDS = (*ALL_PRODUCTS, "count")
RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "average")
# How observations of different solar days combine per pixel: the first valid one (sources
# in order; least cloudy first after a search), their median, or the day of highest NDVI.
COMPOSITE_METHODS = ("first", "median", "max-ndvi")
