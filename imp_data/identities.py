"""What a build's outside inputs are, by content: a published source and a decontamination benchmark set.

A local folder or archive is identified by the content hashes of its files (through the stat-keyed
`FileHashes` cache, so an unchanged tree costs a stat per file); a location elsewhere (a Hub repo at a
pinned revision, a URL) by its spelling. Identities never hold machine paths, so two machines with the
same inputs agree.
"""

from __future__ import annotations

from pathlib import Path

from imp_data.core.context import BuildContext
from imp_data.core.fingerprint import tree_identity
from imp_data.core.locations import local_location, under_root


def published_identity(ctx: BuildContext, source: str) -> str:
    """What a source is where it is published, without fetching it: the content of a local folder's
    annotation files and image roots, else the location (a Hub repo at a pinned revision, a URL). Dagster's
    `published/<source>` observation: an edited file makes the source stale."""
    import glob

    from imp_data.core.fingerprint import digest
    from imp_data.sources.base import resolve_files
    from imp_data.sources.registry import get_adapter

    spec = ctx.source(source)
    out: dict = {"location": spec.location, "images": []}
    if ctx.remote is not None:  # folders placed in the bucket: their object listing, not a download
        for location in [spec.location, *(r.location for r in spec.images)]:
            if under_root(location):
                listed = ctx.remote.fs.find(ctx.remote.key(location), detail=True)
                out["images"].append(sorted([k.rsplit(location, 1)[-1], v.get("size"), v.get("ETag")]
                                            for k, v in listed.items()))
        return digest(out)
    local = local_location(spec.location, ctx.data_root)
    if local is not None:
        paths = resolve_files(local, spec.files or get_adapter(spec.adapter).default_files)
        out["files"] = {p.relative_to(local).as_posix(): ctx.hashes.sha256(p) for p in paths}
    for root in spec.images:
        where = local_location(root.location, ctx.data_root)
        if where is None:
            out["images"].append(root.location)
        elif any(c in root.location for c in "*?["):
            out["images"].append([tree_identity(Path(p), ctx.hashes) for p in sorted(glob.glob(str(where)))])
        else:
            out["images"].append(tree_identity(where, ctx.hashes) if where.exists() else ["missing", root.location])
    return digest(out)


def benchmark_identities(ctx: BuildContext, mix: str) -> dict:
    """What the decontamination benchmarks are: the content of a local folder / archive(s), else the
    location itself (a pinned Hub revision or URL, fetched once)."""
    import glob

    out = {}
    for name, location in sorted(ctx.recipe.mixes[mix].decontaminate.benchmarks.items()):
        local = local_location(location, ctx.data_root)
        if local is not None and ctx.remote is not None and under_root(location):
            ctx.remote.pull_tree(location)  # a folder placed in the bucket: its content is the identity
        if local is None:
            out[name] = location
        elif any(c in str(local) for c in "*?["):
            out[name] = [tree_identity(Path(p), ctx.hashes) for p in sorted(glob.glob(str(local)))]
        elif local.exists():
            out[name] = tree_identity(local, ctx.hashes)
        else:
            out[name] = ["missing", location]  # never a machine path: stamps are the same everywhere
    return out
