"""Product storage through fsspec: a local folder by default, S3 (AWS, MinIO and other S3
services) or Azure Blob / Data Lake Gen2 when configured.

A ``Storage`` is rooted at one URL (``/data/products``, ``s3://bucket/prefix``,
``az://container/prefix``, ``abfs://container/prefix``). ``put_files`` stores a product's
files under ``<root>/<prefix>/`` all or nothing: every object is read back and checked
(size and sha256) before the call returns, and on any failure what was written is removed
again. Credentials come from the environment only (botocore's ``AWS_*`` chain, adlfs's
``AZURE_STORAGE_*``); URLs and options carrying them are refused, so nothing secret reaches
the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from madrone.errors import InputError, StorageError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from madrone.config import Settings

CHUNK_BYTES = 4 * 2**20  # read size of hashing and verification: bounds memory
UPLOAD_PART_BYTES = 16 * 2**20  # S3 multipart part size (at most 4 parts in flight)
GEOJSON_SNIFF_BYTES = 4 * 2**20  # a larger .json is not parsed to tell GeoJSON apart
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

_AZURE_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*")
_SCHEMES = {"s3": "s3", "az": "az", "abfs": "abfs", "abfss": "abfs"}
_GDAL_PREFIX = {"s3": "/vsis3/", "az": "/vsiaz/", "abfs": "/vsiadls/"}
_MEDIA_TYPES = {
    ".tif": COG_MEDIA_TYPE,
    ".tiff": COG_MEDIA_TYPE,
    ".png": "image/png",
    ".geojson": "application/geo+json",
    ".pgw": "text/plain",
    ".aux.xml": "application/xml",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".csv": "text/csv",
}
# Option names that would carry a secret: credentials come from the environment only.
_SECRET_OPTIONS = frozenset({
    "key", "secret", "token", "username", "password", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "account_key", "connection_string",
    "sas_token", "client_secret", "credential",
})  # fmt: skip
_S3_CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); an S3 service other "
    "than AWS (MinIO...) also needs its endpoint in AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or "
    'MADRONE_STORAGE_OPTIONS={"client_kwargs": {"endpoint_url": "http://host:9000"}}'
)
_AZURE_CREDENTIALS_HELP = (
    "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
    "AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN"
)


@dataclass(frozen=True)
class StoredAsset:
    """One stored, verified file: its name under the product's prefix, where it is, its
    size in bytes, the sha256 of its bytes (hex) and its media type."""

    key: str
    url: str
    size: int
    sha256: str
    media_type: str


class Storage:
    """Product files under one root URL, through one fsspec filesystem.

    Attributes:
        url: the root, normalised (an absolute path for a local folder).
        cleanup_delays: seconds waited before each attempt to remove what a failed
            ``put_files`` wrote (a server that went away may be back a moment later).
    """

    cleanup_delays: tuple[float, ...] = (0.0, 0.5, 2.0)

    def __init__(self, url: str, fs: AbstractFileSystem, scheme: str, root_path: str) -> None:
        self.url = url
        self.scheme = scheme
        self._fs = fs
        self._root_path = root_path

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, object] | None = None) -> Storage:
        """Storage rooted at ``url``; ``options`` are extra fsspec options (no credentials).

        Raises:
            StorageError: an unknown scheme, no bucket or container, credentials in the URL
                or the options, or no credentials in the environment; the message names the
                URL and what to set.
        """
        scheme, root_url, root_path, extra = _parse_root(url)
        options = {**extra, **(options or {})}
        _refuse_secrets(root_url, options)
        if scheme == "file":
            from fsspec.implementations.local import LocalFileSystem

            return cls(root_url, LocalFileSystem(), scheme, root_path)
        if scheme == "s3":
            return cls(root_url, _s3_filesystem(root_url, options), scheme, root_path)
        return cls(root_url, _azure_filesystem(root_url, options), scheme, root_path)

    @classmethod
    def from_settings(cls, settings: Settings, central: bool = False) -> Storage:
        """The local (or, with ``central``, the team's) storage the settings name."""
        url = settings.resolved_central_storage_url() if central else None
        return cls.from_url(url or settings.resolved_storage_url(), settings.storage_option_map())

    def close(self) -> None:
        """Close the filesystem's network sessions (idempotent)."""
        _close_filesystem(self._fs)

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url_for(self, key: str) -> str:
        """The URL of ``key`` (``prefix/name``) under the root."""
        return f"{self.url}/{check_key(key)}"

    def put_files(self, files: Mapping[str, str], prefix: str) -> list[StoredAsset]:
        """Store local files (name -> path) under ``<root>/<prefix>/``, all or nothing.

        Each object is read back and compared with the local file (size and sha256) before
        the call returns. On any failure what was written is removed (a few attempts, see
        ``cleanup_delays``) and a StorageError names the file and the URL; objects that
        could not be removed are in its ``leftover``.
        """
        return self._put(files, prefix, {})

    def remove(self, prefix_or_urls: str | Iterable[str]) -> None:
        """Remove every object under a prefix, or the given URLs; missing ones are fine.

        A string with ``://`` or a leading ``/`` is one URL; any other string is a prefix
        (``overlays/42``: that folder only, never ``overlays/420``).

        Raises:
            StorageError: some objects could not be removed; they are in ``leftover``.
        """
        if isinstance(prefix_or_urls, str) and not _is_url(prefix_or_urls):
            urls = self.list(prefix_or_urls)
        elif isinstance(prefix_or_urls, str):
            urls = [prefix_or_urls]
        else:
            urls = list(prefix_or_urls)
        for url in urls:
            self._path(url)  # refuse anything outside the root before removing anything
        leftover = self._remove_with_retries(urls)
        if leftover:
            raise StorageError(
                f"{self.url}: could not remove {len(leftover)} object(s): "
                f"{', '.join(leftover)}; retry later",
                leftover,
            )

    def list(self, prefix: str = "") -> list[str]:
        """URLs of every object under ``<root>/<prefix>``, sorted."""
        path = self._path(self.url_for(prefix)) if prefix else self._root_path
        with self._failing_as_storage_error(prefix or self.url, "list"):
            found = self._fs.find(path)
        return sorted(self.url + name[len(self._root_path) :] for name in found)

    def open(self, url: str) -> BinaryIO:
        """Open a stored object for reading (binary, seekable)."""
        path = self._path(url)
        with self._failing_as_storage_error(url, "open"):
            return self._fs.open(path, "rb", block_size=CHUNK_BYTES)

    def exists(self, url: str) -> bool:
        """Whether an object is stored at ``url``."""
        path = self._path(url)
        with self._failing_as_storage_error(url, "check"):
            return bool(self._fs.exists(path))

    def gdal_path(self, url: str) -> str:
        """The name GDAL opens ``url`` by: /vsis3/, /vsiaz/, /vsiadls/ or a local path.

        GDAL reads credentials from the environment itself; ``gdal_env()`` adds what it
        cannot find there (a custom S3 endpoint, adlfs's Azure variable names).
        """
        path = self._path(url)
        return path if self.scheme == "file" else _GDAL_PREFIX[self.scheme] + path

    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration options to open ``gdal_path()`` names, for ``rasterio.Env``."""
        if self.scheme == "s3":
            return _s3_gdal_env(self._fs)
        if self.scheme in ("az", "abfs"):
            return _azure_gdal_env(self._fs)
        return {}

    def copy_to(
        self, other: Storage, assets: Sequence[StoredAsset], prefix: str
    ) -> list[StoredAsset]:
        """Copy stored assets to ``<other root>/<prefix>/``; idempotent.

        An object already there with the same size and sha256 is kept, not uploaded again;
        the rest go through ``other.put_files`` (all or nothing, verified against the
        assets' sha256, so a source that changed since it was stored is refused).
        """
        check_key(prefix)
        done: dict[str, StoredAsset] = {}
        pending: dict[str, StoredAsset] = {}
        for asset in assets:
            target = other.url_for(f"{prefix}/{asset.key}")
            if other._holds(target, asset.size, asset.sha256):
                done[asset.key] = replace(asset, url=target)
            else:
                pending[asset.key] = asset
        if pending:
            with self._local_copies(pending.values()) as files:
                expected = {key: asset.sha256 for key, asset in pending.items()}
                done.update((a.key, a) for a in other._put(files, prefix, expected))
        return [done[asset.key] for asset in assets]

    # -- writing -------------------------------------------------------------------------

    def _put(
        self, files: Mapping[str, str], prefix: str, expected: Mapping[str, str]
    ) -> list[StoredAsset]:
        check_key(prefix)
        targets = {name: self.url_for(f"{prefix}/{check_key(name)}") for name in files}
        for local in files.values():
            if not os.path.isfile(local):
                raise StorageError(f"{local}: not a file; nothing was stored in {self.url}")
        written: list[str] = []
        stored: list[StoredAsset] = []
        name = ""
        try:
            for name, local in files.items():
                asset = self._put_one(name, local, targets[name], expected.get(name), written)
                stored.append(asset)
        except BaseException as error:
            leftover = self._remove_with_retries(written)
            if not isinstance(error, Exception):
                raise
            raise StorageError(
                _failure_message(files[name], targets[name], error, written, leftover),
                leftover,
            ) from error
        return stored

    def _put_one(
        self, name: str, local: str, url: str, expected: str | None, written: list[str]
    ) -> StoredAsset:
        before = os.stat(local)
        size, digest = _hash_local(local)
        if expected is not None and digest != expected:
            raise _Mismatch(f"{local} changed since it was stored (sha256 {digest})")
        media = media_type(name, local)
        path = self._path(url)
        written.append(url)  # before the upload: a lost reply may hide a stored object
        if self.scheme == "file":
            _write_local(local, path)
        else:
            self._upload(local, path, media)
        self._verify(path, size, digest)
        after = os.stat(local)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise _Mismatch(f"{local} changed while it was being stored")
        return StoredAsset(name, url, size, digest, media)

    def _upload(self, local: str, path: str, media: str) -> None:
        if self.scheme == "s3":
            self._fs.put_file(
                local, path, chunksize=UPLOAD_PART_BYTES, max_concurrency=4, ContentType=media
            )
        else:
            _upload_blocks(self._fs, local, path, media)

    def _verify(self, path: str, size: int, digest: str) -> None:
        """Read the object back, in bounded chunks, and compare size and sha256."""
        self._fs.invalidate_cache(path)
        stored_size = int(self._fs.info(path)["size"])
        if stored_size != size:
            raise _Mismatch(f"stored {stored_size} bytes, the file has {size}")
        sha = hashlib.sha256()
        for start in range(0, size, CHUNK_BYTES):
            end = min(start + CHUNK_BYTES, size)
            sha.update(self._fs.cat_file(path, start=start, end=end))
        if sha.hexdigest() != digest:
            raise _Mismatch(f"stored sha256 {sha.hexdigest()}, the file has {digest}")

    def _holds(self, url: str, size: int, digest: str) -> bool:
        """Whether ``url`` already holds exactly these bytes (read back to be sure)."""
        path = self._path(url)
        with self._failing_as_storage_error(url, "check"):
            if not self._fs.exists(path):
                return False
            try:
                self._verify(path, size, digest)
            except (_Mismatch, FileNotFoundError):  # different, or gone meanwhile
                return False
        return True

    @contextlib.contextmanager
    def _local_copies(self, assets: Iterable[StoredAsset]) -> Iterator[dict[str, str]]:
        """Local paths of stored assets: the files themselves, or downloaded copies."""
        if self.scheme == "file":
            yield {asset.key: self._path(asset.url) for asset in assets}
            return
        with tempfile.TemporaryDirectory(prefix="madrone-copy-") as folder:
            files = {}
            for index, asset in enumerate(assets):
                files[asset.key] = os.path.join(folder, f"{index}-{os.path.basename(asset.key)}")
                with self._failing_as_storage_error(asset.url, "download"):
                    self._fs.get_file(self._path(asset.url), files[asset.key])
            yield files

    # -- removing ------------------------------------------------------------------------

    def _remove_with_retries(self, urls: Sequence[str]) -> list[str]:
        """Remove ``urls``, trying again after each of ``cleanup_delays``; what is left."""
        remaining = list(urls)
        for delay in self.cleanup_delays:
            if not remaining:
                break
            time.sleep(delay)
            remaining = self._remove_once(remaining, [self._path(u) for u in remaining])
        return remaining

    def _remove_once(self, urls: Sequence[str], paths: Sequence[str]) -> list[str]:
        """One attempt; stops at the first failure (the server is likely gone)."""
        for index, path in enumerate(paths):
            try:
                self._remove_path(path)
            except FileNotFoundError:
                continue
            except Exception:
                return list(urls[index:])
        return []

    def _remove_path(self, path: str) -> None:
        if self.scheme != "file":
            self._fs.rm_file(path)
            return
        os.remove(path)
        folder = os.path.dirname(path)
        while folder != self._root_path and folder.startswith(self._root_path + "/"):
            try:
                os.rmdir(folder)  # only empty folders go: the prefix, not its siblings
            except OSError:
                break
            folder = os.path.dirname(folder)

    # -- names ---------------------------------------------------------------------------

    def _path(self, url: str) -> str:
        """The filesystem path of a URL under the root; anything else is refused."""
        if url.startswith("file://"):
            url = urlsplit(url).path
        if not url.startswith(self.url + "/"):
            raise StorageError(f"{url} is not in the storage {self.url}")
        return f"{self._root_path}/{check_key(url[len(self.url) + 1 :])}"

    @contextlib.contextmanager
    def _failing_as_storage_error(self, url: str, action: str) -> Iterator[None]:
        try:
            yield
        except (StorageError, InputError):
            raise
        except FileNotFoundError:
            if action in ("open", "download"):
                raise StorageError(f"{url}: no such object in {self.url}") from None
            raise
        except Exception as error:
            raise StorageError(f"{url}: cannot {action} ({_reason(error)})") from error


class _Mismatch(Exception):
    """A stored object differs from its file."""


def check_key(key: str) -> str:
    """``key`` if it is a relative ``a/b/c`` name without empty, ``.`` or ``..`` parts."""
    parts = key.split("/")
    if not key or any(part in ("", ".", "..") for part in parts) or "\\" in key:
        raise InputError(f"{key!r} is not a storage key: use names like 'overlays/42/ndvi.tif'")
    if any(ord(char) < 32 for char in key):
        raise InputError(f"{key!r} is not a storage key: it holds control characters")
    return key


def media_type(name: str, path: str | None = None) -> str:
    """The media type of a product file, from its name (and, for ``.json``, its content:
    a GeoJSON Feature or FeatureCollection such as a STAC item is application/geo+json)."""
    lower = name.lower()
    for suffix, kind in sorted(_MEDIA_TYPES.items(), key=lambda item: -len(item[0])):
        if lower.endswith(suffix):
            return kind
    if lower.endswith(".json"):
        return "application/geo+json" if path and _is_geojson(path) else "application/json"
    return "application/octet-stream"


def _is_geojson(path: str) -> bool:
    if os.path.getsize(path) > GEOJSON_SNIFF_BYTES:
        return False
    try:
        with open(path, "rb") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("type") in ("Feature", "FeatureCollection")


def _read_chunks(path: str) -> Iterator[bytes]:
    """A local file's bytes in ``CHUNK_BYTES`` pieces (the one reader of local files)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _hash_local(path: str) -> tuple[int, str]:
    """Size and sha256 of a local file, streaming."""
    sha, size = hashlib.sha256(), 0
    for chunk in _read_chunks(path):
        sha.update(chunk)
        size += len(chunk)
    return size, sha.hexdigest()


def _write_local(source: str, target: str) -> None:
    """Copy so the target is never half-written: a temporary name, fsync, rename."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex}.part")
    try:
        with open(temporary, "xb") as out:
            for chunk in _read_chunks(source):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the rename itself survives a crash
    finally:
        os.close(descriptor)


def _upload_blocks(fs: AbstractFileSystem, local: str, path: str, media: str) -> None:
    """Upload to Azure as staged blocks, committed at the end: nothing is visible before.

    Each block goes as a stream (io.BytesIO): the SDK's own upload_blob hands aiohttp raw
    bytes, which it warns about (azure-sdk-for-python issue 39845)."""
    from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
    from azure.storage.blob import BlobBlock, ContentSettings
    from fsspec.asyn import sync

    container, blob, _ = fs.split_path(path)
    client = fs.service_client.get_blob_client(container, blob)
    tag = uuid.uuid4().hex[:16]  # block ids of concurrent writers never mix
    try:
        blocks = []
        for index, chunk in enumerate(_read_chunks(local)):
            blocks.append(BlobBlock(f"{tag}{index:08d}"))
            data = io.BytesIO(chunk)
            sync(fs.loop, client.stage_block, blocks[-1].id, data, length=len(chunk))
        settings = ContentSettings(content_type=media)
        sync(fs.loop, client.commit_block_list, blocks, content_settings=settings)
    except ResourceNotFoundError:
        raise FileNotFoundError(f"container {container!r} does not exist") from None
    except ClientAuthenticationError as error:
        raise PermissionError(error.message) from None
    finally:
        sync(fs.loop, client.close)  # the child's transport wrapper; the shared one stays
    fs.invalidate_cache(path)


def _failure_message(
    local: str, url: str, error: Exception, written: Sequence[str], leftover: Sequence[str]
) -> str:
    reason = str(error) if isinstance(error, _Mismatch) else _reason(error)
    message = f"cannot store {local} as {url}: {reason}"
    if leftover:
        return (
            f"{message}; and could not remove {len(leftover)} object(s) already written: "
            f"{', '.join(leftover)} (retry with Storage.remove(error.leftover))"
        )
    if written:
        return f"{message}; removed the {len(written)} object(s) written"
    return message


def _reason(error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return f"access denied: {error}; check the credentials in the environment"
    if isinstance(error, FileNotFoundError):
        return f"not found: {error}; does the bucket or container exist?"
    return f"{type(error).__name__}: {error}"


def _redacted(url: str) -> str:
    """``url`` without a password or a query (a SAS token), for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else ""))


def _is_url(text: str) -> bool:
    return "://" in text or text.startswith("/")


def _parse_root(url: str) -> tuple[str, str, str, dict[str, object]]:
    """(scheme, normalised root URL, filesystem path, options the URL implies)."""
    if not url.strip():
        raise StorageError("empty storage URL: set MADRONE_STORAGE_URL (or leave it unset)")
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # len 1: a Windows drive
        path = os.path.abspath(os.path.expanduser(parts.path if parts.scheme == "file" else url))
        return "file", path, path, {}
    url = _redacted(url)  # the messages below never repeat a secret
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise StorageError(
            f"{url}: unknown storage scheme {parts.scheme!r}; use a local folder, "
            "s3://bucket/prefix, az://container/prefix or abfs://container/prefix"
        )
    if parts.query or parts.fragment or parts.password:
        help_text = _S3_CREDENTIALS_HELP if scheme == "s3" else _AZURE_CREDENTIALS_HELP
        raise StorageError(f"{url}: no credentials or queries in storage URLs; {help_text}")
    bucket, options = _bucket_and_options(url, scheme, parts.netloc)
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
    root_path = f"{bucket}/{prefix}" if prefix else bucket
    root_url = f"{parts.scheme.lower()}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
    return scheme, root_url, root_path, options


def _bucket_and_options(url: str, scheme: str, netloc: str) -> tuple[str, dict[str, object]]:
    """The bucket or container of a URL, and the account an Azure host names."""
    what = "bucket" if scheme == "s3" else "container"
    name, at, host = netloc.partition("@")
    options: dict[str, object] = {}
    if at and scheme == "s3":
        raise StorageError(f"{url}: no credentials in storage URLs; {_S3_CREDENTIALS_HELP}")
    if at:
        account, dot, suffix = host.partition(".")
        if not dot or suffix not in ("blob.core.windows.net", "dfs.core.windows.net"):
            raise StorageError(
                f"{url}: write {scheme}://container@account.dfs.core.windows.net/prefix, "
                "or set the account in AZURE_STORAGE_ACCOUNT_NAME"
            )
        options["account_name"] = account
    if not name:
        raise StorageError(f"{url}: no {what}; write {scheme}://{what}/prefix")
    if scheme != "s3" and not _AZURE_CONTAINER.fullmatch(name):
        raise StorageError(
            f"{url}: {name!r} is not an Azure container name "
            "(3-63 lower-case letters, digits and single hyphens)"
        )
    return name, options


def _refuse_secrets(url: str, options: Mapping[str, object]) -> None:
    client_kwargs = options.get("client_kwargs")
    nested = client_kwargs if isinstance(client_kwargs, Mapping) else {}
    found = sorted((set(options) | set(nested)) & _SECRET_OPTIONS)
    if found:
        help_text = _S3_CREDENTIALS_HELP if url.startswith("s3") else _AZURE_CREDENTIALS_HELP
        raise StorageError(
            f"{url}: storage options {', '.join(found)} would hold credentials; they come "
            f"from the environment only: {help_text}"
        )


def _s3_filesystem(url: str, options: dict[str, object]) -> AbstractFileSystem:
    try:
        import s3fs
    except ImportError:
        raise StorageError(f"{url}: S3 storage needs s3fs: pip install 'madrone[s3]'") from None
    from fsspec.asyn import sync

    try:
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    except (TypeError, ValueError) as error:
        raise StorageError(f"{url}: bad MADRONE_STORAGE_OPTIONS for S3 ({error})") from None
    try:
        client = sync(fs.loop, fs.set_session)
        _without_expect_continue(fs.session, client)
        credentials = None if options.get("anon") else sync(fs.loop, fs.session.get_credentials)
    except Exception as error:
        _close_filesystem(fs)
        raise StorageError(f"{url}: cannot set up S3 ({_reason(error)})") from error
    if credentials is None and not options.get("anon"):
        _close_filesystem(fs)
        raise StorageError(f"{url}: no S3 credentials found; {_S3_CREDENTIALS_HELP}")
    return fs


def _without_expect_continue(session: object, client: object) -> None:
    """Send S3 bodies without ``Expect: 100-continue``: aiohttp waits for that interim
    answer with no timeout at all, so a server that accepts connections but never answers
    would hang an upload forever; without it, the read timeout applies."""
    from botocore.handlers import add_expect_header

    session.unregister("before-call.s3", add_expect_header)  # clients made later
    client.meta.events.unregister("before-call.s3", add_expect_header)


def _azure_filesystem(url: str, options: dict[str, object]) -> AbstractFileSystem:
    try:
        import adlfs
    except ImportError:
        raise StorageError(
            f"{url}: Azure storage needs adlfs: pip install 'madrone[azure]'"
        ) from None
    client_kwargs = options.pop("client_kwargs", None) or {}
    try:
        fs = adlfs.AzureBlobFileSystem(skip_instance_cache=True, **options)
    except ValueError:
        raise StorageError(
            f"{url}: no Azure credentials found; {_AZURE_CREDENTIALS_HELP}"
        ) from None
    except TypeError as error:
        raise StorageError(f"{url}: bad MADRONE_STORAGE_OPTIONS for Azure ({error})") from None
    if client_kwargs:
        _reconnect(url, fs, client_kwargs)
    return fs


def _reconnect(url: str, fs: AbstractFileSystem, client_kwargs: Mapping[str, object]) -> None:
    """Rebuild adlfs's service client with Azure SDK options (``retry_total``,
    ``initial_backoff``, ``connection_timeout``...), which adlfs does not pass on: the
    SDK's default retries take over a minute to give up on a server that is gone."""
    from fsspec.asyn import sync

    old = fs.service_client
    try:
        fs.service_client = type(old)(old.url, credential=old.credential, **client_kwargs)
    except TypeError as error:
        raise StorageError(
            f"{url}: bad client_kwargs in MADRONE_STORAGE_OPTIONS ({error})"
        ) from None
    finally:
        sync(fs.loop, old.close)


def _close_filesystem(fs: AbstractFileSystem) -> None:
    """Close an s3fs or adlfs filesystem's aiohttp sessions now, not at garbage collection
    (a ResourceWarning then, an error in the test run)."""
    from fsspec.asyn import sync

    creator = getattr(fs, "_s3creator", None)  # s3fs: the client's async context manager
    if creator is not None:
        fs._s3creator = fs._s3 = None
        sync(fs.loop, creator.__aexit__, None, None, None)
    client = getattr(fs, "service_client", None)  # adlfs
    if client is not None:
        sync(fs.loop, client.close)
        credential = getattr(fs, "credential", None)
        if credential is not None and inspect.iscoroutinefunction(credential.close):
            sync(fs.loop, credential.close)


def _s3_gdal_env(fs: AbstractFileSystem) -> dict[str, str]:
    """GDAL reads ``AWS_*`` keys itself but not botocore's endpoint settings."""
    from fsspec.asyn import sync

    client = sync(fs.loop, fs.set_session)
    env = {"AWS_REGION": client.meta.region_name} if client.meta.region_name else {}
    if fs.anon:
        env["AWS_NO_SIGN_REQUEST"] = "YES"
    endpoint = urlsplit(client.meta.endpoint_url)
    if endpoint.hostname and not endpoint.hostname.endswith("amazonaws.com"):
        env["AWS_S3_ENDPOINT"] = endpoint.netloc
        env["AWS_VIRTUAL_HOSTING"] = "FALSE"  # path-style, as MinIO and moto expect
        env["AWS_HTTPS"] = "YES" if endpoint.scheme == "https" else "NO"
    return env


def _azure_gdal_env(fs: AbstractFileSystem) -> dict[str, str]:
    """GDAL reads AZURE_STORAGE_CONNECTION_STRING and _SAS_TOKEN itself; an account name
    and key it knows as AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_ACCESS_KEY."""
    if getattr(fs, "connection_string", None) or not getattr(fs, "account_name", None):
        return {}
    env = {"AZURE_STORAGE_ACCOUNT": fs.account_name}
    if getattr(fs, "account_key", None):
        env["AZURE_STORAGE_ACCESS_KEY"] = fs.account_key
    return env
