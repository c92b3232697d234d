"""Publishing a built mix: to object storage (any fsspec URL) or to a Hugging Face dataset repo, and
streaming it back (shard URLs for webdataset)."""
