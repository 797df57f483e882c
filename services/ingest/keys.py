"""Per-tenant API keys: created once, shown once, stored only as hashes.

A key is ``ks_<id>_<secret>``: ``id`` (8 hex) names it in listings and logs, ``secret`` holds
256 random bits. The file keeps ``sha256(key)``, never the key: with that much entropy a
plain hash is as strong as a slow KDF (there is nothing to brute-force) and costs a
microsecond per request. The file is JSON::

    {"keys": [{"id": "1f2e3d4c", "tenant": "acme", "admin": false, "sha256": "...", "created_at": "..."}]}

Locally it lives in the data directory (``<data_dir>/api-keys.json``, mode 0600); in a cluster
the chart mounts it from a Secret. :class:`KeyRing` re-reads it when it changes, so keys made
with ``kubescribe keys create`` (or a rotated Secret) work without a restart.

An *admin* key belongs to no tenant and may act for any tenant named in ``X-Tenant``; a
tenant key acts for its tenant only, whatever the headers say.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.common.errors import ConfigurationError
from services.common.events import TENANT_PATTERN

KEYS_FILE_NAME = "api-keys.json"
"""Inside the data directory; ``KUBESCRIBE_API_KEYS_FILE`` points at it (or at the chart's Secret)."""
KEY_PREFIX = "ks_"
LOCAL_KEY_FILE = "local-api-key"
"""The admin key ``kubescribe up`` generates, kept (mode 0600) beside the keys file so that
``submit``, ``demo`` and ``delete`` on the same machine find it, and a restart keeps it."""


@dataclass(frozen=True)
class ApiKey:
    """One stored key (its hash, not the key)."""

    id: str
    tenant: str | None
    admin: bool
    sha256: str
    created_at: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant a key belongs to (``None`` for an admin key, which may pick one)."""

    key_id: str | None
    tenant: str | None
    admin: bool


ANONYMOUS = Principal(key_id=None, tenant=None, admin=True)
"""The caller when auth is off (a throw-away local run): may act for any tenant, as before keys existed."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(id, key): the id is public, the key is shown once and then only its hash is kept."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def read_keys(path: Path) -> list[ApiKey]:
    """The keys in ``path``; a missing file holds none, a malformed one is a configuration error."""
    try:
        raw = json.loads(path.read_text())
        return [ApiKey(**entry) for entry in raw.get("keys", [])]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"the API keys file {path} is not valid ({exc}); recreate it with `kubescribe keys create`"
        ) from exc


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file atomically (rename), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"keys": [asdict(k) for k in keys]}, handle, indent=2)
    os.replace(tmp, path)


def create_key(path: Path, *, tenant: str | None, admin: bool = False) -> tuple[ApiKey, str]:
    """Add a key to the file; returns the stored record and the key itself (print it once)."""
    if tenant is not None and not re.match(TENANT_PATTERN, tenant):
        raise ConfigurationError(f"tenant {tenant!r} is not a DNS label (a-z, 0-9, -; at most 63)")
    if tenant is None and not admin:
        raise ConfigurationError("a key needs a tenant (--tenant NAME) unless it is an admin key (--admin)")
    key_id, key = new_key()
    record = ApiKey(
        id=key_id,
        tenant=None if admin else tenant,
        admin=admin,
        sha256=hash_key(key),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_keys(path, [*read_keys(path), record])
    return record, key


def revoke_key(path: Path, key_id: str) -> bool:
    keys = read_keys(path)
    kept = [k for k in keys if k.id != key_id]
    write_keys(path, kept)
    return len(kept) != len(keys)


def ensure_local_key(data_dir: Path) -> str:
    """The local stack's admin key: the one in ``data_dir`` if it still authenticates, else a new one."""
    keys_path, key_path = data_dir / KEYS_FILE_NAME, data_dir / LOCAL_KEY_FILE
    with contextlib.suppress(OSError):
        key = key_path.read_text().strip()
        if key and KeyRing(keys_path).authenticate(key) is not None:
            return key
    _, key = create_key(keys_path, tenant=None, admin=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class KeyRing:
    """The keys a server accepts: the keys file (re-read when it changes) plus a legacy shared token.

    ``KUBESCRIBE_API_TOKEN``, the single shared token from before keys existed, still works
    and is an admin key, so existing deployments keep running.
    """

    def __init__(self, path: Path | None, legacy_token: str | None = None) -> None:
        self.path = path
        self._legacy = hash_key(legacy_token) if legacy_token else None
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, ApiKey] = {}

    @property
    def enabled(self) -> bool:
        return self.path is not None or self._legacy is not None

    def _refresh(self) -> None:
        if self.path is None:
            return
        stamp = None
        with contextlib.suppress(OSError):
            status = self.path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            self._by_hash = {k.sha256: k for k in read_keys(self.path)} if stamp else {}
            self._stamp = stamp

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None. Compares hashes: the key's own bytes never meet
        a timing-sensitive comparison, and the hash of a wrong key tells nothing about a right one."""
        digest = hash_key(presented)
        if self._legacy is not None and hmac.compare_digest(digest, self._legacy):
            return Principal(key_id="api-token", tenant=None, admin=True)
        self._refresh()
        key = self._by_hash.get(digest)
        if key is None:
            return None
        return Principal(key_id=key.id, tenant=key.tenant, admin=key.admin)
