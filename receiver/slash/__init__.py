"""SLASH compatibility: the protocol of FHI's "SLASH – API Mottak", which EPJ systems already
speak to report to KPR, so that they can send to this receiver unchanged.

The protocol (FHI's published description and its .NET client, ``Fhi.Slash.Public``):

* ``GET /keys`` lists the receiver's RSA public keys, newest expiry first (FHI's client takes the
  first one). Each entry has FHI's fields ``id``, ``expirationDate`` and ``publicKey`` (SPKI PEM)
  and is also a JWK: ``kid`` (= ``id``, a GUID derived from the key's RFC 7638
  thumbprint: FHI's older client parses ``id`` as a Guid), ``kty``/``n``/``e``,
  ``use: "enc"``, ``alg: "RSA-OAEP-256"`` and ``exp`` (unix seconds).
* ``POST /message`` carries ``base64(IV(16) || AES-256-CBC(PKCS#7(plaintext)))`` as a
  ``text/plain`` body; the plaintext is the message JSON in UTF-8. ``Authorization: DPoP
  <HelseID token>`` and a ``DPoP`` proof whose extra claims are ``msg_type``, ``msg_version``,
  ``msg_hash`` (base64 or base64url SHA-256 of the plaintext), ``enc_sym_key`` (the 32-byte AES
  key wrapped with RSA-OAEP-SHA256, base64 or base64url) and ``enc_key_id`` (the ``kid``).
  Headers ``x-vendor-name``, ``x-software-name``, ``x-software-version``,
  ``x-export-software-version`` and ``x-data-extraction-date`` (dd.MM.yyyy) are required.
* The answer is ``{"delivered": bool, "errors": [{errorCode, propertyName, errorMessage,
  errorDetails}]}``. Delivered messages also name our receipt (``receiptId``, ``receiptStatus``,
  ``receiptUrl``, ``X-Correlation-ID`` and ``Location``), which ``GET /v1/receipts/{id}`` and the
  receipt feed follow to the state store. Items rejected by validation do not make a message
  undelivered (the rest is stored): one ``errors`` entry (2008) then points to the receipt.

Error codes are FHI's own (their README's "Oversikt over feilmeldinger"); ``errorMessage`` is
``"Error: <name> | <description>"`` like theirs, ``errorDetails`` says what exactly failed.
FHI answers 401 for authentication and 400 for everything else; we keep that and use 403, 413,
415 and 503 where they say more (a SLASH client stops on 4xx and retries on 5xx):

code  status     FHI name: raised here when
----  ---------  ---------------------------------------------------------------------------
1001  401 / 400  HttpHeaderMissing: no ``Authorization`` or ``DPoP`` header (401); an
                 ``x-*`` header is missing (400)
1002  401 / 400  HttpHeaderValidation: scheme not ``DPoP``, token invalid or expired (401);
      415        an ``x-*`` value too long or the date not dd.MM.yyyy (400); Content-Type
                 not text/plain (415)
1003  400        InvalidMessageTypeVersion: ``msg_type``/``msg_version`` missing or malformed
1004  400        InvalidKeyId: ``enc_key_id`` missing or not one of our keys
1005  400        InvalidDigest: ``msg_hash`` missing or not base64 of 32 bytes
1006  400        PayloadHashMismatch: the decrypted payload's SHA-256 is not ``msg_hash`` (also
                 when its padding is wrong: see below)
1007  400        ExpiredKey: ``enc_key_id`` names a key of ours that has expired
1008  400        DecryptionErrorForAsymmetricalKey: ``enc_sym_key`` missing, not base64, not
                 RSA-OAEP-SHA256 for that key, or not 32 bytes
1009  400        DecryptionErrorForSymmetricalKey: body empty, not base64, or not an IV
                 followed by whole AES blocks
2001  403        ShouldNotReceiveMessageForGivenOrganizationAndMessageType: the token lacks
                 ``intake:report``, or a unit block names another organisation number
2002  401        MissingOrganizationNumberClaimFromHelseIdToken: the token names no unit
2003  401        MissingSignatureClaimFromHelseIdToken: the token is not DPoP-bound (no
                 ``cnf.jkt``)
2004  401        BadSignatureClaimFromHelseIdToken: the DPoP proof is malformed or its
                 signature does not verify
2005  401        HelseIdSignatureDoesNotMatchHeaderValues: the proof is for another method,
                 URL, token or key, too old, or replayed (``jti`` seen before)
2006  400        SchemaNotFound: no published model for the type and version, or it is retired
2007  400        InvalidJsonMessage: the plaintext is not UTF-8 JSON
2008  400        SchemaValidationFailed: errors outside the items, or no items (not
                 delivered); also the pointer to the receipt when items were rejected
                 (delivered: true)
2009  413        PayloadSizeLimitExceeded: body or plaintext over ``max_body_bytes`` (15 MB),
                 or more items than ``max_items``
2010  503 / 409  StorageError: the event log is unavailable, or the unit is rate limited (503
                 with ``Retry-After``: retry the same message); ``msg_hash`` reused for other
                 content (409)

Security notes. AES-CBC without a MAC is what SLASH defines; the signed ``msg_hash`` is its only
integrity check. A bad PKCS#7 padding is therefore answered exactly like a hash mismatch (1006):
telling them apart would be a padding oracle that lets any authenticated client decrypt a captured
message. Expired private keys are not kept in memory; their ids are remembered so that clients
get 1007 rather than 1004.

Where the pieces are: the error codes and the answer's format in :mod:`receiver.slash.errors`,
the receiver's RSA keys (``GET /keys``) in :mod:`receiver.slash.keys`, the hybrid decryption in
:mod:`receiver.slash.crypto`, reading a request (token, DPoP proof, vendor headers, the proof's
message claims) in :mod:`receiver.slash.request`; the two routes in :mod:`receiver.routes.slash`.
"""
