"""Domain errors that carry the gRPC status they map to, without importing grpc.

Storage, collections and the face pipeline raise these; api/servicer.py turns them into
status codes, and into per-item errors inside an Add stream. (The client's FaceSearchError
is another thing: a failed call, as the client sees it.)
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: `code` names a grpc.StatusCode member, `number` is its value."""

    code, number = "INTERNAL", 13


class InvalidArgument(ServiceError):
    code, number = "INVALID_ARGUMENT", 3


class FailedPrecondition(ServiceError):
    code, number = "FAILED_PRECONDITION", 9


class NotFound(ServiceError):
    code, number = "NOT_FOUND", 5


class AlreadyExists(ServiceError):
    code, number = "ALREADY_EXISTS", 6


class ResourceExhausted(ServiceError):
    code, number = "RESOURCE_EXHAUSTED", 8


class Unavailable(ServiceError):
    code, number = "UNAVAILABLE", 14


class ContractMismatch(FailedPrecondition):
    """A snapshot or request made under another embedding contract."""


class Cancelled(ServiceError):
    """The client cancelled the call or its deadline passed; the work was abandoned."""

    code, number = "CANCELLED", 1
