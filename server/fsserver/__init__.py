"""facesearch's server: a DeepFace model and a Voyager HNSW index behind gRPC."""
