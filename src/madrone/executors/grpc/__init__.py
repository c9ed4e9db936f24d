"""The gRPC executor: a master leasing tiles to workers, and the lease bookkeeping."""
