"""Off-ledger delivery content: what a provider seals to the recipient agency.

The ledger holds a sharing event's ``payload_commitment = SHA-256(salt || payload)``;
the payload and salt travel off the ledger, sealed (nacl ``SealedBox``, X25519) to the
recipient agency's box key from the genesis. The sealed plaintext is framed as

    "shadowledger/delivery/v1\\n" || event_id (32) || salt_len (u8) || salt || payload

so a sealed payload names the event it belongs to: a node or a thief cannot move it to
another event unnoticed. Sealing draws randomness (an ephemeral key), so it lives in
``node/delivery.py``; this module only frames, parses and checks, purely.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import FormatError, VerificationError
from ledger.privacy import SALT_MIN, opens
from ledger.records import Record

DELIVERY_CONTEXT = b"shadowledger/delivery/v1\n"
EVENT_ID_BYTES = 32
SALT_MAX = 64
SEAL_OVERHEAD = 48
"""nacl SealedBox: 32-byte ephemeral public key + 16-byte Poly1305 tag."""
FRAME_OVERHEAD = len(DELIVERY_CONTEXT) + EVENT_ID_BYTES + 1


@dataclass(frozen=True)
class DeliveryContent:
    """The opening of one sharing event's commitment: its salt and payload."""

    event_id: bytes
    salt: bytes
    payload: bytes

    def __post_init__(self) -> None:
        if len(self.event_id) != EVENT_ID_BYTES:
            raise FormatError(f"event id is {len(self.event_id)} bytes, want {EVENT_ID_BYTES}")
        if not SALT_MIN <= len(self.salt) <= SALT_MAX:
            raise FormatError(f"salt is {len(self.salt)} bytes, want {SALT_MIN}..{SALT_MAX}")

    def to_bytes(self) -> bytes:
        return (DELIVERY_CONTEXT + self.event_id + bytes([len(self.salt)]) + self.salt
                + self.payload)

    @classmethod
    def from_bytes(cls, data: bytes) -> DeliveryContent:
        if not data.startswith(DELIVERY_CONTEXT) or len(data) < FRAME_OVERHEAD:
            raise FormatError("sealed content is not a shadowledger/delivery/v1 frame")
        at = len(DELIVERY_CONTEXT)
        event_id = data[at:at + EVENT_ID_BYTES]
        salt_len = data[at + EVENT_ID_BYTES]
        start = FRAME_OVERHEAD
        if len(data) < start + salt_len:
            raise FormatError("sealed content is shorter than its salt length says")
        return cls(event_id, data[start:start + salt_len], data[start + salt_len:])


def sealed_size(payload_size: int, salt_size: int) -> int:
    """Bytes of the sealed box for a payload and salt of these sizes."""
    return SEAL_OVERHEAD + FRAME_OVERHEAD + salt_size + payload_size


def check_sealed_size(sealed_bytes: int, payload_size: int) -> None:
    """Whether a sealed box can hold the event's payload (the node cannot decrypt it)."""
    salt = sealed_bytes - sealed_size(payload_size, 0)
    if not SALT_MIN <= salt <= SALT_MAX:
        raise FormatError(
            f"sealed payload is {sealed_bytes} bytes; for the event's {payload_size}-byte "
            f"payload it must be {sealed_size(payload_size, SALT_MIN)}.."
            f"{sealed_size(payload_size, SALT_MAX)} bytes")


def check_against_event(content: DeliveryContent, event: Record) -> None:
    """Raise ``VerificationError`` unless ``content`` opens ``event``'s commitment.

    ``event`` must be a verified, committed record (e.g. from a checked receipt).
    """
    if event.kind != "sharing_event":
        raise VerificationError(f"record {event.record_id.hex()[:16]} is a {event.kind}, "
                                "not a sharing event")
    if content.event_id != event.record_id:
        raise VerificationError("the sealed payload names another sharing event")
    e = event.body.sharing_event
    if len(content.payload) != e.payload_size:
        raise VerificationError(f"payload is {len(content.payload)} bytes; the event "
                                f"committed to {e.payload_size}")
    if not opens(e.payload_commitment, content.salt, content.payload):
        raise VerificationError("payload and salt do not open the event's on-ledger "
                                "commitment")
