"""API keys for the face server: a file of SHA-256 hashes, checked in constant time, reloaded when it changes.

A key is 32 random bytes (``secrets.token_urlsafe``), shown once by ``btnet-edge keys
new`` and never stored: the file keeps its SHA-256, a name and a role. A slow password
hash is not needed for 256-bit random secrets, and SHA-256 keeps every request cheap.
``client`` keys may identify faces; ``admin`` keys may also enroll, remove and list
identities. Every stored hash is compared with ``hmac.compare_digest`` on every request,
so the time taken does not say which key, if any, was close. Keys never reach a log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

ROLES = ("client", "admin")
KEY_PREFIX = "btnet_"
FORMAT = "btnet-edge-api-keys"
RELOAD_CHECK_S = 1.0  # how often the server looks at the file's mtime (rotation without a restart)


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    sha256: str
    created: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_keys(path: str | Path) -> list[ApiKey]:
    """The keys of a key file; a malformed file is an error naming the fix (never 'no keys, open to all')."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no API key file there; create one with `btnet-edge keys new NAME --file {path}`"
                          ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable API key file ({exc}); recreate it with `btnet-edge keys new`"
                          ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("keys"), list):
        raise ConfigError(f"{path} is not a btnet-edge API key file; recreate it with `btnet-edge keys new`")
    keys = []
    for entry in document["keys"]:
        try:
            key = ApiKey(str(entry["name"]), str(entry["role"]), str(entry["sha256"]), str(entry.get("created", "")))
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: an entry lacks name, role or sha256: {entry!r}; remove it") from None
        if key.role not in ROLES or len(key.sha256) != 64:
            raise ConfigError(f"{path}: key {key.name!r} has role {key.role!r} or a malformed hash; remove it")
        keys.append(key)
    return keys


def write_keys(path: str | Path, keys: list[ApiKey]) -> None:
    """Temp name, then rename, mode 0600: a crash never leaves a half file, other accounts cannot read hashes."""
    path = Path(path)
    document = {"format": FORMAT, "keys": [vars(k) for k in keys]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(document, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def new_key(path: str | Path, name: str, role: str = "client") -> str:
    """Add a key named ``name`` to the file (created if missing) and return the key itself, the only copy."""
    if role not in ROLES:
        raise ConfigError(f"role should be one of {ROLES}, got {role!r}")
    if not name.strip():
        raise ConfigError("a key needs a name (who or what uses it, e.g. camera-3)")
    keys = read_keys(path) if Path(path).exists() else []
    if any(k.name == name for k in keys):
        raise ConfigError(f"{path}: a key named {name!r} exists; revoke it first or choose another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    keys.append(ApiKey(name, role, key_hash(key), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    write_keys(path, keys)
    return key


def revoke_key(path: str | Path, name: str) -> None:
    keys = read_keys(path)
    kept = [k for k in keys if k.name != name]
    if len(kept) == len(keys):
        raise ConfigError(f"{path}: no key named {name!r}; see `btnet-edge keys list --file {path}`")
    write_keys(path, kept)


class KeyChecker:
    """The server side: ``role_of(header)`` -> the key's role, or None; the file is re-read when it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._checked_at = 0.0
        self._keys: list[ApiKey] = []
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < RELOAD_CHECK_S:
            return
        with self._lock:
            self._checked_at = now
            try:
                mtime = self.path.stat().st_mtime
            except OSError:
                if force:
                    raise ConfigError(f"{self.path}: cannot read the API key file") from None
                return  # keep the keys we have: a rename in progress, or a transient error
            if mtime != self._mtime:
                self._keys = read_keys(self.path)
                self._mtime = mtime

    def role_of(self, presented: str) -> ApiKey | None:
        self._reload()
        digest = key_hash(presented)
        found = None
        for key in self._keys:  # every hash is compared: no early exit on a match
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found


def bearer_token(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header, or None when absent or of another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
