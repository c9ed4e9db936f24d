"""Users, tokens, passwords and login links: a token or link is stored only as its hash and
found by hashing; a password only as its Argon2id hash; a link works once, before it
expires."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from madrone.catalog.db import Catalog
from madrone.catalog.models import ApiToken
from madrone.catalog.users import (
    LoginLink,
    add_user,
    authenticate,
    check_password,
    create_login_link,
    create_token,
    first_admin_link,
    get_user,
    list_users,
    require_role,
    revoke_token,
    set_password,
    use_login_link,
)
from madrone.errors import AccessDeniedError, ConflictError, InputError, NotFoundError


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


def test_passwords_are_argon2id_hashes(catalog: Catalog) -> None:
    add_user(catalog, "ana", "editor", password="correct horse")
    stored = get_user(catalog, "ana").password_hash
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and "correct horse" not in stored
    assert check_password(catalog, "ana", "correct horse").name == "ana"
    for name, password in [("ana", "correct horsf"), ("bob", "correct horse"), ("ana", "")]:
        with pytest.raises(AccessDeniedError, match=r"^wrong user name or password$"):
            check_password(catalog, name, password)
    set_password(catalog, "ana", "battery staple")
    assert get_user(catalog, "ana").password_hash != stored
    with pytest.raises(AccessDeniedError):
        check_password(catalog, "ana", "correct horse")
    assert check_password(catalog, "ana", "battery staple").role == "editor"


def test_bad_passwords_are_refused_and_leave_no_user(catalog: Catalog) -> None:
    with pytest.raises(InputError, match="password for user 'ana': use at least 8 characters"):
        add_user(catalog, "ana", password="short")
    with pytest.raises(InputError, match="must not be the user name"):
        add_user(catalog, "anabelle", password="AnaBelle")
    with pytest.raises(InputError, match="at most 1024 characters"):
        add_user(catalog, "ana", password="x" * 1025)
    assert list_users(catalog) == []
    add_user(catalog, "ana")
    with pytest.raises(AccessDeniedError, match="wrong user name or password"):
        check_password(catalog, "ana", "no password set")
    with pytest.raises(NotFoundError, match="no user 'bob'"):
        set_password(catalog, "bob", "long enough")


def test_login_link_works_once_before_it_expires(catalog: Catalog) -> None:
    add_user(catalog, "ana")
    link = create_login_link(catalog, "ana", timedelta(hours=2))
    with catalog.session() as session:
        stored = session.scalars(select(LoginLink)).one()
    assert stored.token_hash == hashlib.sha256(link.token.encode()).hexdigest()
    assert timedelta(hours=1, minutes=59) < stored.expires_at - stored.created_at
    assert use_login_link(catalog, link.token).name == "ana"
    with pytest.raises(AccessDeniedError, match="already used"):
        use_login_link(catalog, link.token)

    late = create_login_link(catalog, "ana", timedelta(minutes=1))
    with catalog.session() as session:
        session.execute(update(LoginLink).values(expires_at=stored.created_at))
    with pytest.raises(AccessDeniedError, match="expired at"):
        use_login_link(catalog, late.token)
    with pytest.raises(AccessDeniedError, match="not valid"):
        use_login_link(catalog, "mdl_unknown")
    with pytest.raises(InputError, match="valid for some time"):
        create_login_link(catalog, "ana", timedelta(0))
    with pytest.raises(NotFoundError, match="no user 'bob'"):
        create_login_link(catalog, "bob")


def test_first_admin_only_when_there_is_none(catalog: Catalog) -> None:
    add_user(catalog, "ines", "viewer")
    link = first_admin_link(catalog, "ines")
    assert link is not None and link.user == "ines"
    assert get_user(catalog, "ines").role == "admin"
    assert use_login_link(catalog, link.token).name == "ines"
    assert first_admin_link(catalog, "someone") is None
    assert [user.name for user in list_users(catalog)] == ["ines"]
