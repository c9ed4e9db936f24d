"""The gRPC executor: a master leasing tiles to workers, and the lease bookkeeping.

The stubs ``madrone_pb2*.py`` are generated from ``madrone.proto`` and committed; after
changing the .proto, regenerate them from the repository root with
``python -m grpc_tools.protoc -Isrc --python_out=src --grpc_python_out=src
src/madrone/executors/grpc/madrone.proto`` (a test checks they match).
"""
