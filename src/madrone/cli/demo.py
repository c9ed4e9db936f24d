"""The end of ``madrone demo``: its products published to a small site of their own and the
map served on it, the way ``madrone serve`` serves the user's catalog.

The site lives in ``<output>/site`` (a SQLite catalog and a storage folder), so the demo
leaves the user's own catalog alone and a second run finds its site again. Each run the demo
already computed becomes a job on the site's queue, run by a master whose runner hands back
that result: the products reach the map through the same path as any request (queue,
storage upload, registration), without computing them twice. The site's master then stays
up on the local pool, so the map's request form works too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import click

from madrone.config import Settings

SITE_FOLDER = "site"


def site_settings(settings: Settings, output_dir: str) -> Settings:
    """The settings of the demo's site: its catalog and storage inside ``output_dir``."""
    site = os.path.abspath(os.path.join(output_dir, SITE_FOLDER))
    os.makedirs(site, exist_ok=True)
    return replace(settings, db_url="sqlite:///" + os.path.join(site, "catalog.sqlite"),
                   storage_url=os.path.join(site, "storage"), central_db_url="")  # fmt: skip


def publish_runs(catalog: Any, storage: Any, settings: Settings, runs: Sequence[Any]) -> int:
    """Queue each ``(spec, result)`` the demo computed and publish it through a master;
    returns how many were new (a run published before, same products, is not again)."""
    from madrone import team
    from madrone.catalog.queue import JobQueue
    from madrone.service import Master

    by_name = {spec.name: result for spec, result in runs}
    new = 0
    with tempfile.TemporaryDirectory(prefix="madrone-demo-") as work:

        def hand_back(spec: Any, progress: Any, cancel: threading.Event) -> Any:
            return _alone(by_name[spec.name], os.path.join(work, spec.name))

        master = Master(catalog, storage, settings, runner=hand_back, name="demo", work_dir=work)
        queue = JobQueue(catalog)
        for spec, result in runs:
            job = team.submit(spec, catalog, settings=settings, name=spec.name,
                              requester=team.current_user(settings),
                              idempotency_key=_key(spec.name, result))  # fmt: skip
            if job.status == "queued":
                new += 1
        while master.run_next():
            pass
        failed = [job for job in queue.list(limit=100) if job.status == "failed"]
    if failed:
        click.echo(f"madrone demo: publishing failed: {failed[0].errors[-1]}", err=True)
    return new


def serve_site(settings: Settings, runs: Sequence[Any], output_dir: str, port: int) -> None:
    """Publish the demo's runs to its site and serve the map on 127.0.0.1:``port`` with a
    master on the local pool, until Ctrl-C or SIGTERM."""
    from madrone import storage as stores
    from madrone import team
    from madrone.cli.cluster import run_master
    from madrone.cli.service import announce_first_admin, start_served_web

    settings = site_settings(settings, output_dir)
    catalog = team.open_catalog(settings, upgrade=True)
    storage = stores.Storage.from_settings(settings)
    try:
        publish_runs(catalog, storage, settings, runs)
        served = start_served_web(settings, catalog, port)
    except BaseException:
        storage.close()
        catalog.dispose()
        raise
    click.echo(f"\nthe map: {served.url}/ (site {os.path.dirname(storage.url)}; Ctrl-C stops)")
    announce_first_admin(settings, catalog, served.url)
    try:
        run_master(catalog, storage, settings, name="demo-site")
    finally:
        served.stop()


def _alone(result: Any, folder: str) -> Any:
    """``result`` with its product files linked (or copied) into a folder of their own: the
    demo writes both of its runs into one folder, and a master uploads a run's whole folder."""
    os.makedirs(folder, exist_ok=True)
    products = {}
    for index, product in result.products.items():
        files = {}
        for key, path in product.files.items():
            target = os.path.join(folder, os.path.basename(path))
            if not os.path.exists(target):
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
            files[key] = target
            for extra in _sidecars(path):
                sidecar = os.path.join(folder, os.path.basename(extra))
                if not os.path.exists(sidecar):
                    shutil.copy2(extra, sidecar)
        products[index] = replace(product, files=files)
    return replace(result, output_dir=folder, products=products)


def _sidecars(path: str) -> list[str]:
    """Files written beside a product that its ``files`` do not name (a PNG's world file)."""
    stem, _ = os.path.splitext(path)
    return [stem + suffix for suffix in (".pgw", ".png.aux.xml") if os.path.exists(stem + suffix)]


def _key(name: str, result: Any) -> str:
    """The same run publishes once: the key covers its name and its products' contents."""
    digest = hashlib.sha256(name.encode())
    for index in sorted(result.products):
        for key, path in sorted(result.products[index].files.items()):
            digest.update(f"{index}/{key}/{os.path.getsize(path)}".encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(1 << 16))
    return "demo:" + digest.hexdigest()[:32]
