"""moto's S3 server on a free port of 127.0.0.1, as a separate process stopped by PID, and
the GDAL variables that point /vsis3/ at it (credentials come from the environment, as in
production).

``moto_server()`` yields a ``MotoServer`` that a test can pause (SIGSTOP: the server hangs,
its objects survive), resume, stop and start again on the same port; ``moto_s3()`` yields
just the endpoint URL.

Run as a script (``python s3.py PORT``) this file is the server: moto's application with
one fix, its own ``server: amazon.com`` header dropped, because Werkzeug adds another and
aiohttp (under s3fs) refuses a response with two (moto issue #9930)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY = "madrone-test-key"
SECRET_KEY = "madrone-test-secret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """One moto server process on a fixed port of 127.0.0.1 (in-memory objects)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        # -P: not this folder on sys.path, where http.py would hide the standard library's
        command = [sys.executable, "-P", __file__, str(self.port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections hang, objects are kept."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server by PID (its objects are lost)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process ignores SIGTERM
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start moto's server; yield it; stop it by PID."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """Start moto's server; yield its endpoint URL; stop it by PID."""
    with moto_server() as server:
        yield server.endpoint


def gdal_s3_env(endpoint: str, secret: str = SECRET_KEY) -> dict[str, str]:
    """What GDAL (and boto3) need to reach the server: keys, endpoint, path-style URLs."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_S3_ENDPOINT": endpoint.removeprefix("http://"),
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


@contextlib.contextmanager
def s3_client(endpoint: str) -> Iterator[object]:
    """A boto3 S3 client for the server, closed on exit."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    try:
        yield client
    finally:
        client.close()


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create a bucket on the server."""
    with s3_client(endpoint) as client:
        client.create_bucket(Bucket=bucket)


def list_objects(endpoint: str, bucket: str) -> dict[str, str]:
    """Every object of the bucket: key -> ETag and last-modified time."""
    found = {}
    with s3_client(endpoint) as client:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = f"{item['ETag']} {item['LastModified'].isoformat()}"
    return found


def upload(endpoint: str, bucket: str, key: str, path: str) -> None:
    """Create the bucket and put one file, with boto3 (moto's own client library)."""
    with s3_client(endpoint) as client:
        client.create_bucket(Bucket=bucket)
        client.upload_file(path, bucket, key)


def _serve(port: int) -> None:
    """Serve moto's application on 127.0.0.1:port until terminated."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)

    def one_server_header(environ: dict, start_response: object) -> object:
        def start(status: str, headers: list, exc_info: object = None) -> object:
            kept = [(name, value) for name, value in headers if name.lower() != "server"]
            return start_response(status, kept, exc_info)

        return app(environ, start)

    run_simple("127.0.0.1", port, one_server_header, threaded=True,
               request_handler=MotoRequestHandler)  # fmt: skip


if __name__ == "__main__":
    _serve(int(sys.argv[1]))


def use_s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test keys in the environment and nothing else botocore could find."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_S3_ENDPOINT",
                 "AWS_SESSION_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
