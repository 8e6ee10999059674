"""The receiver's RSA key pairs for SLASH: generated or loaded from settings, rotated, published on
``GET /keys`` (newest expiry first); their private halves unwrap a message's AES key
(:mod:`receiver.slash.crypto`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from wiring.files import create_once
from wiring.settings import Settings

log = logging.getLogger(__name__)

KEY_ALGORITHM = "RSA-OAEP-256"  # how a message's AES key is wrapped with these keys
# Key ids are GUIDs: FHI's older client parses ``id`` as a Guid (and sends it back in its
# lowercase form), the newer one as a string it sends back unchanged; a GUID suits both. It is
# derived from the key's RFC 7638 thumbprint, so every replica names a key alike.
_KEY_ID_NAMESPACE = uuid.UUID("3d0f6a38-7c51-5e42-9b1d-6a2f40c8e915")


@dataclass(frozen=True, slots=True)
class SlashKey:
    kid: str
    not_before: int  # published from (unix seconds)
    expires: int  # published and decrypting until (unix seconds)
    private_key: rsa.RSAPrivateKey | None  # None once expired: its id is remembered, not it

    @classmethod
    def from_private(
        cls, private_key: rsa.RSAPrivateKey, *, not_before: int, expires: int
    ) -> SlashKey:
        return cls(key_id(_thumbprint(private_key)), not_before, expires, private_key)

    def published(self) -> dict[str, Any]:
        """The ``/keys`` entry: FHI's fields and a JWK."""
        assert self.private_key is not None
        public = self.private_key.public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        jwk = RSAKey.import_key(pem).as_dict(private=False)
        return {
            "id": self.kid,
            "expirationDate": datetime.fromtimestamp(self.expires, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "publicKey": pem,
            "kid": self.kid,
            "kty": "RSA",
            "n": jwk["n"],
            "e": jwk["e"],
            "use": "enc",
            "alg": KEY_ALGORITHM,
            "exp": self.expires,
        }


def key_id(thumbprint: str) -> str:
    """The GUID a key is published under, from its RFC 7638 thumbprint."""
    return str(uuid.uuid5(_KEY_ID_NAMESPACE, thumbprint))


def normalise_key_id(kid: str) -> str:
    """An ``enc_key_id`` as we store it: GUIDs in lowercase (a .NET client may print it in
    uppercase or with braces); anything else as sent."""
    try:
        return str(uuid.UUID(kid.strip()))
    except ValueError:
        return kid.strip()


def _thumbprint(private_key: rsa.RSAPrivateKey) -> str:
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RSAKey.import_key(pem).thumbprint()


def _load_private_pem(data: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a SLASH key must be an RSA private key")
    if key.key_size < 2048:
        raise ValueError("a SLASH key must have at least 2048 bits")
    return key


class UnknownKeyError(Exception):
    """``enc_key_id`` names no key of ours."""


class ExpiredKeyError(Exception):
    """``enc_key_id`` names a key of ours that has expired."""


class SlashKeyStore:
    """The receiver's encryption keys.

    Rotating keys live in ``directory``, one JSON file per key (``<not_before>.json`` holding the
    kid, validity and the private key as PKCS#8 PEM; written with :func:`create_once`, mode 0600).
    Validity windows sit on a fixed grid: key *g* is published from ``g * step`` to
    ``g * step + lifetime`` with ``step = lifetime - overlap``, so every replica sharing the
    directory derives the same file name at the same time and the first writer wins. At any moment
    one or two keys are published; a message to either decrypts.

    A static key (given by settings) is published until its expiry and never rotated.
    """

    def __init__(
        self,
        directory: Path | None,
        *,
        lifetime_seconds: int,
        overlap_seconds: int,
        key_bits: int = 3072,
        static_keys: Iterable[SlashKey] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = directory
        self._lifetime = lifetime_seconds
        self._step = lifetime_seconds - overlap_seconds
        self._bits = key_bits
        self._clock = clock
        self._lock = threading.Lock()
        static = list(static_keys)
        self._keys: dict[str, SlashKey] = {k.kid: k for k in static}
        # Key ids published before they were GUIDs (the thumbprint), for clients that fetched
        # /keys then: the old id -> the key's id now.
        self._aliases: dict[str, str] = {
            _thumbprint(k.private_key): k.kid for k in static if k.private_key is not None
        }
        self._generations: set[int] = set()  # not_before of rotating keys loaded
        if directory is None:
            if not self._keys:
                raise ValueError("a SLASH key store needs a key directory or a key")
            return
        if not 0 < overlap_seconds < lifetime_seconds:
            raise ValueError("the SLASH key overlap must be positive and shorter than a lifetime")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            self._scan()  # this period's key is created when first asked for (see refresh)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlashKeyStore:
        common: dict[str, Any] = {
            "lifetime_seconds": settings.slash_key_lifetime_seconds,
            "overlap_seconds": settings.slash_key_overlap_seconds,
            "key_bits": settings.slash_key_bits,
        }
        if settings.slash_key_file is None:
            return cls(settings.data_dir / "slash-keys", **common)
        if settings.slash_key_expires is None:
            raise ValueError("INTAKE_SLASH_KEY_EXPIRES is required with INTAKE_SLASH_KEY_FILE")
        password = settings.slash_key_password
        private = _load_private_pem(
            settings.slash_key_file.read_bytes(),
            password.get_secret_value().encode() if password is not None else None,
        )
        day = settings.slash_key_expires
        expires = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        if expires <= time.time():
            log.error("the SLASH key in INTAKE_SLASH_KEY_FILE expired on %s", day.isoformat())
        key = SlashKey.from_private(private, not_before=0, expires=expires)
        return cls(None, static_keys=[key], **common)

    # -- reading

    def published(self) -> list[SlashKey]:
        """The keys clients may encrypt to now, the one that expires last first."""
        now = self._clock()
        with self._lock:
            if self._dir is not None:
                self._ensure(self._current_generation())
            self._forget_expired(now)
            live = [
                k
                for k in self._keys.values()
                if k.private_key is not None and k.not_before <= now < k.expires
            ]
        return sorted(live, key=lambda k: (k.expires, k.not_before), reverse=True)

    def key_for(self, kid: str) -> SlashKey:
        """The key named by ``enc_key_id``; raises :class:`UnknownKeyError` or
        :class:`ExpiredKeyError`."""
        now = self._clock()
        kid = normalise_key_id(kid)
        with self._lock:
            self._forget_expired(now)
            key = self._keys.get(self._aliases.get(kid, kid))
            if key is None and self._dir is not None:
                self._scan()  # another replica may have created it
                key = self._keys.get(self._aliases.get(kid, kid))
            if key is None:
                raise UnknownKeyError(kid)
            if key.expires <= now or key.private_key is None:
                raise ExpiredKeyError(kid)
            return key

    async def refresh(self) -> None:
        """Create this period's key if it is missing, off the event loop (RSA key generation
        takes a while)."""
        if self._dir is None or self._current_generation() in self._generations:
            return
        await asyncio.to_thread(self._refresh_locked)

    def cache_seconds(self) -> int:
        """How long a client may cache ``/keys``: well inside the overlap."""
        return max(0, min(3600, (self._lifetime - self._step) // 4))

    # -- internals (called with the lock held)

    def _refresh_locked(self) -> None:
        with self._lock:
            self._ensure(self._current_generation())

    def _current_generation(self) -> int:
        return int(self._clock()) // self._step * self._step

    def _ensure(self, not_before: int) -> None:
        if not_before in self._generations:
            return
        assert self._dir is not None
        path = self._dir / f"{not_before}.json"
        if not path.exists():
            private = rsa.generate_private_key(public_exponent=65537, key_size=self._bits)
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            document = {
                "kid": key_id(_thumbprint(private)),
                "not_before": not_before,
                "expires": not_before + self._lifetime,
                "alg": KEY_ALGORITHM,
                "private_key_pem": pem.decode(),
            }
            create_once(path, orjson.dumps(document))  # a concurrent writer may win: read back
            log.info("created SLASH key %s, valid until %s", document["kid"], document["expires"])
        self._load(path)

    def _scan(self) -> None:
        assert self._dir is not None
        if not self._dir.is_dir():
            return
        for path in sorted(self._dir.glob("*.json")):
            self._load(path)

    def _load(self, path: Path) -> None:
        document = orjson.loads(path.read_bytes())
        stored = str(document["kid"])
        # Files written before key ids were GUIDs hold the thumbprint: published as its GUID
        # now, and still found under the old id.
        kid = stored if _is_guid(stored) else key_id(stored)
        if kid != stored:
            self._aliases[stored] = kid
        not_before = int(document["not_before"])
        expires = int(document["expires"])
        self._generations.add(not_before)
        if kid in self._keys:
            return
        if expires <= self._clock():
            self._keys[kid] = SlashKey(kid, not_before, expires, None)
            return
        private = _load_private_pem(str(document["private_key_pem"]).encode())
        key = SlashKey.from_private(private, not_before=not_before, expires=expires)
        if key.kid != kid:
            raise ValueError(f"{path}: the kid does not match the key")
        self._keys[kid] = key

    def _forget_expired(self, now: float) -> None:
        for kid, key in list(self._keys.items()):
            if key.private_key is not None and key.expires <= now:
                self._keys[kid] = replace(key, private_key=None)


def _is_guid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
