"""mTLS pinned by the genesis, over real gRPC connections on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ledger.errors import FormatError, UsageError
from ledger.genesis import Agency, Genesis, Validator
from ledger.keys import SigningKey
from node import tls
from node.tls import Identity

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SERVICE, METHOD = "test.Echo", "Whoami"


@dataclass(frozen=True)
class Pair:
    cert: bytes
    key: bytes


def _pair(name: str, now: datetime = NOW, days: int = 3650) -> Pair:
    cert, key = tls.generate_identity(name, now, days)
    return Pair(cert, key)


@pytest.fixture(scope="module")
def net() -> dict[str, Pair]:
    return {
        "node": _pair("node.tax-agency"),
        "other_node": _pair("node.health-insurance"),
        "client": _pair("client.tax-agency"),
        "auditor": _pair("client.audit-office"),
        "stranger": _pair("client.tax-agency"),  # same name, not pinned
        "stranger_node": _pair("node.tax-agency"),
    }


@pytest.fixture(scope="module")
def genesis(net: dict[str, Pair]) -> Genesis:
    def agency(name: str, role: str = "agency", **certs: list[bytes]) -> Agency:
        key = SigningKey(name, bytes(32)).verifier
        return Agency(
            name, (key,), role,
            tuple(c.decode() for c in certs.get("nodes", [])),
            tuple(c.decode() for c in certs.get("clients", [])),
        )

    return Genesis(
        network="test.example/v1",
        validators=(Validator(SigningKey("validator.tax-agency", bytes(32)).verifier),),
        agencies=(
            agency("tax-agency", nodes=[net["node"].cert], clients=[net["client"].cert]),
            agency("health-insurance", nodes=[net["other_node"].cert]),
            agency("audit-office", "auditor", clients=[net["auditor"].cert]),
        ),
    )


@contextmanager
def serve(server_pair: Pair, genesis: Genesis) -> Iterator[int]:
    """A real mTLS server whose one method answers with the caller's pinned identity."""
    pins = tls.pins_from_genesis(genesis)

    def whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        who = tls.peer_identity(context, pins)
        return b"none" if who is None else f"{who.agency}/{who.role}/{who.kind}".encode()

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(whoami)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    creds = tls.server_credentials(
        server_pair.cert, server_pair.key, tls.genesis_all_pems(genesis)
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()


def call(
    port: int,
    creds: grpc.ChannelCredentials,
    server_name: str = "node.tax-agency",
) -> bytes:
    options = tls.channel_options(server_name)
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        stub = channel.unary_unary(f"/{SERVICE}/{METHOD}")
        reply: bytes = stub(b"", timeout=10)
        return reply


def creds_for(pair: Pair, genesis: Genesis) -> grpc.ChannelCredentials:
    return tls.channel_credentials(pair.cert, pair.key, tls.genesis_node_pems(genesis))


def assert_refused(port: int, creds: grpc.ChannelCredentials, server_name: str = "") -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(port, creds, server_name or "node.tax-agency")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_pinned_client_is_identified(net: dict[str, Pair], genesis: Genesis) -> None:
    with serve(net["node"], genesis) as port:
        assert call(port, creds_for(net["client"], genesis)) == b"tax-agency/client/client"
        assert call(port, creds_for(net["other_node"], genesis)) == b"health-insurance/node/node"
        assert call(port, creds_for(net["auditor"], genesis)) == b"audit-office/auditor/client"


def test_unpinned_client_cert_is_refused(net: dict[str, Pair], genesis: Genesis) -> None:
    with serve(net["node"], genesis) as port:
        assert_refused(port, creds_for(net["stranger"], genesis))


def test_client_without_cert_is_refused(net: dict[str, Pair], genesis: Genesis) -> None:
    creds = grpc.ssl_channel_credentials(tls.pin_bundle(tls.genesis_node_pems(genesis)))
    with serve(net["node"], genesis) as port:
        assert_refused(port, creds)


def test_client_refuses_unpinned_server(net: dict[str, Pair], genesis: Genesis) -> None:
    # The server trusts the client, but presents a certificate the genesis does not pin.
    with serve(net["stranger_node"], genesis) as port:
        assert_refused(port, creds_for(net["client"], genesis))


def test_client_refuses_pinned_server_under_wrong_name(
    net: dict[str, Pair], genesis: Genesis
) -> None:
    # Pinned, but it is tax-agency's node: a client dialing health-insurance must refuse it.
    with serve(net["node"], genesis) as port:
        assert_refused(port, creds_for(net["client"], genesis), "node.health-insurance")


def test_cert_issued_by_a_pinned_key_is_refused(net: dict[str, Pair], genesis: Genesis) -> None:
    # Pins are CA:FALSE leaves: holding a pinned key does not let you mint more identities.
    pinned = x509.load_pem_x509_certificate(net["client"].cert)
    pinned_key = serialization.load_pem_private_key(net["client"].key, None)
    assert isinstance(pinned_key, ec.EllipticCurvePrivateKey)
    child_key = ec.generate_private_key(ec.SECP256R1())
    child = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "client.x")]))
        .issuer_name(pinned.subject)
        .public_key(child_key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3000))
        .sign(pinned_key, hashes.SHA256())
    )
    child_pem = child.public_bytes(serialization.Encoding.PEM)
    key_pem = child_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    creds = tls.channel_credentials(
        child_pem + net["client"].cert, key_pem, tls.genesis_node_pems(genesis)
    )
    with serve(net["node"], genesis) as port:
        assert_refused(port, creds)


def test_expired_pinned_cert_is_refused(genesis: Genesis, net: dict[str, Pair]) -> None:
    old = _pair("client.tax-agency", now=datetime(2020, 1, 1, tzinfo=UTC), days=1)
    pinned = Genesis(
        genesis.network, genesis.validators,
        (*genesis.agencies, Agency("late", (), client_certs=(old.cert.decode(),))),
    )
    with serve(net["node"], pinned) as port:
        assert_refused(port, creds_for(old, pinned))


def test_generated_identity_shape() -> None:
    pair = _pair("node.tax-agency", days=30)
    cert = x509.load_pem_x509_certificate(pair.cert)
    assert tls.dns_names(pair.cert) == ["node.tax-agency"]
    assert cert.not_valid_before_utc == NOW - tls.CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    tls.check_pinnable(pair.cert, "node cert")
    assert len(tls.fingerprint(pair.cert)) == 32
    assert tls.fingerprint(pair.cert) == tls.fingerprint(pair.cert.replace(b"\n", b"\r\n"))


def test_generate_identity_misuse() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        tls.generate_identity("node.a", datetime(2026, 1, 1), 10)
    with pytest.raises(UsageError, match="at least one day"):
        tls.generate_identity("node.a", NOW, 0)


def test_ed25519_cert_is_not_pinnable() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "node.a")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .sign(key, None)
    )
    with pytest.raises(FormatError, match="P-256"):
        tls.check_pinnable(cert.public_bytes(serialization.Encoding.PEM), "node cert")


def test_pins_from_genesis(net: dict[str, Pair], genesis: Genesis) -> None:
    pins = tls.pins_from_genesis(genesis)
    assert pins[tls.fingerprint(net["node"].cert)] == Identity("tax-agency", "node", "node")
    assert pins[tls.fingerprint(net["auditor"].cert)].role == "auditor"
    assert tls.fingerprint(net["stranger"].cert) not in pins
    assert len(pins) == 4


def test_same_cert_pinned_twice_is_refused(net: dict[str, Pair], genesis: Genesis) -> None:
    twice = Genesis(
        genesis.network, genesis.validators,
        (*genesis.agencies, Agency("copycat", (), client_certs=(net["client"].cert.decode(),))),
    )
    with pytest.raises(FormatError, match="same certificate"):
        tls.pins_from_genesis(twice)


def test_empty_pin_set_fails_closed(net: dict[str, Pair]) -> None:
    with pytest.raises(UsageError, match="system CAs"):
        tls.channel_credentials(net["client"].cert, net["client"].key, [])
    with pytest.raises(UsageError, match="system CAs"):
        tls.server_credentials(net["node"].cert, net["node"].key, [])


def test_channel_options_bound_messages() -> None:
    options = dict(tls.channel_options("node.a", 1024))
    assert options["grpc.ssl_target_name_override"] == "node.a"
    assert options["grpc.max_receive_message_length"] == 1024
    assert options["grpc.max_send_message_length"] == 1024
