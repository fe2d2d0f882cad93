"""The Ray backend: the index split over Ray shard actors (imports Ray; optional extra)."""
