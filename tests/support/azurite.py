"""Azurite (Microsoft's Azure Storage emulator, from npm) serving blobs on a free port of
127.0.0.1, as a separate process stopped by PID. ``make test`` installs it from
package.json; a missing install fails loudly, it never skips."""

from __future__ import annotations

import contextlib
import os
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


@contextlib.contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    """Start Azurite's blob service; yield its connection string; stop it by PID."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `make test` (npm install) first")
    port = _free_port()
    command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
               "--location", str(workdir), "--silent", "--skipApiVersionCheck"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Azurite did not start")
            time.sleep(0.1)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
        )
    finally:
        os.killpg(process.pid, 15)  # npm's launcher starts node as a child
        process.wait(timeout=10)


def upload(connection: str, container: str, name: str, path: str) -> None:
    """Create the container and put one blob."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection)
    service.create_container(container)
    with open(path, "rb") as handle:
        service.get_blob_client(container, name).upload_blob(handle)
