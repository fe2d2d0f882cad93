"""Domain errors that carry the gRPC status they map to, without importing grpc.

The store and the embedder raise these; service.py turns them into status codes, and into
per-item errors inside an Add stream.
"""

from __future__ import annotations


class FaceSearchError(Exception):
    """Base class: `code` is the name of a grpc.StatusCode member."""

    code = "INTERNAL"


class InvalidArgument(FaceSearchError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(FaceSearchError):
    code = "FAILED_PRECONDITION"


class NotFound(FaceSearchError):
    code = "NOT_FOUND"


class ResourceExhausted(FaceSearchError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(FaceSearchError):
    code = "UNAVAILABLE"


class ContractMismatch(FailedPrecondition):
    """A snapshot or request made under another embedding contract."""
