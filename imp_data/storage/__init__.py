"""Where a data root lives and how its stages travel: a bucket data root through its local cache, the
per-stage sync table, publishing a built mix (fsspec or the Hub), and the build lock."""
