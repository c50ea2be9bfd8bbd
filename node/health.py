"""``shadowledger node health``: ask a node's gRPC health service, over its own mTLS port.

Container and Kubernetes probes cannot speak mTLS with genesis-pinned certificates, so
the probe runs this command beside the node: it connects to the node's own listen port
with the node's own certificate (a genesis-pinned node identity, accepted like a peer's)
and trusts exactly that certificate as the server's.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.config import NodeConfig
from node.tls import channel_credentials, channel_options, node_name


def local_address(listen: str) -> str:
    """The address to reach a server listening on ``listen`` from the same machine."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"


def check_health(config: NodeConfig, timeout_s: float) -> str:
    """The node's overall serving status name, e.g. ``SERVING``; raises ``grpc.RpcError``."""
    cert = config.keys.tls_cert.read_bytes()
    creds = channel_credentials(cert, config.keys.tls_key.read_bytes(), [cert])
    options = channel_options(node_name(config.node.name))
    with grpc.secure_channel(local_address(config.node.listen), creds, options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
