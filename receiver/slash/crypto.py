"""SLASH's hybrid encryption, receiving side: the body's base64, the AES key unwrapped with
RSA-OAEP-SHA256, AES-256-CBC decryption and the ``msg_hash`` check (see the security notes in
:mod:`receiver.slash`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from receiver.slash.errors import SlashCode, SlashError
from receiver.slash.keys import SlashKey

IV_BYTES = 16
AES_KEY_BYTES = 32
BLOCK_BYTES = 16


_URLSAFE = bytes.maketrans(b"-_", b"+/")
_WHITESPACE = b" \t\r\n"


def b64decode_lenient(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, padded or not (FHI's client sends base64url for the proof's
    claims and standard base64 for the body). Raises ``ValueError``."""
    data = text.encode("ascii") if isinstance(text, str) else text
    data = data.translate(_URLSAFE, _WHITESPACE)
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_body(body: bytes) -> bytes:
    """The body's bytes: ``IV || ciphertext``. Raises :class:`SlashError` (1009)."""
    text = body.strip(_WHITESPACE)
    if len(text) >= 2 and text[:1] == b'"' and text[-1:] == b'"':  # sent as a JSON string
        text = text[1:-1]
    if not text:
        raise _symmetric("The body is empty; send the encrypted message as base64 text.")
    try:
        data = b64decode_lenient(text)
    except (ValueError, UnicodeEncodeError) as exc:
        raise _symmetric("The body is not base64.") from exc
    if len(data) < IV_BYTES + BLOCK_BYTES or len(data) % BLOCK_BYTES:
        raise _symmetric(
            "The body is not a 16-byte IV followed by whole AES blocks "
            f"({len(data)} bytes after base64)."
        )
    return data


def unwrap_key(key: SlashKey, enc_sym_key: str) -> bytes:
    """The AES key from ``enc_sym_key`` (RSA-OAEP with SHA-256). Raises :class:`SlashError`
    (1008)."""
    assert key.private_key is not None
    try:
        wrapped = b64decode_lenient(enc_sym_key)
    except (ValueError, UnicodeEncodeError) as exc:
        raise _asymmetric("enc_sym_key is not base64.") from exc
    try:
        aes_key = key.private_key.decrypt(
            wrapped,
            OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
    except ValueError as exc:
        raise _asymmetric(
            f"enc_sym_key does not decrypt with key {key.kid} (RSA-OAEP, SHA-256)."
        ) from exc
    if len(aes_key) != AES_KEY_BYTES:
        raise _asymmetric(f"The symmetric key must be {AES_KEY_BYTES} bytes (AES-256).")
    return aes_key


def decrypt_and_verify(aes_key: bytes, data: bytes, digest: bytes) -> bytes:
    """The plaintext of ``IV || AES-256-CBC``, checked against ``digest`` (SHA-256).

    A wrong padding and a wrong digest give the same error after the same work, so the answer
    reveals nothing about the padding (no padding oracle). Raises :class:`SlashError` (1006)."""
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(data[:IV_BYTES])).decryptor()
    padded = decryptor.update(data[IV_BYTES:]) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
        padding_ok = True
    except ValueError:
        plaintext = padded
        padding_ok = False
    matches = hmac.compare_digest(hashlib.sha256(plaintext).digest(), digest)
    if not (matches and padding_ok):
        raise SlashError(
            SlashCode.PAYLOAD_HASH_MISMATCH,
            400,
            "The decrypted payload does not match msg_hash: the body was changed, encrypted "
            "with another key than enc_sym_key, or msg_hash is not the SHA-256 of the message.",
            property_name="msg_hash",
        )
    return plaintext


def _symmetric(details: str) -> SlashError:
    return SlashError(SlashCode.DECRYPTION_ERROR_SYMMETRIC, 400, details)


def _asymmetric(details: str) -> SlashError:
    return SlashError(
        SlashCode.DECRYPTION_ERROR_ASYMMETRIC, 400, details, property_name="enc_sym_key"
    )
