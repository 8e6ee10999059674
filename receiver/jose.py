"""The one allow-list of JOSE algorithms and key sizes, for access tokens and DPoP proofs alike.

It comes from settings (``INTAKE_JOSE_ALGORITHMS``, ``INTAKE_JOSE_RSA_MIN_BITS``,
``INTAKE_JOSE_RSA_MAX_BITS``). RSA keys of 2048–4096 bits (RS256/PS256 and their SHA-384/512
siblings, what HelseID clients and FHI's SLASH client hold) and EC keys on P-256, P-384 and
P-521 (ES256/384/512) are accepted by default; symmetric algorithms and ``none`` never are.

joserfc refuses a JWS header over 512 bytes by default, which a proof carrying a 2048-bit RSA
``jwk`` already exceeds; the registry made here allows the header of a proof with the largest
allowed key, and a larger header is refused with that cause, before any parsing.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from wiring.settings import JOSE_ALGORITHMS, Settings

# The curve each EC algorithm signs on (RFC 7518 §3.4).
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
# Room in a header for everything but an RSA modulus: typ, alg, kid, and the jwk's other
# members (kty, e, alg, use, kid, x5t...), generously.
_HEADER_ROOM = 512


class UnsupportedKey(ValueError):
    """A key outside the allow-list: its type, curve or size is not accepted."""


@dataclass(frozen=True, slots=True)
class JosePolicy:
    algorithms: tuple[str, ...]
    rsa_min_bits: int
    rsa_max_bits: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JosePolicy:
        return cls(
            tuple(settings.jose_algorithms), settings.jose_rsa_min_bits, settings.jose_rsa_max_bits
        )

    @classmethod
    def default(cls) -> JosePolicy:
        return cls(JOSE_ALGORITHMS, 2048, 4096)

    @property
    def max_header_bytes(self) -> int:
        """The largest base64url header segment allowed: a proof's header with a ``jwk`` of the
        largest allowed RSA key fits, with room to spare."""
        modulus_chars = math.ceil(math.ceil(self.rsa_max_bits / 8) * 4 / 3)
        return math.ceil((modulus_chars + _HEADER_ROOM) * 4 / 3)

    def registry(self) -> JWSRegistry:
        registry = JWSRegistry(algorithms=list(self.algorithms))
        registry.max_header_length = self.max_header_bytes
        # An RSA signature is as long as the modulus; base64url makes it a third longer.
        registry.max_signature_length = math.ceil(math.ceil(self.rsa_max_bits / 8) * 4 / 3) + 4
        return registry

    def check_jwk(self, jwk: dict[str, Any], alg: str) -> None:
        """Refuse a public key (as a JWK) the allow-list does not accept for ``alg``, naming
        why; read before the key is imported, so a weak key is never parsed as one."""
        if alg not in self.algorithms:
            raise UnsupportedKey(f"the algorithm {alg} is not accepted")
        kty = jwk.get("kty")
        if kty == "RSA":
            if not alg.startswith(("RS", "PS")):
                raise UnsupportedKey(f"an RSA key cannot sign {alg}")
            bits = _modulus_bits(jwk.get("n"))
            if not self.rsa_min_bits <= bits <= self.rsa_max_bits:
                raise UnsupportedKey(
                    f"an RSA key of {bits} bits is not accepted "
                    f"({self.rsa_min_bits}–{self.rsa_max_bits})"
                )
            return
        if kty != "EC":
            raise UnsupportedKey(f"a key of type {str(kty)[:10]!r} is not accepted")
        curve = CURVES.get(alg)
        if curve is None:
            raise UnsupportedKey(f"an EC key cannot sign {alg}")
        if jwk.get("crv") != curve:
            raise UnsupportedKey(f"{alg} needs a key on {curve}, not {str(jwk.get('crv'))[:10]}")

    def accepted_jwks(self, document: Any) -> tuple[KeySet, list[str]]:
        """The keys of an issuer's JWKS that the allow-list accepts, and why the others are not
        (RSA of another size, a curve no allowed algorithm signs on, a symmetric key)."""
        entries = document.get("keys", []) if isinstance(document, dict) else []
        curves = {CURVES[a] for a in self.algorithms if a in CURVES}
        kept: list[dict[str, Any]] = []
        refused: list[str] = []
        for jwk in entries:
            if not isinstance(jwk, dict):
                continue
            name = str(jwk.get("kid") or jwk.get("kty"))[:40]
            if jwk.get("kty") == "RSA":
                bits = _modulus_bits(jwk.get("n"))
                if self.rsa_min_bits <= bits <= self.rsa_max_bits:
                    kept.append(jwk)
                else:
                    refused.append(f"{name}: RSA {bits} bits")
            elif jwk.get("kty") == "EC" and jwk.get("crv") in curves:
                kept.append(jwk)
            else:
                refused.append(f"{name}: {str(jwk.get('kty'))[:10]} {jwk.get('crv') or ''}")
        return (KeySet.import_key_set({"keys": kept}) if kept else KeySet([])), refused

    def challenge(
        self, scheme: str, *, error: str | None = None, description: str | None = None
    ) -> str:
        """A ``WWW-Authenticate`` value: for DPoP as RFC 9449 §7.1 (``algs`` always, ``error``
        and ``error_description`` when a credential was sent but refused); for Bearer as
        RFC 6750 §3."""
        parts = ['realm="register-intake"']
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quoted(description)}"')
        if scheme == "DPoP":
            parts.append(f'algs="{" ".join(self.algorithms)}"')
        return f"{scheme} " + ", ".join(parts)


def _quoted(text: str) -> str:
    """A text fit for a header's quoted-string: printable ASCII, no quote or backslash."""
    text = text.replace("\u2013", "-")
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')[:200]


def _modulus_bits(n: Any) -> int:
    """The size of an RSA modulus given as a JWK's base64url ``n`` (0 when it is not one)."""
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (ValueError, binascii.Error):
        return 0
    return int.from_bytes(raw, "big").bit_length()
