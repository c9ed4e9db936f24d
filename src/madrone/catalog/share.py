"""Sharing a local dataset with the team: its row goes to the central catalog and its files
to the central storage, verified, once.

The files are copied first, under ``datasets/<central id>/`` (a fresh id per attempt, so
two attempts never write the same objects); the central row is registered only after every
file is stored and checked against the size and sha256 recorded locally. The central row's
``shared_from`` (unique) is the local id, so sharing again returns the entry made the first
time, and of two concurrent attempts one registers while the other removes its own copies.
"""

from __future__ import annotations

import posixpath
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from madrone.catalog.datasets import check_dataset, get_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset, User, new_id, utc_now
from madrone.errors import AccessDeniedError, CatalogError, ConflictError, StorageError
from madrone.storage import Storage, StoredAsset

# Columns a shared copy keeps as they are; the rest (id, scope, assets, shared_from, job_id,
# updated_at) belong to the central catalog.
COPIED_COLUMNS = (
    "name", "description", "kind", "index_name", "expression", "footprint", "west", "south",
    "east", "north", "crs", "resolution", "date_start", "date_end", "stats", "properties",
    "owner", "created_at",
)  # fmt: skip


def share_dataset(
    local_catalog: Catalog,
    local_storage: Storage,
    central_catalog: Catalog,
    central_storage: Storage,
    dataset_id: str,
    *,
    user: User,
) -> Dataset:
    """Copy a local dataset and its files to the team's catalog and storage; idempotent.

    Args:
        dataset_id: the dataset's id in ``local_catalog``.
        user: who shares: the dataset's owner or an admin (the owner stays the owner).

    Returns:
        The central dataset (scope ``shared``, ``shared_from`` the local id), the one made
        before if it was shared already.

    Raises:
        AccessDeniedError: ``user`` is neither the owner nor an admin.
        ConflictError: the dataset is itself a shared copy.
        StorageError: a file could not be copied or verified; nothing was registered and
            the copies made were removed (``leftover`` lists any that could not be).
    """
    local = get_dataset(local_catalog, dataset_id)
    check_may_share(local, user)
    existing = find_shared_copy(central_catalog, local.id)
    if existing is not None:
        return existing
    row = _central_row(local, new_id())
    check_dataset(row)
    assets = stored_assets(local, local_storage)
    copies = _copy(local_storage, central_storage, assets, f"datasets/{row.id}")
    row.assets = {
        name: {**original, "href": copies[name].url} for name, original in local.assets.items()
    }
    try:
        with central_catalog.session() as session:
            session.add(row)
    except IntegrityError as error:
        _remove_after(error, central_storage, copies)
        winner = find_shared_copy(central_catalog, local.id)
        if winner is None:
            raise CatalogError(
                f"central catalog {central_catalog.safe_url} refused dataset {local.id!r}: "
                f"{error.orig}"
            ) from error
        return winner  # a concurrent share of the same dataset registered first
    except BaseException as error:
        _remove_after(error, central_storage, copies)
        raise
    return row


def check_may_share(dataset: Dataset, user: User) -> None:
    """Refuse a user who is neither the owner nor an admin, and a dataset that is itself
    a shared copy."""
    if dataset.scope == "shared" or dataset.shared_from:
        raise ConflictError(
            f"dataset {dataset.id!r} ({dataset.name!r}) is already a shared dataset; "
            "only local datasets are shared"
        )
    if user.name != dataset.owner and user.role != "admin":
        raise AccessDeniedError(
            f"only {dataset.owner!r} (the owner) or an admin may share dataset "
            f"{dataset.id!r}; {user.name} is {user.role}"
        )


def find_shared_copy(central_catalog: Catalog, local_id: str) -> Dataset | None:
    """The central dataset shared from ``local_id``, if there is one."""
    with central_catalog.session() as session:
        query = select(Dataset).where(Dataset.shared_from == local_id)
        return session.scalars(query).one_or_none()


def stored_assets(dataset: Dataset, storage: Storage) -> dict[str, StoredAsset]:
    """The dataset's assets as stored files (asset name -> StoredAsset), each keyed by its
    path below the folder the assets share; every one must be in ``storage`` and carry the
    size and sha256 its copy is checked against."""
    paths = {}
    for name, asset in dataset.assets.items():
        href = str(asset.get("href", "")).removeprefix("file://")
        if not href.startswith(storage.url + "/"):
            raise StorageError(
                f"dataset {dataset.id!r}: asset {name!r} at {href or '(no href)'} is not in "
                f"the storage {storage.url}"
            )
        if not isinstance(asset.get("size"), int) or not asset.get("sha256"):
            raise ConflictError(
                f"dataset {dataset.id!r}: asset {name!r} has no size and sha256 recorded, so "
                "its copy cannot be verified"
            )
        paths[name] = href[len(storage.url) + 1 :]
    folder = posixpath.commonpath([posixpath.dirname(p) for p in paths.values()] or [""])
    return {
        name: StoredAsset(
            key=path[len(folder) + 1 :] if folder else path,
            url=storage.url_for(path),
            size=dataset.assets[name]["size"],
            sha256=dataset.assets[name]["sha256"],
            media_type=dataset.assets[name].get("type") or "application/octet-stream",
        )
        for name, path in paths.items()
    }


def _copy(
    local_storage: Storage,
    central_storage: Storage,
    assets: dict[str, StoredAsset],
    prefix: str,
) -> dict[str, StoredAsset]:
    """Copy the assets (all or nothing) and check each copy's size and sha256."""
    if not assets:
        return {}
    names = list(assets)
    copied = local_storage.copy_to(central_storage, [assets[n] for n in names], prefix)
    copies = dict(zip(names, copied, strict=True))
    for name, copy in copies.items():
        if (copy.size, copy.sha256) != (assets[name].size, assets[name].sha256):
            error = StorageError(
                f"{copy.url}: the copy of {assets[name].url} has {copy.size} bytes, sha256 "
                f"{copy.sha256}; expected {assets[name].size} bytes, {assets[name].sha256}"
            )
            _remove_after(error, central_storage, copies)
            raise error
    return copies


def _central_row(local: Dataset, central_id: str) -> Dataset:
    """The central copy of ``local``'s row, without its assets yet."""
    values: dict[str, Any] = {column: getattr(local, column) for column in COPIED_COLUMNS}
    return Dataset(
        id=central_id, scope="shared", shared_from=local.id, assets={}, job_id=None,
        updated_at=utc_now(), **values,
    )  # fmt: skip


def _remove_after(error: BaseException, storage: Storage, copies: dict[str, StoredAsset]) -> None:
    """Remove the copies made before ``error``; copies that stay are noted on it."""
    if not copies:
        return
    try:
        storage.remove([copy.url for copy in copies.values()])
    except StorageError as cleanup:
        error.add_note(f"copies left in {storage.url}: {', '.join(cleanup.leftover)}")
