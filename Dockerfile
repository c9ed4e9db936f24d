# madrone's image: one image for every role of the stack (master, worker, web, migrations).
# GDAL comes inside the rasterio wheel and libpq inside psycopg's, so no compiler and no
# Debian GDAL are needed. Build: docker build -t madrone .   (see deploy/README.md)

# Stage 1: a wheel of madrone from this checkout (build tools stay in this stage).
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime, with the server extras (Dask, PostgreSQL, S3, Azure).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir "$(ls /wheels/madrone-*.whl)[server]" \
    && groupadd --system --gid 10001 madrone \
    && useradd --system --uid 10001 --gid madrone --create-home --home-dir /home/madrone madrone \
    && mkdir -p /data/products \
    && chown -R madrone:madrone /data
COPY deploy/healthcheck.py /opt/madrone/healthcheck.py

# Products land under /data/products unless MADRONE_STORAGE_URL names object storage; a
# named volume mounted on /data starts with this folder and its owner.
WORKDIR /data
USER madrone:madrone
EXPOSE 50051 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "/opt/madrone/healthcheck.py", "auto"]
CMD ["madrone", "--help"]
