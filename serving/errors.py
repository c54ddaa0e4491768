"""Serving errors with TensorFlow's status codes, and their HTTP and gRPC equivalents (as TF Serving maps
them), so the REST and gRPC APIs report the same failure the same way."""

from __future__ import annotations

import grpc

# TensorFlow status code -> HTTP status, as TF Serving's ToHTTPStatusCode maps them.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A request that cannot be served: `code` is a TensorFlow status code name (`INVALID_ARGUMENT`,
    `NOT_FOUND`, ...), `message` the text returned to the client."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code!r}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return getattr(grpc.StatusCode, self.code)


def code_name(number: int) -> str:
    """The name of a TensorFlow status code number (TF's codes are gRPC's), INTERNAL when unknown."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.name
    return "INTERNAL"


def code_number(name: str) -> int:
    """The number of a TensorFlow status code name (`NOT_FOUND` -> 5)."""
    return getattr(grpc.StatusCode, name).value[0]


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)
