"""facesearch's thin Python client: `FaceSearchClient` and the `fsclient` CLI."""

import os

# Unless told otherwise, gRPC's C core writes a line to stderr for every failed TLS
# handshake, which would break the CLI's one-line errors; the client reports those failures
# itself (FaceSearchError, with what likely went wrong). ERROR lines still show. It is read
# when grpc is first imported, so it is set here, before fsclient.client imports grpc.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from fsclient.client import FaceSearchClient, FaceSearchError
from fsclient.types import (
    AddItem,
    AddResult,
    BatchResult,
    Box,
    CompactResult,
    Embedding,
    Face,
    FaceMatches,
    Item,
    ItemError,
    Neighbor,
    QueryResult,
    SaveResult,
    Stats,
)

__all__ = [
    "AddItem",
    "AddResult",
    "BatchResult",
    "Box",
    "CompactResult",
    "Embedding",
    "Face",
    "FaceMatches",
    "FaceSearchClient",
    "FaceSearchError",
    "Item",
    "ItemError",
    "Neighbor",
    "QueryResult",
    "SaveResult",
    "Stats",
]
