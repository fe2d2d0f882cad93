"""facesearch's thin Python client: `FaceSearchClient` and the `fsclient` CLI."""

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
