"""Settings: the one place configuration is read, from ``MADRONE_*`` environment variables
and an optional TOML file named by ``MADRONE_CONFIG`` (the variables win over the file).

Every other module receives a ``Settings`` value; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields

from madrone.errors import InputError


@dataclass(frozen=True)
class Settings:
    """Engine settings. Each field ``name`` is read from ``MADRONE_<NAME>``.

    Attributes:
        workers: threads (or processes) of the local executor; 0 means all cores.
        pool: ``threads`` (the default: GDAL, numexpr and numpy release the GIL, so
            threads compute tiles in parallel with nothing to start or copy) or
            ``processes`` (each worker isolated in a process of its own).
        tiles_in_flight: tiles submitted ahead per worker (bounds memory).
        gdal_cache_mb: GDAL block cache per worker, in MiB: each process of a process pool
            has its own, the threads of a thread pool share one of workers times this. A
            JPEG 2000 scene's 20 m blocks serve two rows of 1024 px tiles, so the cache must
            outlast a row: NDVI + NDSI of one scene, 2 threads, took 60.6 s at 64 MiB for
            both, 49.7 s at 128 and 47.0 s at 160 (``madrone process``). Used when tiles
            share source blocks; when none does, a worker keeps what its tiles need
            (``engine.plan.tile_cache_mb``), at most this.
        png_max_size: the PNG's longest side in pixels; larger products are rendered from
            the COG's overviews.
        cog_codec: the COG's lossless codec, ``zstd`` (the default: about twice as fast to
            encode as DEFLATE at the same size, read by GDAL >= 2.3 and the tools built on
            it) or ``deflate`` (read by every TIFF reader, geotiff.js 2.x and Pillow too).
        cog_zlevel: the codec's level, 1 to 22 for ZSTD, 1 to 9 for DEFLATE (1: float32
            indices compress barely better at higher levels, under 1.5% on real NDVI, and
            encode far slower; bench/codec.py).
        output_dir: default output folder of ``madrone demo``.
        token: shared secret every master/worker/client call carries (``MADRONE_TOKEN``).
        tls_cert, tls_key: the master's TLS certificate and key files (PEM).
        tls_ca: the certificate workers and clients trust for the master (PEM).
        master_roots: folders (``os.pathsep``-separated) under which a master accepts local
            source paths and output folders from clients; default its working directory.
        max_area_km2: the largest area request accepted, in km2 (0: no limit).
        stac_headers: HTTP headers sent to STAC APIs, ``Name: value`` pairs separated by
            newlines or ``;`` (an API key: ``MADRONE_STAC_HEADERS="X-Api-Key: ..."``).
            Mosaic files read through GDAL take GDAL's own variables (``AWS_*``,
            ``AZURE_STORAGE_*``, ``GDAL_HTTP_HEADERS``), which every process inherits.
        db_url: the local catalog (SQLAlchemy URL); empty means a SQLite file in the user's
            data folder (``user_data_dir()``), so nothing needs installing.
        central_db_url: the team's catalog, PostgreSQL with PostGIS
            (``postgresql+psycopg://user:pass@host/db``); empty means no central catalog.
        lease_seconds: how long a master's claim on a job lasts without a heartbeat before
            another master may take the job over.
        max_attempts: how many times a job is tried before it fails with every error.
        user: the name recorded as owner/requester of what the CLI creates locally.
        storage_url: where products are kept: a local folder (path or ``file://``),
            ``s3://bucket/prefix`` (AWS or any S3 service such as MinIO),
            ``az://container/prefix`` (Azure Blob) or ``abfs://container/prefix`` (Data
            Lake Gen2). Empty: ``default_storage_url()``, a folder in the user's data
            folder. Credentials never go here: S3 takes ``AWS_ACCESS_KEY_ID`` and
            ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE``...) and an endpoint from
            ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; Azure takes
            ``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT_NAME`` with
            ``AZURE_STORAGE_ACCOUNT_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``.
        central_storage_url: where the files of datasets shared with the team go (same
            forms); empty means the same place as ``storage_url``.
        storage_options: optional JSON object of extra fsspec options for both storages,
            e.g. ``{"client_kwargs": {"endpoint_url": "http://minio:9000"}}`` for an S3
            endpoint; credential options are refused (they come from the environment).
        secret_key: the web app's key for signing session cookies and CSRF tokens. Empty:
            a random key kept in ``web-secret-key`` in the user's data folder (made once,
            readable by its owner only), so sessions survive a restart. Several web
            processes behind one site must share one key.
        max_upload_mb: the largest file the web app accepts in one upload, in MiB.
        sources: the mosaics and STAC APIs offered by the web app's request form, one
            ``Label=URL`` per line or separated by ``;`` (a URL or path the master can
            read). The bundled sample mosaic is always offered first.
    """

    workers: int = 0
    pool: str = "threads"
    tiles_in_flight: int = 2
    gdal_cache_mb: int = 80
    png_max_size: int = 4096
    cog_codec: str = "zstd"
    cog_zlevel: int = 1
    output_dir: str = "madrone-demo"
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    master_roots: str = ""
    max_area_km2: float = 10000.0
    stac_headers: str = ""
    db_url: str = ""
    central_db_url: str = ""
    lease_seconds: float = 30.0
    max_attempts: int = 3
    user: str = ""
    public_read: int = 0
    basemap_url: str = ""
    storage_url: str = ""
    central_storage_url: str = ""
    storage_options: str = ""
    secret_key: str = ""
    max_upload_mb: int = 200
    sources: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the config file, then ``MADRONE_*`` variables; a malformed
        value names the variable or the file and key."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if environ.get("MADRONE_CONFIG"):
            values.update(_read_file(environ["MADRONE_CONFIG"]))
        for field in fields(cls):
            key = f"MADRONE_{field.name.upper()}"
            if key in environ:
                values[field.name] = _parse(field.type, environ[key], key)
        return cls(**values)

    def resolved_workers(self, requested: int | None = None) -> int:
        """Worker count: the request, else the setting, else all cores."""
        n = requested if requested is not None else self.workers
        if n < 0:
            raise InputError(f"workers must be 0 (all cores) or more, got {n}")
        return n or os.cpu_count() or 1

    def stac_header_map(self) -> dict[str, str]:
        """``stac_headers`` as a dict; a pair without a colon names the setting."""
        headers = {}
        for pair in self.stac_headers.replace(";", "\n").splitlines():
            if not pair.strip():
                continue
            name, colon, value = pair.partition(":")
            if not colon or not name.strip():
                raise InputError(f"MADRONE_STAC_HEADERS: {pair.strip()!r} is not 'Name: value'")
            headers[name.strip()] = value.strip()
        return headers

    def source_list(self) -> list[tuple[str, str]]:
        """``sources`` as ``(label, url)`` pairs; an entry without ``=`` names the setting."""
        pairs = []
        for entry in self.sources.replace(";", "\n").splitlines():
            if not entry.strip():
                continue
            label, equals, url = entry.partition("=")
            if not equals or not label.strip() or not url.strip():
                raise InputError(f"MADRONE_SOURCES: {entry.strip()!r} is not 'Label=URL'")
            pairs.append((label.strip(), url.strip()))
        return pairs

    def resolved_storage_url(self) -> str:
        """``storage_url``, else the local default folder."""
        return self.storage_url or default_storage_url()

    def resolved_central_storage_url(self) -> str:
        """``central_storage_url``, else the same place as ``resolved_storage_url()``."""
        return self.central_storage_url or self.resolved_storage_url()

    def storage_option_map(self) -> dict[str, object]:
        """``storage_options`` parsed; anything but a JSON object names the setting."""
        if not self.storage_options.strip():
            return {}
        try:
            options = json.loads(self.storage_options)
        except json.JSONDecodeError as error:
            raise InputError(f"MADRONE_STORAGE_OPTIONS is not valid JSON ({error})") from None
        if not isinstance(options, dict):
            raise InputError("MADRONE_STORAGE_OPTIONS must be a JSON object {...}")
        return options


def default_storage_url(environ: Mapping[str, str] | None = None) -> str:
    """The local product folder: ``storage`` in ``user_data_dir()``, beside the catalog."""
    return os.path.join(user_data_dir(environ), "storage")


def user_data_dir(environ: Mapping[str, str] | None = None) -> str:
    """The user's madrone data folder: ``$XDG_DATA_HOME/madrone`` or
    ``~/.local/share/madrone`` (the local catalog and storage live there)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "madrone")


def read_pem(path: str, what: str) -> bytes | None:
    """The bytes of a PEM file named by a setting (``what``); none when the setting is
    empty; an unreadable file names the setting and the path."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise InputError(f"{what} {path}: cannot read ({error.strerror})") from None


def _parse(kind: object, raw: object, where: str) -> object:
    if kind in ("int", int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise InputError(f"{where}={raw!r} is not a whole number") from None
    if kind in ("float", float):
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise InputError(f"{where}={raw!r} is not a number") from None
    return str(raw)


def _read_file(path: str) -> dict[str, object]:
    """Settings from a TOML file: ``workers = 4`` ... (the field names, lower case)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise InputError(f"MADRONE_CONFIG={path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"MADRONE_CONFIG={path}: not valid TOML ({error})") from None
    known = {field.name: field.type for field in fields(Settings)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(
            f"{path}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    return {key: _parse(known[key], value, f"{path}: {key}") for key, value in data.items()}
