"""Opaque feed cursors: the position in the change feed and the unit it belongs to, signed with
HMAC-SHA256 so that a client can neither forge a position nor use another unit's cursor."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import orjson

from statestore.feed import Position
from wiring.files import create_once
from wiring.settings import Settings


class CursorError(ValueError):
    """A cursor that is malformed, forged, or someone else's."""


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, unit: str, position: Position) -> str:
        payload = orjson.dumps({"u": unit, "t": position.txid, "s": position.seq})
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return f"{_b64(payload)}.{_b64(mac)}"

    def decode(self, unit: str, cursor: str) -> Position:
        try:
            payload_part, mac_part = cursor.split(".")
            payload, mac = _unb64(payload_part), _unb64(mac_part)
        except ValueError as exc:
            raise CursorError("malformed cursor") from exc
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise CursorError("cursor was not issued by this service")
        data = orjson.loads(payload)
        if data.get("u") != unit:
            raise CursorError("cursor belongs to another unit")
        return Position(int(data["t"]), int(data["s"]))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cursor_codec_for(settings: Settings) -> CursorCodec:
    """The configured secret; in development, one generated once and kept in the data dir."""
    if settings.feed_secret is not None:
        return CursorCodec(settings.feed_secret.get_secret_value().encode())
    path = settings.data_dir / "feed-cursor.key"
    create_once(path, secrets.token_bytes(32))
    return CursorCodec(path.read_bytes())
