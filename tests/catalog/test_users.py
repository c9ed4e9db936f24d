"""Users and tokens: a token is stored only as its hash and found by hashing."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from madrone.catalog.db import Catalog
from madrone.catalog.models import ApiToken
from madrone.catalog.users import (
    add_user,
    authenticate,
    create_token,
    require_role,
    revoke_token,
)
from madrone.errors import AccessDeniedError, ConflictError, InputError


def test_token_is_checked_by_its_hash(catalog: Catalog) -> None:
    add_user(catalog, "ana", "editor", created_by="admin")
    new = create_token(catalog, "ana", "laptop")
    with catalog.session() as session:
        stored = session.scalars(select(ApiToken)).one()
    assert stored.token_hash == hashlib.sha256(new.token.encode()).hexdigest()
    assert new.token not in {stored.token_hash, stored.prefix}
    assert authenticate(catalog, new.token).name == "ana"
    with pytest.raises(AccessDeniedError, match="unknown or revoked"):
        authenticate(catalog, new.token[:-1] + ("A" if new.token[-1] != "A" else "B"))
    revoke_token(catalog, new.id)
    with pytest.raises(AccessDeniedError, match="unknown or revoked"):
        authenticate(catalog, new.token)


def test_roles_are_ordered(catalog: Catalog) -> None:
    viewer = add_user(catalog, "vi", "viewer")
    admin = add_user(catalog, "ad", "admin")
    require_role(admin, "editor")
    with pytest.raises(AccessDeniedError, match="editor role needed; vi is viewer"):
        require_role(viewer, "editor")


def test_bad_users_are_refused(catalog: Catalog) -> None:
    add_user(catalog, "ana")
    with pytest.raises(ConflictError, match="'ana' already exists"):
        add_user(catalog, "ana")
    with pytest.raises(InputError, match="role 'root'"):
        add_user(catalog, "bob", "root")
    with pytest.raises(InputError, match="user name"):
        add_user(catalog, "bob'; DROP TABLE users; --")
