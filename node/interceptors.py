"""Malformed request bytes get INVALID_ARGUMENT, not gRPC's INTERNAL.

gRPC Python decodes a request before any servicer code runs; when the bytes are not a
valid protobuf of the method's request type it answers INTERNAL "Exception deserializing
request!", which tells a client nothing and looks like a server bug. This interceptor
wraps each method's deserializer: bytes that do not parse become a ``Malformed`` marker,
and the servicer wrapper aborts with INVALID_ARGUMENT naming the expected type (for
streaming requests, at the first malformed message). Found by API fuzzing (issue 7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError


@dataclass(frozen=True)
class Malformed:
    """Stands in for a request message whose bytes did not parse."""

    error: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError) as exc:  # ValueError: bad UTF-8 in a string field
            return Malformed(str(exc) or type(exc).__name__)

    return parse


def _refuse(context: grpc.ServicerContext, method: str, bad: Malformed) -> None:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                  f"{method}: request is not a valid protobuf message ({bad.error})")


def _checked_stream(requests: Iterator[Any], context: grpc.ServicerContext,
                    method: str) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Malformed):
            _refuse(context, method, request)
        yield request


def _wrap_single(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            _refuse(context, method, request)
        return behaviour(request, context)

    return run


def _wrap_stream(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    def run(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behaviour(_checked_stream(requests, context, method), context)

    return run


class MalformedRequests(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        deserialize = _tolerant(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_single(handler.unary_unary, method), deserialize, serialize)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_single(handler.unary_stream, method), deserialize, serialize)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_stream(handler.stream_unary, method), deserialize, serialize)
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method), deserialize, serialize)
