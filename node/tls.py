"""Mutual TLS pinned by the genesis: no CA, every certificate is its own root.

Every node and every API client holds a self-signed ECDSA P-256 certificate whose SAN
names its identity (``node.<agency>`` or ``client.<agency>``, plus IP 127.0.0.1). The
genesis lists each agency's certificates; a node hands the bundle of all of them to
BoringSSL as the trusted roots, so a handshake succeeds only with a pinned certificate.
Pinned certificates are not CAs (basicConstraints CA:FALSE), so their holders cannot
mint others; ``peer_identity`` then maps the exact certificate (SHA-256 of its DER) to
the agency and role the services authorize on.

Why P-256 and not Ed25519: gRPC's BoringSSL refuses Ed25519 certificates in the TLS 1.3
handshake (NO_COMMON_SIGNATURE_ALGORITHMS), on both the server and the client side.

Nothing here reads the clock: validity starts from the ``now`` passed in.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.errors import FormatError, UsageError
from ledger.genesis import Agency

Role = Literal["node", "client", "auditor"]
CertKind = Literal["node", "client"]

CLOCK_SKEW = timedelta(hours=1)
"""Certificates are valid from ``now - CLOCK_SKEW``: peers with a slow clock accept them."""
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class Identity:
    """Who is on the other end of an authenticated connection."""

    agency: str
    role: Role
    """"node" or "client" for an ordinary agency's certificates; "auditor" for any
    certificate of an agency whose genesis role is "auditor" (reads all, writes nothing)."""
    kind: CertKind | None = None
    """Which genesis list pinned the certificate (node_certs or client_certs), when known."""

    @property
    def is_node(self) -> bool:
        """True for a node's certificate (also an auditor's observer node)."""
        return self.kind == "node" or self.role == "node"


class HasAgencies(Protocol):
    """A genesis or a membership (ledger/membership.py): both pin certificates per agency."""

    @property
    def agencies(self) -> tuple[Agency, ...]: ...


def node_name(agency: str) -> str:
    """The SAN (and TLS server name) of an agency's node: ``node.<agency>``."""
    return f"node.{agency}"


def client_name(agency: str) -> str:
    """The SAN of an agency's API client certificate: ``client.<agency>``."""
    return f"client.{agency}"


def generate_identity(name: str, now: datetime, days: int) -> tuple[bytes, bytes]:
    """A new self-signed P-256 certificate for ``name``: (cert PEM, PKCS#8 key PEM).

    ``now`` must be timezone-aware; the certificate is valid from ``now - CLOCK_SKEW``
    to ``now + days``. The key PEM is unencrypted: write it to a 0600 file.
    """
    if now.tzinfo is None:
        raise UsageError("generate_identity needs a timezone-aware 'now' (e.g. UTC)")
    if days <= 0:
        raise UsageError(f"certificate validity must be at least one day, got {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_certificate(name, key, now, days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _build_certificate(
    name: str, key: ec.EllipticCurvePrivateKey, now: datetime, days: int
) -> x509.Certificate:
    try:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        san = x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(LOOPBACK)])
    except ValueError as exc:
        raise UsageError(f"{name!r} cannot be a certificate name: {exc}") from exc
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(eku, critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def load_certificate(cert_pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate; FormatError if it is not one."""
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise FormatError(f"not a PEM X.509 certificate: {exc}") from exc


def fingerprint(cert_pem: bytes) -> bytes:
    """SHA-256 of the certificate's DER: the pin compared against the genesis."""
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).digest()


def dns_names(cert_pem: bytes) -> list[str]:
    """The SAN DNS names of a certificate (empty if it has no SAN extension)."""
    try:
        san = load_certificate(cert_pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.DNSName))


def check_pinnable(cert_pem: bytes, what: str) -> None:
    """FormatError unless the certificate is a self-signed P-256 non-CA leaf, as pins must be."""
    cert = load_certificate(cert_pem)
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise FormatError(f"{what}: key must be ECDSA P-256 (gRPC's TLS refuses Ed25519)")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise FormatError(f"{what}: certificate is not self-signed") from exc
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    if ca:
        raise FormatError(f"{what}: a pinned certificate must not be a CA (CA:TRUE)")


def pin_bundle(pems: Iterable[bytes | str]) -> bytes:
    """The PEM certificates concatenated, one per block: gRPC's ``root_certificates``."""
    parts = [p.encode("ascii") if isinstance(p, str) else p for p in pems]
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)


def server_credentials(
    cert_pem: bytes, key_pem: bytes, trusted_pems: Iterable[bytes | str]
) -> grpc.ServerCredentials:
    """Server side of mTLS: present our certificate, accept only pinned client certificates."""
    bundle = _nonempty_bundle(trusted_pems)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=bundle, require_client_auth=True
    )


def dynamic_server_credentials(
    cert_pem: bytes, key_pem: bytes, trusted_pems: Callable[[], Iterable[bytes | str]]
) -> grpc.ServerCredentials:
    """``server_credentials`` whose pinned client certificates follow governance: gRPC asks
    ``trusted_pems`` at each new handshake, so a newly pinned agency's node or client is
    accepted and a removed one refused without a restart. (Connections already open stay
    open; the application-level checks, ``peer_identity`` against the current pins, refuse
    their calls.)"""
    state = {"bundle": _nonempty_bundle(trusted_pems())}

    def config(bundle: bytes) -> Any:
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], bundle)

    def fetch() -> Any:
        bundle = _nonempty_bundle(trusted_pems())
        if bundle == state["bundle"]:
            return None  # unchanged: gRPC keeps the current configuration
        state["bundle"] = bundle
        return config(bundle)

    return grpc.dynamic_ssl_server_credentials(
        config(state["bundle"]), fetch, require_client_authentication=True
    )


def channel_credentials(
    cert_pem: bytes, key_pem: bytes, trusted_pems: Iterable[bytes | str]
) -> grpc.ChannelCredentials:
    """Client side of mTLS: present our certificate, accept only a pinned server certificate.

    Clients should trust node certificates only (``genesis_node_pems``), and pass the
    server's ``node.<agency>`` name to ``channel_options``: it must match the server's SAN.
    """
    bundle = _nonempty_bundle(trusted_pems)
    return grpc.ssl_channel_credentials(
        root_certificates=bundle, private_key=key_pem, certificate_chain=cert_pem
    )


def _nonempty_bundle(trusted_pems: Iterable[bytes | str]) -> bytes:
    bundle = pin_bundle(trusted_pems)
    if not bundle:
        # An empty root set would make gRPC fall back to the system CAs: fail closed.
        raise UsageError("no pinned certificates: refusing to fall back to system CAs")
    return bundle


def channel_options(
    server_name: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> list[tuple[str, str | int]]:
    """gRPC channel options: expected server SAN and message-size bounds (both directions)."""
    return [
        ("grpc.ssl_target_name_override", server_name),
        *message_size_options(max_message_bytes),
    ]


def message_size_options(max_message_bytes: int) -> list[tuple[str, str | int]]:
    """Send and receive size bounds, for ``grpc.server(options=...)`` and channels alike."""
    if max_message_bytes <= 0:
        raise UsageError(f"max_message_bytes must be positive, got {max_message_bytes}")
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def peer_identity(
    context: grpc.ServicerContext, pins: Mapping[bytes, Identity]
) -> Identity | None:
    """The pinned identity of the peer of an RPC, or None if it presented no pinned cert."""
    certs = context.auth_context().get("x509_pem_cert") or []
    if len(certs) != 1:
        return None
    fp = _peer_fingerprint(bytes(certs[0]))
    return None if fp is None else pins.get(fp)


@functools.lru_cache(maxsize=1024)
def _peer_fingerprint(cert_pem: bytes) -> bytes | None:
    """Cached: the same few peers call again and again; parsing X.509 costs ~50 us."""
    try:
        return fingerprint(cert_pem)
    except FormatError:
        return None


def pins_from_genesis(genesis: HasAgencies) -> dict[bytes, Identity]:
    """Fingerprint -> Identity for every node and client certificate in the genesis (or
    a later membership adopted by governance)."""
    pins: dict[bytes, Identity] = {}
    for agency in genesis.agencies:
        kinds: tuple[tuple[CertKind, tuple[str, ...]], ...] = (
            ("node", agency.node_certs),
            ("client", agency.client_certs),
        )
        for kind, pems in kinds:
            role: Role = "auditor" if agency.role == "auditor" else kind
            for pem in pems:
                _add_pin(pins, fingerprint(pem.encode("ascii")), Identity(agency.name, role, kind))
    return pins


def _add_pin(pins: dict[bytes, Identity], fp: bytes, identity: Identity) -> None:
    if fp in pins:
        raise FormatError(
            f"genesis pins the same certificate for {pins[fp].agency} and {identity.agency};"
            " every node and client needs its own certificate"
        )
    pins[fp] = identity


def genesis_node_pems(genesis: HasAgencies) -> list[bytes]:
    """Every node certificate in the genesis (what a client or a peer trusts as server)."""
    return [pem.encode("ascii") for a in genesis.agencies for pem in a.node_certs]


def genesis_all_pems(genesis: HasAgencies) -> list[bytes]:
    """Every node and client certificate (what a node's server trusts as client)."""
    return [
        pem.encode("ascii") for a in genesis.agencies for pem in (*a.node_certs, *a.client_certs)
    ]
