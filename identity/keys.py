"""The identity keyset: encryption keys (AES-256-GCM, several, one primary) and the pseudonym key
(HMAC-SHA256), each with an id, in one JSON file.

The primitives are the ``cryptography`` library's AES-GCM and the standard library's HMAC; what
is ours is only the file and the framing
of a sealed value, which names the key that sealed it so that old values stay readable after a
rotation::

    sealed = 0x01 | len(key id) | key id (ASCII) | 12-byte nonce | ciphertext and 16-byte tag

The associated data (what a sealed value belongs to, e.g. its pseudonym) is authenticated but not
stored: a sealed identifier copied next to another pseudonym does not open.

The file (mode 0600)::

    {"format": 1, "primary": "e2", "encryption": {"e1": "<base64 32 bytes>", "e2": "..."},
     "pseudonym": {"id": "p1", "key": "<base64 32 bytes>"}}

Embedded installations create it in the data dir on first start; production mounts it from a
secret (``INTAKE_IDENTITY_KEYSET_FILE``) and never creates one. ``rotate`` adds an encryption key
and makes it primary; processes pick the new file up within seconds (:class:`KeysetFile`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_SEALED_VERSION = 1
_SHA256_BLOCK = 64


class KeysetError(Exception):
    """The keyset is missing, unreadable, malformed or lacks a key: the process must not start."""


class SealedValueError(Exception):
    """A sealed value is malformed, names a key the keyset lacks, or fails authentication."""


@dataclass(frozen=True)
class Keyset:
    primary: str
    encryption: dict[str, bytes]
    pseudonym_id: str
    pseudonym_key: bytes

    def __post_init__(self) -> None:
        if self.primary not in self.encryption:
            raise KeysetError(f"the primary key {self.primary!r} is not in the keyset")
        for key_id, key in [*self.encryption.items(), (self.pseudonym_id, self.pseudonym_key)]:
            if len(key) != KEY_BYTES:
                raise KeysetError(f"key {key_id!r} is {len(key)} bytes, not {KEY_BYTES}")
            if not key_id.isascii() or not key_id.isalnum() or len(key_id) > 32:
                raise KeysetError(f"key id {key_id!r}: 1-32 ASCII letters and digits")

    def _cipher(self, key_id: str) -> AESGCM:
        # One AESGCM per key (its key schedule), made on first use: per value it cost more than
        # the encryption itself.
        ciphers: dict[str, AESGCM] = self.__dict__.setdefault("_ciphers", {})
        if key_id not in ciphers:
            ciphers[key_id] = AESGCM(self.encryption[key_id])
        return ciphers[key_id]

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        """``plaintext`` encrypted and authenticated (with ``associated``) under the primary key."""
        key_id = self.primary.encode()
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = self._cipher(self.primary).encrypt(nonce, plaintext, associated)
        return bytes([_SEALED_VERSION, len(key_id)]) + key_id + nonce + body

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        key_id = self.key_id_of(sealed)
        start = 2 + len(key_id)
        nonce, body = sealed[start : start + NONCE_BYTES], sealed[start + NONCE_BYTES :]
        if key_id not in self.encryption:
            raise SealedValueError(f"sealed under key {key_id!r}, which the keyset lacks")
        try:
            return self._cipher(key_id).decrypt(nonce, body, associated)
        except InvalidTag as exc:
            raise SealedValueError("a sealed value failed authentication") from exc

    @staticmethod
    def key_id_of(sealed: bytes) -> str:
        if len(sealed) < 2 or sealed[0] != _SEALED_VERSION:
            raise SealedValueError("not a sealed value of this format")
        length = sealed[1]
        if len(sealed) < 2 + length + NONCE_BYTES + 16:
            raise SealedValueError("a sealed value is truncated")
        return sealed[2 : 2 + length].decode("ascii")

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 (RFC 2104) of ``data`` under the pseudonym key.

        Written out over hashlib instead of calling :func:`hmac.digest`: the two padded key
        blocks are hashed once per keyset and each value continues copies of those states,
        which spares two of the four SHA-256 blocks per value (4.7 to 1.9 µs; every accepted
        item pays it). ``tests/unit/test_identity.py`` holds it equal to :func:`hmac.digest`."""
        pads = self.__dict__.get("_pads")
        if pads is None:
            key = self.pseudonym_key.ljust(_SHA256_BLOCK, b"\0")  # 32 bytes: never hashed first
            pads = self.__dict__["_pads"] = (
                hashlib.sha256(bytes(b ^ 0x36 for b in key)),
                hashlib.sha256(bytes(b ^ 0x5C for b in key)),
            )
        inner, outer = pads[0].copy(), pads[1].copy()
        inner.update(data)
        outer.update(inner.digest())
        return outer.digest()

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "primary": self.primary,
            "encryption": {k: _b64(v) for k, v in self.encryption.items()},
            "pseudonym": {"id": self.pseudonym_id, "key": _b64(self.pseudonym_key)},
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_keyset() -> Keyset:
    return Keyset(
        primary="e1",
        encryption={"e1": secrets.token_bytes(KEY_BYTES)},
        pseudonym_id="p1",
        pseudonym_key=secrets.token_bytes(KEY_BYTES),
    )


def parse_keyset(text: str, source: str) -> Keyset:
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise KeysetError(f"{source}: format {data.get('format')!r}, expected {FORMAT}")
        return Keyset(
            primary=str(data["primary"]),
            encryption={
                str(k): base64.b64decode(v, validate=True) for k, v in data["encryption"].items()
            },
            pseudonym_id=str(data["pseudonym"]["id"]),
            pseudonym_key=base64.b64decode(data["pseudonym"]["key"], validate=True),
        )
    except KeysetError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise KeysetError(
            f"{source}: not an identity keyset ({type(exc).__name__}: {exc})"
        ) from exc


def load_keyset(path: Path) -> Keyset:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KeysetError(f"{path}: no identity keyset") from exc
    except OSError as exc:
        raise KeysetError(f"{path}: cannot read the identity keyset: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not _mounted_secret(path):
        raise KeysetError(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); chmod 600")
    return parse_keyset(text, str(path))


def _mounted_secret(path: Path) -> bool:
    """Kubernetes mounts secrets through a symlink to a read-only directory; their mode is the
    volume's ``defaultMode`` (which the manifests set), not the file's to fix."""
    return path.is_symlink()


def write_keyset(path: Path, keyset: Keyset, *, exclusive: bool = False) -> bool:
    """Write ``keyset`` to ``path`` (0600) in one step. With ``exclusive``, only if no keyset is
    there yet (two processes starting at once: the first wins); whether it was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(keyset.as_json(), out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    if not exclusive:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # refuses an existing name
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def rotate(path: Path) -> str:
    """Add a new encryption key to the keyset at ``path`` and make it primary; its id."""
    keyset = load_keyset(path)
    numbers = [int(k[1:]) for k in keyset.encryption if k[:1] == "e" and k[1:].isdigit()]
    key_id = f"e{max(numbers, default=0) + 1}"
    rotated = Keyset(
        primary=key_id,
        encryption={**keyset.encryption, key_id: secrets.token_bytes(KEY_BYTES)},
        pseudonym_id=keyset.pseudonym_id,
        pseudonym_key=keyset.pseudonym_key,
    )
    write_keyset(path, rotated)
    return key_id


class KeysetFile:
    """The keyset at ``path``, read again when the file changes (a rotation, a new secret), so
    running processes seal under the new primary key without a restart. A file that turns bad
    keeps the last good keyset (and says so), since the process already started safely."""

    # How often the file is looked at again (a stat per value cost a fifth of pseudonymising).
    CHECK_SECONDS = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keyset = load_keyset(path)
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Keyset:
        now = time.monotonic()
        if now - self._checked < self.CHECK_SECONDS:
            return self._keyset
        self._checked = now
        try:
            stamp = self._stat()
        except OSError:
            return self._keyset
        if stamp != self._stamp:
            try:
                self._keyset = load_keyset(self.path)
                self._stamp = stamp
            except KeysetError:
                pass  # a half-copied secret: keep the last good keyset, try again next time
        return self._keyset
