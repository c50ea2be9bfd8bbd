"""Sealing and opening delivered payloads (nacl SealedBox), and the agencies' box keys.

Each agency has an X25519 key pair: the public key is in the genesis (``box_keys``), the
secret key (32 raw bytes, mode 0600) in the agency's key folder, named by the client
profile's ``box_key``. A provider seals ``DeliveryContent`` to the recipient's current
(first) box key; only the recipient agency's clients, which hold the secret key, open it.
Sealing draws randomness (the ephemeral key), which is why it lives here in ``node/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from ledger.delivery import DeliveryContent
from ledger.errors import FormatError, VerificationError
from ledger.genesis import BOX_KEY_BYTES, Genesis, encode_box_key
from ledger.membership import Membership
from node.config import ConfigError


def generate_box_key() -> tuple[bytes, bytes]:
    """A fresh (secret, public) X25519 key pair, 32 bytes each."""
    secret = PrivateKey.generate()
    return bytes(secret), bytes(secret.public_key)


def public_box_key(secret: bytes) -> bytes:
    return bytes(PrivateKey(secret).public_key)


def read_box_key(path: Path) -> bytes:
    """An agency's box secret key file: 32 raw bytes."""
    secret = path.read_bytes()
    if len(secret) != BOX_KEY_BYTES:
        raise ConfigError(f"{path}: box key must be {BOX_KEY_BYTES} raw bytes, "
                          f"found {len(secret)}")
    return secret


def write_box_key_files(folder: Path, name: str) -> tuple[Path, Path]:
    """``NAME.boxkey`` (secret, 0600, never replaced) and ``NAME.boxpub`` (base64 text)."""
    secret, public = generate_box_key()
    skey, pub = folder / f"{name}.boxkey", folder / f"{name}.boxpub"
    fd = os.open(skey, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    pub.write_text(encode_box_key(public) + "\n")
    return skey, pub


def recipient_box_key(genesis: Genesis | Membership, agency: str) -> bytes:
    """The key to seal to: the recipient's first box key in the genesis or the membership
    in force (governance may rotate box keys or add agencies)."""
    entry = genesis.agency(agency)
    if entry is None:
        raise FormatError(f"agency {agency!r} is not a member of the network")
    if not entry.box_keys:
        raise FormatError(f"agency {agency} has no box key in the membership: it cannot "
                          "receive off-ledger deliveries")
    return entry.box_keys[0]


def seal(content: DeliveryContent, recipient_public: bytes) -> bytes:
    return bytes(SealedBox(PublicKey(recipient_public)).encrypt(content.to_bytes()))


def open_sealed(sealed: bytes, secret: bytes) -> DeliveryContent:
    """Decrypt and parse; ``VerificationError`` if it was not sealed to this key."""
    try:
        plain = SealedBox(PrivateKey(secret)).decrypt(sealed)
    except CryptoError as exc:
        raise VerificationError("the sealed payload does not open with this agency's box "
                                "key (sealed to another key, or altered)") from exc
    return DeliveryContent.from_bytes(plain)
