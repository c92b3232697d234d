"""Dedup and decontamination policy over a mix's image hashes: which samples go, and which copy stays.

Input is a table of candidate samples — `id`, `source`, `sha256`, `phash` (and `source_id` when known),
e.g. the render results joined to the selection; rows without a phash are text-only and never match.
Output is a removal table in the shape of the mix rejects (`imp_data.core.tables.DROP_COLUMNS`), applied before
the plan, never an edit of earlier outputs.

The design choice: the duplicate graph is built on *cells* — (source, distinct phash) — not on samples.
Samples in one cell are interchangeable for every rule below, so LLaVA's several records per COCO image
cost one node. Edges are the hash index's within-`max_distance` pairs of distinct values, plus sha256
equality (the same bytes are always the same image); connected components (union-find, via scipy's
csgraph) turn chains into one group with one kept sample; every choice is a sort on ids, so the result
does not depend on row order.

Policy (recipe `dedup`):
- `within_source`: only pairs inside one source count; each group keeps its lexicographically smallest id.
- `across_sources`: only pairs from different sources count (the same image in two datasets); the group
  keeps the first sample by (`source_priority` position, source name, id), *all* samples of that
  sample's source stay (LLaVA's several conversations about one image are intended), the other sources'
  samples in the group go.
Every removal names the kept sample (`kept_id`); reason `duplicate_exact` when its bytes equal the kept
sample's, else `duplicate_near` with the phash distance to it (in a chain this can exceed max_distance).

Decontamination (recipe `decontaminate`): every training sample whose image equals (sha256) or is within
max_distance (phash) of a benchmark image is reported, once per benchmark with its closest image
(`contamination.parquet`); with `drop` it is removed (`contaminated:<benchmark>`). It runs before dedup,
so a contaminated sample is never the copy a duplicate group keeps.

Entry points: `find_duplicates`, `find_contamination`, `removals_from_contamination`, and `plan_removals`
(both, in order, from the recipe specs). Benchmark image listing and hashing live with the build step.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from imp_data.core.errors import ImpDataError
from imp_data.core.tables import CONTAMINATION_COLUMNS, DROP_COLUMNS
from imp_data.mix.hashindex import HashIndex, phashes_to_array, popcount64

MODES = ("off", "within_source", "across_sources")


def _frame(table, columns: tuple[str, ...], what: str) -> pl.DataFrame:
    """A polars frame (from polars or pyarrow) with `columns`, or an error naming the missing ones."""
    frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ImpDataError(f"{what} table lacks column(s) {', '.join(missing)} (has {', '.join(frame.columns)})")
    return frame


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return popcount64(np.asarray(a, np.uint64) ^ np.asarray(b, np.uint64)).astype(np.int32)


# ---- dedup --------------------------------------------------------------------------------------


def find_duplicates(table, mode: str = "across_sources", max_distance: int = 4,
                    source_priority: list[str] | tuple[str, ...] = ()) -> pl.DataFrame:
    """Removal rows for duplicate images among `table` under the policy in the module docstring.

    Args:
        table: polars DataFrame or pyarrow Table with id, source, sha256, phash (source_id optional).
        mode: "off", "within_source" or "across_sources".
        max_distance: largest phash Hamming distance that makes two images near duplicates.
        source_priority: sources whose copy is kept first (across_sources); unlisted ones come after.

    Returns:
        One row per removed sample (`DROP_COLUMNS`), sorted by id.

    Example:
        >>> rows = {"id": ["a/1", "b/1"], "source": ["a", "b"], "sha256": ["x", "y"],
        ...         "phash": ["0000000000000000", "0000000000000003"]}
        >>> find_duplicates(pl.DataFrame(rows), "across_sources", 4, ["b"]).select("id", "kept_id", "distance").rows()
        [('a/1', 'b/1', 2)]
    """
    if mode not in MODES:
        raise ValueError(f"unknown dedup mode {mode!r}; valid: {', '.join(MODES)}")
    frame = _frame(table, ("id", "source", "sha256", "phash"), "dedup")
    frame = frame.filter(pl.col("phash").is_not_null()).sort("id")  # order-free from here on
    if mode == "off" or frame.height < 2:
        return pl.DataFrame(schema=DROP_COLUMNS)
    _check_unique_ids(frame, "dedup")
    if "source_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("source_id"))
    index = HashIndex(phashes_to_array(frame["phash"]), max_distance)
    frame = frame.with_columns(pl.Series("vid", index.inverse, pl.Int64))
    cells = (frame.select("source", "vid").unique().sort("source", "vid")
             .with_row_index("cell").with_columns(pl.col("cell").cast(pl.Int64)))
    frame = frame.join(cells, on=["source", "vid"], how="left").sort("id")

    labels = _components(cells, _value_edges(frame, index), mode)
    rank = {s: r for r, s in enumerate(source_priority)}
    frame = frame.with_columns(pl.Series("group", labels[frame["cell"].to_numpy()]),
                               pl.col("source").replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
                               .alias("rank"))
    kept = (frame.sort("group", "rank", "source", "id").unique("group", keep="first", maintain_order=True)
            .select("group", pl.col("id").alias("kept_id"), pl.col("source").alias("kept_source"),
                    pl.col("sha256").alias("kept_sha"), pl.col("vid").alias("kept_vid")))
    frame = frame.join(kept, on="group", how="left")
    # within one source a group keeps one sample; across sources the kept sample's source keeps all of its own
    gone = frame.filter(pl.col("id") != pl.col("kept_id") if mode == "within_source"
                        else pl.col("source") != pl.col("kept_source"))
    dist = _hamming(index.values[gone["vid"].to_numpy()], index.values[gone["kept_vid"].to_numpy()])
    exact = (pl.col("sha256") == pl.col("kept_sha")).fill_null(False)
    return (gone.with_columns(pl.Series("phash_distance", dist, pl.Int32))
            .select("id", "source", "source_id", pl.lit("dedup").alias("stage"),
                    pl.when(exact).then(pl.lit("duplicate_exact")).otherwise(pl.lit("duplicate_near")).alias("reason"),
                    pl.when(exact).then(pl.lit("same image as ") + pl.col("kept_id"))
                    .otherwise(pl.format("near copy of {} (phash distance {})", "kept_id", "phash_distance"))
                    .alias("detail"),
                    "kept_id", pl.when(exact).then(0).otherwise(pl.col("phash_distance")).cast(pl.Int32)
                    .alias("distance"))
            .cast(DROP_COLUMNS).sort("id"))


def _check_unique_ids(frame: pl.DataFrame, what: str) -> None:
    repeated = frame.filter(pl.col("id").is_duplicated())["id"]
    if repeated.len():
        raise ImpDataError(f"{what}: sample id {repeated[0]!r} appears {repeated.len()} times — ids must be "
                           "unique within a mix (the adapter disambiguates repeats with #n)")


def _value_edges(frame: pl.DataFrame, index: HashIndex) -> pl.DataFrame:
    """Pairs (u, v) of distinct phash values that are duplicates: within distance, or sharing a sha256."""
    u, v, _ = index.value_pairs()
    same_bytes = (frame.filter(pl.col("sha256").is_not_null()).group_by("sha256")
                  .agg(pl.col("vid").min().alias("u"), pl.col("vid").unique().alias("v"))
                  .explode("v").filter(pl.col("u") != pl.col("v")).select("u", "v"))
    return pl.concat([pl.DataFrame({"u": u, "v": v}, schema={"u": pl.Int64, "v": pl.Int64}),
                      same_bytes.cast(pl.Int64)])


def _components(cells: pl.DataFrame, value_edges: pl.DataFrame, mode: str) -> np.ndarray:
    """Group label per cell: connected components of the cell graph the mode allows."""
    left = cells.rename({"vid": "u", "cell": "cu", "source": "su"})
    right = cells.rename({"vid": "v", "cell": "cv", "source": "sv"})
    edges = value_edges.join(left, on="u").join(right, on="v")
    if mode == "within_source":
        edges = edges.filter(pl.col("su") == pl.col("sv")).select("cu", "cv")
    else:
        # cells with the same value are different sources by construction: link each to its value's first cell
        star = (cells.group_by("vid").agg(pl.col("cell").min().alias("cu"), pl.col("cell").alias("cv"))
                .explode("cv").filter(pl.col("cu") != pl.col("cv")).select("cu", "cv"))
        edges = pl.concat([edges.filter(pl.col("su") != pl.col("sv")).select("cu", "cv"), star])
    n = cells.height
    graph = coo_matrix((np.ones(edges.height, np.int8), (edges["cu"].to_numpy(), edges["cv"].to_numpy())),
                       shape=(n, n))
    return connected_components(graph, directed=False)[1]


# ---- decontamination ----------------------------------------------------------------------------


def find_contamination(train, bench, max_distance: int = 4) -> pl.DataFrame:
    """Training samples whose image is a benchmark image: same sha256, or phash within `max_distance`.

    One row per (training sample, benchmark), naming that benchmark's closest image (exact first, then
    smallest distance, then image name): the report stays one line per finding even when a blank image
    matches thousands of blank benchmark images, and the work stays on distinct hashes.

    Args:
        train: table with id, source, sha256, phash (rows without hashes are skipped).
        bench: table with benchmark, image_name, sha256, phash.
        max_distance: largest phash Hamming distance that counts as the same image.

    Returns:
        `CONTAMINATION_COLUMNS` rows sorted by (id, benchmark); match "exact" (distance 0) for equal bytes.

    Example:
        >>> t = pl.DataFrame({"id": ["a/1"], "source": ["a"], "sha256": ["x"], "phash": ["00000000000000ff"]})
        >>> b = pl.DataFrame({"benchmark": ["pope"], "image_name": ["v.jpg"], "sha256": ["y"],
        ...                   "phash": ["00000000000000fe"]})
        >>> find_contamination(t, b, 4).select("id", "benchmark", "distance", "match").rows()
        [('a/1', 'pope', 1, 'near')]
    """
    train = _frame(train, ("id", "source", "sha256", "phash"), "training").select("id", "source", "sha256", "phash")
    bench = _frame(bench, ("benchmark", "image_name", "sha256", "phash"), "benchmark").select(
        "benchmark", "image_name", "sha256", "phash")
    by_bytes = (bench.filter(pl.col("sha256").is_not_null()).group_by("sha256", "benchmark")
                .agg(pl.col("image_name").min()))
    exact = (train.filter(pl.col("sha256").is_not_null()).join(by_bytes, on="sha256")
             .select("id", "source", "benchmark", "image_name", pl.lit(0, pl.Int32).alias("distance"),
                     pl.lit("exact").alias("match")))
    # near: distinct training hashes x distinct benchmark hashes, then the closest image per benchmark
    t, b = train.filter(pl.col("phash").is_not_null()), bench.filter(pl.col("phash").is_not_null())
    t_index = HashIndex(phashes_to_array(t["phash"]), max_distance)
    b_index = HashIndex(phashes_to_array(b["phash"]), max_distance)
    tv, bv, dist = b_index.pairs_with(t_index)
    named = (b.with_columns(pl.Series("bv", b_index.inverse, pl.Int64)).group_by("bv", "benchmark")
             .agg(pl.col("image_name").min()))
    closest = (pl.DataFrame({"tv": tv, "bv": bv, "distance": dist}, schema={"tv": pl.Int64, "bv": pl.Int64,
                                                                          "distance": pl.Int32})
               .join(named, on="bv").sort("tv", "benchmark", "distance", "image_name")
               .unique(["tv", "benchmark"], keep="first", maintain_order=True))
    near = (t.with_columns(pl.Series("tv", t_index.inverse, pl.Int64)).join(closest, on="tv")
            .select("id", "source", "benchmark", "image_name", "distance", pl.lit("near").alias("match")))
    return (pl.concat([exact, near]).sort("id", "benchmark", "match", "distance", "image_name")
            .unique(["id", "benchmark"], keep="first", maintain_order=True).cast(CONTAMINATION_COLUMNS))


def removals_from_contamination(contamination: pl.DataFrame, train) -> pl.DataFrame:
    """One removal row per contaminated sample, naming its closest benchmark image (exact first, then
    smallest distance, then benchmark name).

    `kept_id` stays null: nothing in the mix is kept instead; the benchmark image is in `detail`.
    """
    train = _frame(train, ("id",), "training")
    source_id = train.select("id", "source_id") if "source_id" in train.columns else train.select(
        "id", pl.lit(None, pl.String).alias("source_id"))
    first = (contamination.sort("id", "match", "distance", "benchmark")
             .unique("id", keep="first", maintain_order=True).join(source_id, on="id", how="left"))
    return (first.select("id", "source", "source_id", pl.lit("decontaminate").alias("stage"),
                         (pl.lit("contaminated:") + pl.col("benchmark")).alias("reason"),
                         pl.format("{} match of {} image {} (phash distance {})", "match", "benchmark", "image_name",
                                   "distance").alias("detail"),
                         pl.lit(None, pl.String).alias("kept_id"), "distance")
            .cast(DROP_COLUMNS).sort("id"))


# ---- both, in order -----------------------------------------------------------------------------


def plan_removals(table, bench, dedup, decontaminate) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decontamination then dedup of what is left: (removal table, contamination report).

    Args:
        table: the mix's candidate samples (id, source, source_id, sha256, phash).
        bench: benchmark image hashes (benchmark, image_name, sha256, phash), or None.
        dedup: the recipe's `DedupSpec` (mode, max_distance, source_priority).
        decontaminate: the recipe's `DecontamSpec` (benchmarks, max_distance, drop).
    """
    frame = _frame(table, ("id", "source", "sha256", "phash"), "dedup")
    contamination = pl.DataFrame(schema=CONTAMINATION_COLUMNS)
    removed = [pl.DataFrame(schema=DROP_COLUMNS)]
    if bench is not None and decontaminate.benchmarks:
        contamination = find_contamination(frame, bench, decontaminate.max_distance)
        if decontaminate.drop and contamination.height:
            removed.append(removals_from_contamination(contamination, frame))
            frame = frame.filter(~pl.col("id").is_in(removed[-1]["id"].implode()))
    removed.append(find_duplicates(frame, dedup.mode, dedup.max_distance, dedup.source_priority))
    return pl.concat(removed).sort("id"), contamination
