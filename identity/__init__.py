"""Direct person identifiers at rest: keys, pseudonyms and sealed (encrypted) identifiers.

A field a message model marks as a direct person identifier (``x-identifier`` fnr, dnr, hnr,
fhnr, duf) is validated on its plaintext and then replaced, before anything is written, by a
pseudonym (:mod:`identity.pseudonyms`); the identifier itself is sealed with an authenticated
cipher under a key id (:mod:`identity.keys`) and kept in the identity vault, apart from the
content (``statestore.vault``). docs/privacy.md describes the whole flow.
"""
