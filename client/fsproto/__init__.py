"""Generated protobuf and gRPC stubs for protos/facesearch/v1 (`make proto`): the one package the client and the server both import."""
