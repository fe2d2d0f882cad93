"""Domain errors that carry the gRPC status they map to, without importing grpc.

The store and the embedder raise these; service.py turns them into status codes, and into
per-item errors inside an Add stream.
"""

from __future__ import annotations


class FaceSearchError(Exception):
    """Base class: `code` names a grpc.StatusCode member, `number` is its value."""

    code, number = "INTERNAL", 13


class InvalidArgument(FaceSearchError):
    code, number = "INVALID_ARGUMENT", 3


class FailedPrecondition(FaceSearchError):
    code, number = "FAILED_PRECONDITION", 9


class NotFound(FaceSearchError):
    code, number = "NOT_FOUND", 5


class AlreadyExists(FaceSearchError):
    code, number = "ALREADY_EXISTS", 6


class ResourceExhausted(FaceSearchError):
    code, number = "RESOURCE_EXHAUSTED", 8


class Unavailable(FaceSearchError):
    code, number = "UNAVAILABLE", 14


class ContractMismatch(FailedPrecondition):
    """A snapshot or request made under another embedding contract."""


class Cancelled(FaceSearchError):
    """The client cancelled the call or its deadline passed; the work was abandoned."""

    code, number = "CANCELLED", 1
