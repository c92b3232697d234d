"""Fetching: make every source available locally, from wherever it is really published.

One role per module:
    locations.py       recipe location strings (hf://, https://, local) -> a local path; the entry point
    marker.py          completion markers, written last: a rerun of a complete fetch touches no network
    hub.py             Hugging Face Hub repos through the real huggingface_hub client, resumable
    download.py        one large file over HTTP(S), resumed across runs with Range + If-Range
    transport.py       HTTP plumbing shared by the two downloaders (pool, redirects, backoff, error names)
    http.py            URL-only images (LAION-GPT-V): bounded, polite, one status row per URL
    downloads_table.py that status table (downloads.parquet) and its summary for the stats report
    archives.py        images inside zip/tar archives, read in place
    image_store.py     a record's image path -> bytes, across a source's image roots

Nothing is imported here, so `import imp_data.fetch.archives` in a render worker does not pull in an
HTTP client.
"""
