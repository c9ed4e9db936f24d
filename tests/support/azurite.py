"""Azurite (Microsoft's Azure Storage emulator, from npm) serving blobs on a free port of
127.0.0.1, as a separate process stopped by PID. ``make test`` installs it from
package.json; a missing install fails loudly, it never skips.

``azurite_server()`` yields an ``AzuriteServer`` that a test can stop and start again on the
same port and folder (blobs persist in ``--location``); ``azurite()`` yields just the
connection string."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
# Azurite's fixed development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AzuriteServer:
    """One Azurite blob service on a fixed port, keeping its blobs in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} is missing: run `make test` (npm install) first")
        self.workdir = workdir
        self.port = port or _free_port()
        self.connection = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the service and wait until its port accepts connections."""
        command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                   "--location", str(self.workdir), "--silent",
                   "--skipApiVersionCheck"]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Azurite did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the service by PID (npm's launcher starts node as a child: its group)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def azurite_server(workdir: Path) -> Iterator[AzuriteServer]:
    """Start Azurite's blob service; yield it; stop it by PID."""
    server = AzuriteServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    """Start Azurite's blob service; yield its connection string; stop it by PID."""
    with azurite_server(workdir) as server:
        yield server.connection


def create_container(connection: str, container: str) -> None:
    """Create a container."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection) as service:
        service.create_container(container)


def list_blobs(connection: str, container: str) -> dict[str, str]:
    """Every blob of the container: name -> ETag and last-modified time."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection) as service:
        blobs = service.get_container_client(container).list_blobs()
        return {blob.name: f"{blob.etag} {blob.last_modified.isoformat()}" for blob in blobs}


def upload(connection: str, container: str, name: str, path: str) -> None:
    """Create the container and put one blob."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection) as service:
        service.create_container(container)
        with open(path, "rb") as handle:
            service.get_blob_client(container, name).upload_blob(handle)
