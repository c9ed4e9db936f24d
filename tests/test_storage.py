"""Product storage against real servers on 127.0.0.1: a local folder, moto's S3 server and
Azurite (Azure Blob, reached as az:// and abfs://). Credentials come from the environment
only, as in production; the failure tests stop or freeze the server mid-upload for real."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

import madrone.storage as storage_module
from madrone.config import Settings, default_storage_url
from madrone.errors import InputError, StorageError
from madrone.storage import COG_MEDIA_TYPE, Storage, StoredAsset, media_type
from tests.support.azurite import AzuriteServer, azurite_server, create_container, list_blobs
from tests.support.rasters import TRANSFORM, write_raster
from tests.support.s3 import (
    MotoServer,
    create_bucket,
    list_objects,
    moto_server,
    s3_client,
    use_s3_env,
)

PIXELS = np.arange(96 * 80, dtype=np.float32).reshape(96, 80) / 100
PREFIX = "overlays/42"
# Give up quickly on a server that is gone (the SDKs' defaults wait up to minutes).
FAST_S3 = {"config_kwargs": {"connect_timeout": 1, "read_timeout": 1,
                             "retries": {"total_max_attempts": 1}}}  # fmt: skip
FAST_AZURE = {"client_kwargs": {"retry_total": 0}}


@dataclass
class Backend:
    """A storage under test and an independent view of what its server holds."""

    storage: Storage
    objects: Callable[[], dict[str, str]]  # key under the root -> version tag
    overwrite: Callable[[str, bytes], None]  # key under the root, new bytes


@pytest.fixture
def product(tmp_path: Path) -> dict[str, str]:
    """A product's files: a GeoTIFF, a PNG with its world file and .aux.xml, a STAC item,
    plain JSON, and 9 MiB that cross the 4 MiB read and block boundaries."""
    folder = tmp_path / "product"
    folder.mkdir()
    files = {"ndvi.tif": write_raster(folder / "ndvi.tif", PIXELS, tiled=True, compress="deflate",
                                      blockxsize=32, blockysize=32)}  # fmt: skip
    with rasterio.open(folder / "ndvi.png", "w", driver="PNG", width=8, height=8, count=1,
                       dtype="uint8", crs="EPSG:32633", transform=TRANSFORM) as png:  # fmt: skip
        png.write(np.arange(64, dtype=np.uint8).reshape(1, 8, 8))
    files["ndvi.png"] = str(folder / "ndvi.png")
    texts = {
        "ndvi.pgw": "10.0\n0.0\n0.0\n-10.0\n500005.0\n4999995.0\n",
        "ndvi.png.aux.xml": "<PAMDataset><SRS>EPSG:32633</SRS></PAMDataset>\n",
        "item.json": json.dumps({"type": "Feature", "stac_version": "1.0.0", "id": "ndvi"}),
        "stats.json": json.dumps({"mean": 0.42}),
    }
    for name, text in texts.items():
        (folder / name).write_text(text)
        files[name] = str(folder / name)
    (folder / "big.bin").write_bytes(np.random.default_rng(7).bytes(9 * 2**20 + 13))
    files["big.bin"] = str(folder / "big.bin")
    return files


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


def use_azure_env(monkeypatch: pytest.MonkeyPatch, connection: str | None) -> None:
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    if connection:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)


def s3_backend(endpoint: str, options: dict | None = None) -> Backend:
    bucket = f"madrone-{uuid.uuid4().hex[:12]}"  # GDAL caches by path: never reuse one
    create_bucket(endpoint, bucket)
    options = {"client_kwargs": {"endpoint_url": endpoint}, **(options or {})}
    storage = Storage.from_url(f"s3://{bucket}/products", options)

    def objects() -> dict[str, str]:
        found = list_objects(endpoint, bucket)
        return {key.removeprefix("products/"): tag for key, tag in found.items()}

    def overwrite(key: str, data: bytes) -> None:
        with s3_client(endpoint) as client:
            client.put_object(Bucket=bucket, Key=f"products/{key}", Body=data)

    return Backend(storage, objects, overwrite)


def azure_backend(connection: str, scheme: str, options: dict | None = None) -> Backend:
    from azure.storage.blob import BlobServiceClient

    container = f"madrone-{uuid.uuid4().hex[:12]}"
    create_container(connection, container)
    storage = Storage.from_url(f"{scheme}://{container}/products", options)

    def objects() -> dict[str, str]:
        found = list_blobs(connection, container)
        return {key.removeprefix("products/"): tag for key, tag in found.items()}

    def overwrite(key: str, data: bytes) -> None:
        with BlobServiceClient.from_connection_string(connection) as service:
            blob = service.get_blob_client(container, f"products/{key}")
            blob.upload_blob(data, overwrite=True)

    return Backend(storage, objects, overwrite)


def local_backend(root: Path) -> Backend:
    def objects() -> dict[str, str]:
        found = {}
        for folder, _, names in os.walk(root):
            for name in names:  # hidden temporary files too: none may be left
                path = Path(folder) / name
                found[path.relative_to(root).as_posix()] = str(path.stat().st_mtime_ns)
        return found

    def overwrite(key: str, data: bytes) -> None:
        (root / key).write_bytes(data)

    return Backend(Storage.from_url(str(root)), objects, overwrite)


@pytest.fixture(params=["local", "s3", "az", "abfs"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    azurite_blob: AzuriteServer,
) -> Iterator[Backend]:
    use_s3_env(monkeypatch, tmp_path)
    use_azure_env(monkeypatch, azurite_blob.connection)
    if request.param == "local":
        made = local_backend(tmp_path / "storage")
    elif request.param == "s3":
        made = s3_backend(moto.endpoint)
    else:
        made = azure_backend(azurite_blob.connection, request.param)
    with made.storage:
        yield made


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def on_first_read(monkeypatch: pytest.MonkeyPatch, path: str, action: Callable[[], None]) -> None:
    """Run ``action`` once madrone has read ``path`` through for the first time (the hash
    it computes before uploading): between that file's check and its upload."""
    reader = storage_module._read_chunks
    done: list[bool] = []

    def reading(name: str) -> Iterator[bytes]:
        yield from reader(name)
        if name == path and not done:
            done.append(True)
            action()

    monkeypatch.setattr(storage_module, "_read_chunks", reading)


def test_put_verifies_reads_back_opens_with_gdal_and_removes(
    backend: Backend, product: dict[str, str]
) -> None:
    storage = backend.storage
    assets = storage.put_files(product, PREFIX)
    assert [asset.key for asset in assets] == list(product)
    for asset in assets:
        assert asset.url == storage.url_for(f"{PREFIX}/{asset.key}")
        assert asset.size == os.path.getsize(product[asset.key])
        assert asset.sha256 == sha256(product[asset.key])
        assert storage.exists(asset.url)
        with storage.open(asset.url) as stored:
            assert stored.read() == Path(product[asset.key]).read_bytes()
    assert {asset.key: asset.media_type for asset in assets} == {
        "ndvi.tif": COG_MEDIA_TYPE,
        "ndvi.png": "image/png",
        "ndvi.pgw": "text/plain",
        "ndvi.png.aux.xml": "application/xml",
        "item.json": "application/geo+json",
        "stats.json": "application/json",
        "big.bin": "application/octet-stream",
    }
    (sibling,) = storage.put_files({"item.json": product["item.json"]}, PREFIX + "0")
    assert sorted(backend.objects()) == sorted(
        [f"{PREFIX}/{name}" for name in product] + [f"{PREFIX}0/item.json"]
    )
    assert storage.list(PREFIX) == sorted(asset.url for asset in assets)

    cog = assets[0]
    with rasterio.Env(**storage.gdal_env()), rasterio.open(storage.gdal_path(cog.url)) as ds:
        np.testing.assert_array_equal(ds.read(1), PIXELS)
        assert ds.crs.to_epsg() == 32633

    storage.remove(PREFIX)
    assert sorted(backend.objects()) == [f"{PREFIX}0/item.json"]  # overlays/420 stays
    assert not storage.exists(cog.url)
    assert storage.list(PREFIX) == []
    storage.remove([sibling.url])
    assert backend.objects() == {}


def test_gdal_paths_and_names() -> None:
    local = Storage.from_url("/data/madrone/")
    assert local.url == "/data/madrone"
    assert local.gdal_path("/data/madrone/a/b.tif") == "/data/madrone/a/b.tif"
    assert local.gdal_path("file:///data/madrone/a/b.tif") == "/data/madrone/a/b.tif"
    with pytest.raises(StorageError, match="/etc/passwd is not in the storage /data/madrone"):
        local.open("/etc/passwd")
    for key in ("", "a//b", "../b", "a/./b", "a\\b"):
        with pytest.raises(InputError, match="not a storage key"):
            local.url_for(key)
    with pytest.raises(InputError):
        local.gdal_path("/data/madrone/a/../../etc/passwd")


def test_gdal_paths_of_object_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3_env(monkeypatch, tmp_path)
    use_azure_env(monkeypatch, None)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "madroneteam")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    with Storage.from_url("s3://bucket/p") as s3:
        assert s3.gdal_path("s3://bucket/p/x/a.tif") == "/vsis3/bucket/p/x/a.tif"
        assert "AWS_S3_ENDPOINT" not in s3.gdal_env()  # AWS itself: GDAL's default
    with Storage.from_url("az://cont/p") as blob, Storage.from_url("abfs://cont/p") as lake:
        assert blob.gdal_path("az://cont/p/a.tif") == "/vsiaz/cont/p/a.tif"
        assert lake.gdal_path("abfs://cont/p/a.tif") == "/vsiadls/cont/p/a.tif"
        # GDAL's names for adlfs's account variables
        assert blob.gdal_env() == {"AZURE_STORAGE_ACCOUNT": "madroneteam",
                                   "AZURE_STORAGE_ACCESS_KEY": "a2V5"}  # fmt: skip
    with Storage.from_url("abfs://cont@madroneteam.dfs.core.windows.net/p") as hosted:
        url = "abfs://cont@madroneteam.dfs.core.windows.net/p/a.tif"
        assert hosted.gdal_path(url) == "/vsiadls/cont/p/a.tif"


def test_s3_endpoint_from_the_environment(
    moto: MotoServer, product: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MinIO and other S3 services: botocore's AWS_ENDPOINT_URL_S3, mapped for GDAL."""
    use_s3_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    bucket = f"madrone-{uuid.uuid4().hex[:12]}"
    create_bucket(moto.endpoint, bucket)
    large = tmp_path / "large.bin"  # over two 16 MiB parts: a multipart upload
    large.write_bytes(np.random.default_rng(3).bytes(33 * 2**20 + 1))
    with Storage.from_url(f"s3://{bucket}") as storage:
        cog, big = storage.put_files({"ndvi.tif": product["ndvi.tif"], "big": str(large)}, "env")
        assert cog.url == f"s3://{bucket}/env/ndvi.tif"
        assert big.sha256 == sha256(str(large))
        assert '-3" ' in list_objects(moto.endpoint, bucket)["env/big"]  # ETag of 3 parts
        assert storage.gdal_env()["AWS_S3_ENDPOINT"] == moto.endpoint.removeprefix("http://")
        with rasterio.Env(**storage.gdal_env()), rasterio.open(storage.gdal_path(cog.url)) as ds:
            np.testing.assert_array_equal(ds.read(1), PIXELS)
        storage.remove([cog.url, big.url])
    assert list_objects(moto.endpoint, bucket) == {}


def test_copy_local_to_s3_twice_uploads_once(
    moto: MotoServer, product: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, tmp_path)
    central = s3_backend(moto.endpoint)
    with Storage.from_url(str(tmp_path / "local")) as local, central.storage as remote:
        assets = local.put_files(product, "datasets/7")
        first = local.copy_to(remote, assets, "shared/7")
        uploaded = central.objects()
        second = local.copy_to(remote, assets, "shared/7")
        assert central.objects() == uploaded  # same ETags and times: nothing uploaded again
        assert first == second
        assert [a.url for a in first] == [remote.url_for(f"shared/7/{a.key}") for a in assets]
        assert [(a.sha256, a.size) for a in first] == [(a.sha256, a.size) for a in assets]
        # A damaged copy is replaced; the intact ones stay as they are.
        central.overwrite("shared/7/stats.json", b"{}")
        local.copy_to(remote, assets, "shared/7")
        repaired, stats = central.objects(), "shared/7/stats.json"
        assert repaired[stats].split()[0] == uploaded[stats].split()[0]  # ETag: MD5 of bytes
        assert {k: v for k, v in repaired.items() if k != stats} == {
            k: v for k, v in uploaded.items() if k != stats
        }
        # A source changed since it was stored is refused, and nothing new stays.
        item = next(asset for asset in assets if asset.key == "item.json")
        Path(local.gdal_path(item.url)).write_text('{"type": "Feature", "id": "edited"}')
        with pytest.raises(StorageError, match="changed since it was stored"):
            local.copy_to(remote, assets, "shared/8")
        assert not [key for key in central.objects() if key.startswith("shared/8/")]


@pytest.mark.parametrize("kind", ["local", "s3", "az"])
def test_file_changed_before_upload_leaves_nothing(
    kind: str,
    product: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    azurite_blob: AzuriteServer,
) -> None:
    """The file checked is not the file uploaded: the read-back sha256 differs."""
    use_s3_env(monkeypatch, tmp_path)
    use_azure_env(monkeypatch, azurite_blob.connection)
    made = {"local": lambda: local_backend(tmp_path / "storage"),
            "s3": lambda: s3_backend(moto.endpoint),
            "az": lambda: azure_backend(azurite_blob.connection, "az")}[kind]()  # fmt: skip
    changed = product["ndvi.png.aux.xml"]
    on_first_read(monkeypatch, changed, lambda: Path(changed).write_text("<PAMDataset/>\n"))
    with made.storage as storage, pytest.raises(StorageError) as caught:
        storage.put_files(product, PREFIX)
    message = str(caught.value)
    assert f"cannot store {changed} as {storage.url_for(PREFIX + '/ndvi.png.aux.xml')}" in message
    assert "bytes" in message or "sha256" in message
    assert caught.value.leftover == []
    assert made.objects() == {}


@pytest.mark.parametrize("kind", ["local", "s3", "az"])
def test_object_changed_before_verification_leaves_nothing(
    kind: str,
    product: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    azurite_blob: AzuriteServer,
) -> None:
    """Another writer replaces an object between its upload and its check (same size)."""
    use_s3_env(monkeypatch, tmp_path)
    use_azure_env(monkeypatch, azurite_blob.connection)
    made = {"local": lambda: local_backend(tmp_path / "storage"),
            "s3": lambda: s3_backend(moto.endpoint),
            "az": lambda: azure_backend(azurite_blob.connection, "az")}[kind]()  # fmt: skip
    verify = Storage._verify
    original = Path(product["stats.json"]).read_bytes()

    def verify_after_a_rival(self: Storage, path: str, size: int, digest: str) -> None:
        if path.endswith("/stats.json"):
            made.overwrite(f"{PREFIX}/stats.json", original.upper())
        verify(self, path, size, digest)

    monkeypatch.setattr(Storage, "_verify", verify_after_a_rival)
    with made.storage as storage, pytest.raises(StorageError, match="stored sha256") as caught:
        storage.put_files(product, PREFIX)
    assert product["stats.json"] in str(caught.value)
    assert "removed the 6 object(s) written" in str(caught.value)
    assert caught.value.leftover == []
    assert made.objects() == {}


def wait_until_quiet(objects: Callable[[], dict[str, str]]) -> dict[str, str]:
    """What a server holds once it stops changing (a resumed server finishes the requests
    it had queued while frozen, even those the client gave up on)."""
    seen = objects()
    while True:
        time.sleep(1.0)
        now = objects()
        if now == seen:
            return now
        seen = now


def test_s3_server_frozen_mid_upload_leaves_leftovers_that_remove_clears(
    product: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, tmp_path)
    files = {name: product[name] for name in ("item.json", "stats.json", "ndvi.pgw")}
    with moto_server() as server:
        made = s3_backend(server.endpoint, FAST_S3)
        made.storage.cleanup_delays = (0.0,)
        on_first_read(monkeypatch, files["stats.json"], server.pause)
        with made.storage as storage:
            with pytest.raises(StorageError) as caught:
                storage.put_files(files, PREFIX)
            server.resume()
            error = caught.value
            written = [storage.url_for(f"{PREFIX}/{name}") for name in ("item.json", "stats.json")]
            assert f"cannot store {files['stats.json']} as {written[1]}" in str(error)
            assert "could not remove 2 object(s)" in str(error)
            assert error.leftover == written
            # Resumed, the server runs what it had queued, even requests the client gave up
            # on: the upload of stats.json lands after all (why it counts as written).
            held = wait_until_quiet(made.objects)
            assert f"{PREFIX}/stats.json" in held
            assert set(held) <= {f"{PREFIX}/item.json", f"{PREFIX}/stats.json"}
            storage.remove(error.leftover)
            assert made.objects() == {}


def test_azurite_stopped_mid_upload_then_restarted_remove_clears_leftovers(
    product: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = AzuriteServer(tmp_path / "azurite")  # blobs persist in --location
    server.start()
    try:
        use_azure_env(monkeypatch, server.connection)
        made = azure_backend(server.connection, "az", FAST_AZURE)
        made.storage.cleanup_delays = (0.0, 0.2)
        files = {name: product[name] for name in ("big.bin", "ndvi.tif", "item.json")}
        on_first_read(monkeypatch, files["ndvi.tif"], server.stop)
        with made.storage as storage:
            with pytest.raises(StorageError) as caught:
                storage.put_files(files, PREFIX)
            error = caught.value
            written = [storage.url_for(f"{PREFIX}/{name}") for name in ("big.bin", "ndvi.tif")]
            assert f"cannot store {files['ndvi.tif']} as {written[1]}" in str(error)
            assert error.leftover == written
            server.start()  # same port, same folder
            assert sorted(made.objects()) == [f"{PREFIX}/big.bin"]
            storage.remove(error.leftover)
            assert made.objects() == {}
    finally:
        server.stop()


def test_azurite_back_during_the_cleanup_retries_leaves_nothing(
    product: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server goes away mid-upload and comes back while put_files is still trying to
    remove what it wrote: a later attempt succeeds, nothing is left over."""
    server = AzuriteServer(tmp_path / "azurite")
    server.start()
    restart = threading.Thread(target=server.start)

    def stop_and_restart() -> None:
        server.stop()
        restart.start()  # node takes a second or so to listen again

    try:
        use_azure_env(monkeypatch, server.connection)
        made = azure_backend(server.connection, "az", FAST_AZURE)
        made.storage.cleanup_delays = (0.0, 1.0, 3.0, 10.0)  # stops once all are gone
        files = {name: product[name] for name in ("big.bin", "ndvi.tif", "item.json")}
        on_first_read(monkeypatch, files["ndvi.tif"], stop_and_restart)
        with made.storage as storage, pytest.raises(StorageError) as caught:
            storage.put_files(files, PREFIX)
        restart.join()
        assert "removed the 2 object(s) written" in str(caught.value)
        assert caught.value.leftover == []
        assert made.objects() == {}
    finally:
        if restart.ident is not None:
            restart.join()
        server.stop()


def test_bad_urls_and_options_name_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, tmp_path)
    cases = {
        "ftp://host/products": "unknown storage scheme 'ftp'",
        "s3://": "no bucket; write s3://bucket/prefix",
        "s3:///products": "no bucket",
        "az://": "no container; write az://container/prefix",
        "az://Bad_Name/p": "'Bad_Name' is not an Azure container name",
        "s3://KEY:hunter2@bucket/p": "no credentials or queries in storage URLs; set AWS_ACCESS",
        "az://cont/p?sv=2024&sig=abc": "no credentials or queries in storage URLs; set AZURE",
        "abfs://cont@example.com/p": "container@account.dfs.core.windows.net",
    }
    for url, expected in cases.items():
        with pytest.raises(StorageError, match=expected.replace("?", r"\?")) as caught:
            Storage.from_url(url)
        assert url.split("?")[0].split("@")[-1].split("/")[0] in str(caught.value)
        assert "hunter2" not in str(caught.value) and "sig=" not in str(caught.value)
    for options in ({"key": "k", "secret": "s"}, {"client_kwargs": {"aws_secret_access_key": "s"}}):
        with pytest.raises(StorageError, match="would hold credentials; they come from the env"):
            Storage.from_url("s3://bucket/p", options)


def test_missing_credentials_name_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_env(monkeypatch, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError) as caught:
        Storage.from_url("s3://bucket/products")
    assert str(caught.value).startswith("s3://bucket/products: no S3 credentials found; set ")
    assert "AWS_ACCESS_KEY_ID" in str(caught.value) and "AWS_ENDPOINT_URL_S3" in str(caught.value)
    use_azure_env(monkeypatch, None)
    with pytest.raises(StorageError) as caught:
        Storage.from_url("az://products/team")
    assert str(caught.value).startswith("az://products/team: no Azure credentials found; set ")
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(caught.value)


def test_missing_bucket_or_container_is_named(
    product: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    azurite_blob: AzuriteServer,
) -> None:
    use_s3_env(monkeypatch, tmp_path)
    use_azure_env(monkeypatch, azurite_blob.connection)
    files = {"item.json": product["item.json"]}
    options = {"client_kwargs": {"endpoint_url": moto.endpoint}}
    with Storage.from_url("s3://no-such-bucket/p", options) as s3, pytest.raises(StorageError) as e:
        s3.put_files(files, "x")
    assert "s3://no-such-bucket/p/x/item.json" in str(e.value) and "not found" in str(e.value)
    with Storage.from_url("az://no-such-container/p") as az, pytest.raises(StorageError) as e:
        az.put_files(files, "x")
    assert "container 'no-such-container' does not exist" in str(e.value)
    with Storage.from_url(str(tmp_path / "s")) as local, pytest.raises(StorageError) as e:
        local.put_files({"a.tif": str(tmp_path / "missing.tif")}, "x")
    assert str(e.value) == f"{tmp_path / 'missing.tif'}: not a file; nothing was stored in " + str(
        tmp_path / "s"
    )


def test_local_writes_are_whole_and_prefix_folders_go(
    product: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "storage"
    with Storage.from_url(f"file://{root}") as storage:
        assert storage.url == str(root)
        assets = storage.put_files(product, "a/b")
        storage.put_files({"keep.json": product["stats.json"]}, "a/c")
        assert sorted(p.name for p in (root / "a" / "b").iterdir()) == sorted(product)
        storage.remove([asset.url for asset in assets])
        assert sorted(p.name for p in (root / "a").iterdir()) == ["c"]  # empty b/ went
        storage.remove("a")
        assert list(root.iterdir()) == []
        storage.remove("never/was")  # nothing there: nothing to do


def test_settings_choose_the_storages(tmp_path: Path, moto: MotoServer) -> None:
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
    assert default_storage_url(environ) == str(tmp_path / "data" / "madrone" / "storage")
    settings = Settings.from_env({"MADRONE_STORAGE_URL": str(tmp_path / "mine")})
    with Storage.from_settings(settings) as mine, Storage.from_settings(settings, True) as team:
        assert mine.url == team.url == str(tmp_path / "mine")
    options = json.dumps({"client_kwargs": {"endpoint_url": moto.endpoint}})
    settings = Settings.from_env({"MADRONE_STORAGE_OPTIONS": options})
    assert settings.storage_option_map() == {"client_kwargs": {"endpoint_url": moto.endpoint}}
    with pytest.raises(InputError, match="MADRONE_STORAGE_OPTIONS is not valid JSON"):
        Settings.from_env({"MADRONE_STORAGE_OPTIONS": "{endpoint"}).storage_option_map()


def test_media_types() -> None:
    assert media_type("x/ndvi.TIF") == COG_MEDIA_TYPE
    assert media_type("ndvi.png.aux.xml") == "application/xml"
    assert media_type("legend.png") == "image/png"
    assert media_type("area.geojson") == "application/geo+json"
    assert media_type("stats.json") == "application/json"
    assert media_type("ndvi.pgw") == "text/plain"
    assert StoredAsset("a", "u", 1, "s", "m").media_type == "m"
