"""The HTTP edge: JSON routes under /v1, CompreFace-compatible routes under /api/v1, the
web page at /. It calls the same catalog and collections as the gRPC edge (api/), in the
same process; nothing here touches protobuf."""
