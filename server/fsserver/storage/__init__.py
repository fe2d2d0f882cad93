"""The index and everything that makes it durable. Nothing here knows about gRPC."""
