"""Owners and their bearer tokens: random, shown once, kept only as a sha256."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from twinkit.core.errors import AlreadyExistsError, TwinkitError
from twinkit.store import owners
from twinkit.store.db import Store
from twinkit.store.owners import Owner
from twinkit.store.timeutil import utc_now_iso

OWNER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
#: tokens start with this, so that a leaked one is recognisable (secret scanners, logs)
TOKEN_PREFIX = "twk_"
_TOKEN_BYTES = 32  # 256 bits of randomness


def token_sha256(token: str) -> str:
    """The hex sha256 a token is stored as.

    >>> len(token_sha256("twk_abc"))
    64
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe).

    >>> new_token().startswith(TOKEN_PREFIX) and len(new_token()) == len(TOKEN_PREFIX) + 43
    True
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


class Owners:
    """Create owners and tell which owner a token belongs to.

    >>> book = Owners(Store("sqlite://"))
    >>> owner, token = book.create("clinic-a")
    >>> book.authenticate(token) == owner, book.authenticate(new_token())
    (True, None)
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str) -> tuple[Owner, str]:
        """A new owner and its token; the token is not kept and cannot be shown again.

        The name may already own twins (``twinkit twin create --owner NAME``): those become
        reachable with the token.
        """
        if not isinstance(name, str) or not OWNER_NAME_PATTERN.match(name):
            raise TwinkitError(f"invalid owner name {name!r}: use 1-128 letters, digits or - _ . :")
        token = new_token()
        created_at = utc_now_iso()
        with self.store.write() as conn:
            if owners.get_owner(conn, name) is not None:
                raise AlreadyExistsError(f"owner {name!r} already exists")
            owners.insert_owner(conn, name, token_sha256(token), created_at)
        return Owner(name, created_at), token

    def authenticate(self, token: str) -> Owner | None:
        """The owner whose token this is, or None."""
        digest = token_sha256(token)
        with self.store.read() as conn:
            found = owners.owner_by_token(conn, digest)
        if found is None:
            return None
        owner, stored = found
        # The lookup already matched; compare in constant time anyway, so that no later
        # change to the lookup can turn this into a timing oracle.
        return owner if hmac.compare_digest(stored, digest) else None

    def list(self) -> list[Owner]:
        with self.store.read() as conn:
            return owners.list_owners(conn)
