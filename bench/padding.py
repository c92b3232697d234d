"""Padding waste of stage 2: the share of the LLM positions a GPU computes that are padding, for LLaVA's
modality-length grouped sampler at Imp's batch size (the baseline Imp trains with) and for this project's
batches (the same sampler, each micro-batch packed into one row: imp_data/train/packing.py).

The lengths are those of the `imp_1m` mix: per-source conversations at the real counts (bench/mix_lengths.py
says where each length model comes from), rendered with the phi2 template and tokenised with the training
tokenizer, plus 729 image positions per image sample, truncated at model_max_length (3072) as the encoder
does. The recipe's batch is manifests/runs/imp3b_stage2.yaml's (4 per GPU x 4 accumulation) over Imp's 8
GPUs: a megabatch of 128 samples.

- LLaVA: `get_modality_length_grouped_indices` as LLaVA's trainer calls it (batch 4, world 8 x 4 accum):
  shuffled pure-modality megabatches of 128, each sorted longest first and dealt by `split_to_even_chunks`
  into 32 micro-batches of equal total words; each micro-batch is padded to its longest sample.
- imp-data: `imp_data.train.sampler.sample_order` (the same grouping, strided by rank), packed: a micro-batch
  is one row of exactly its samples' positions. The padded variant (packing off) is shown too.
"Waits" adds what DDP idles: each optimizer step every rank waits for the rank with the most positions.

    python bench/padding.py                     # a 100,000-sample draw of the 1M mix (~1 min on 2 cores)
    python bench/padding.py --samples 0         # all 1,005,345 samples (~10 min)
    python bench/padding.py --tokenizer /models/phi-2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.mix_lengths import sample_records, stage2_parts, text_words  # noqa: E402
from imp_data.train.sampler import modality_lengths, sample_order  # noqa: E402
from imp_data.train.template import IMAGE_TOKEN, render_phi2  # noqa: E402

RECIPE = ROOT / "manifests" / "runs" / "imp3b_stage2.yaml"
NUM_PATCHES = 729  # SigLIP-so400m/14 at 384 px: 27 x 27


def training_tokenizer(path: str | None, texts: list[str], vocab: int):
    """The recipe's tokenizer where it is on disk, else the tiny BPE the harness trains on a mix's texts."""
    from imp_data.train.tokenizer import load_tokenizer, train_tiny_tokenizer

    if path and Path(path).is_dir():
        return load_tokenizer(path), f"{path}"
    tokenizer = train_tiny_tokenizer(texts, vocab)
    tokenizer.model_max_length = 1 << 30  # lengths are counted here, not fed to a model: no length warning
    return tokenizer, (f"tiny byte-level BPE, vocab {vocab}, trained on the sampled texts "
                                                f"(the recipe's {path} is not on this machine)")


def llm_positions(records: list[dict], tokenizer, max_len: int) -> np.ndarray:
    """LLM positions per record as the training encoder counts them: the phi2 conversation's tokens (chunks
    between `<image>` tokenised apart, one placeholder per image) + (NUM_PATCHES - 1) per image, truncated."""
    chunks, owner, images = [], [], np.zeros(len(records), np.int64)
    for i, rec in enumerate(records):
        text = render_phi2(rec["conversations"], rec["image"] is not None)
        parts = text.split(IMAGE_TOKEN) if rec["image"] is not None else [text]
        images[i] = len(parts) - 1
        chunks += parts
        owner += [i] * len(parts)
    encode = tokenizer.backend_tokenizer.encode_batch_fast  # in slices: one huge batch is several times slower
    counts = [len(e.ids) for i in range(0, len(chunks), 2000)
              for e in encode(chunks[i:i + 2000], add_special_tokens=False)]
    tokens = np.bincount(np.array(owner), weights=np.array(counts), minlength=len(records)).astype(np.int64)
    return np.minimum(tokens + images + images * (NUM_PATCHES - 1), max_len)


def check_against_encoder(records: list[dict], tokenizer, positions: np.ndarray, max_len: int) -> None:
    """The fast count above must be the training encoder's (imp_data.train.batching) on the same records."""
    from imp_data.train.batching import make_encode
    from imp_data.train.template import IMAGE_TOKEN_INDEX

    encode = make_encode(tokenizer, "phi2", max_len, NUM_PATCHES)
    for rec, want in zip(records, positions):
        item = encode({"key": rec["key"], "json": rec, "pixel_values": object() if rec["image"] else None})
        ids = item["input_ids"].tolist()
        got = len(ids) + ids.count(IMAGE_TOKEN_INDEX) * (NUM_PATCHES - 1)
        assert got == want, (rec["key"], got, want)


def split_to_even_chunks(indices: list[int], lengths: np.ndarray, num_chunks: int) -> list[list[int]]:
    """LLaVA's `split_to_even_chunks`: deal a sorted megabatch to the chunk with the least total length."""
    if len(indices) % num_chunks:
        return [indices[i::num_chunks] for i in range(num_chunks)]
    per, chunks, totals = len(indices) // num_chunks, [[] for _ in range(num_chunks)], [0.0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per:
            totals[shortest] = float("inf")
    return chunks


def llava_order(lengths: np.ndarray, batch: int, world: int, rng: np.random.Generator) -> list[int]:
    """LLaVA's `get_modality_length_grouped_indices(lengths, batch, world)` (world = GPUs x accumulation)."""
    mega = batch * world

    def grouped(idx: np.ndarray, lens: np.ndarray) -> list[int]:  # get_length_grouped_indices, mapped back
        perm = rng.permutation(len(idx))
        out = []
        for start in range(0, len(perm), mega):
            chunk = sorted(perm[start:start + mega].tolist(), key=lambda i: -lens[i])
            out += [int(idx[i]) for c in split_to_even_chunks(chunk, lens, world) for i in c]
        return out

    mm, lang = np.flatnonzero(lengths > 0), np.flatnonzero(lengths < 0)
    megas = [[o[i:i + mega] for i in range(0, len(o), mega)] or [[]]
             for o in (grouped(mm, lengths[mm]), grouped(lang, -lengths[lang]))]
    full = megas[0][:-1] + megas[1][:-1]  # each modality's last megabatch goes to the end, the two merged
    return [i for j in rng.permutation(len(full)) for i in full[j]] + sorted(megas[0][-1] + megas[1][-1])


def waste(micro: np.ndarray, positions: np.ndarray, packed: bool, ranks: np.ndarray, steps: np.ndarray) -> dict:
    """Padding share of computed positions, and with DDP waits: per optimizer step, every rank computes
    (or idles) as long as the rank with the most positions."""
    lens = positions[micro]  # [micro-batches, batch]
    real = lens.sum(1)
    computed = real if packed else lens.max(1) * lens.shape[1]
    per = np.zeros((steps.max() + 1, ranks.max() + 1))
    np.add.at(per, (steps, ranks), computed)
    waited = (per.max(1) * per.shape[1]).sum()
    return {"padding": 1 - real.sum() / computed.sum(), "with_waits": 1 - real.sum() / waited}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000, help="samples drawn from the mix (0: all of it)")
    ap.add_argument("--tokenizer", help="tokenizer folder (default: the recipe's model.tokenizer if present)")
    ap.add_argument("--vocab", type=int, default=4096, help="tiny BPE vocabulary when no tokenizer is on disk")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs (Imp: 8)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    train = yaml.safe_load(RECIPE.read_text())["train"]
    batch, accum, max_len = train["batch_size"], train["grad_accum"], train["model_max_length"]
    tokenizer_path = args.tokenizer or yaml.safe_load(RECIPE.read_text())["model"]["tokenizer"]

    t = time.perf_counter()
    parts = stage2_parts()
    total = sum(p.count for p in parts)
    records = sample_records(parts, args.samples or None, args.seed)
    drawn = (f"a draw of {len(records):,} of its {total:,} samples, every source in proportion"
             if args.samples else f"all {total:,} samples")
    print(f"imp_1m stage-2 mix: {drawn}, text lengths per source from bench/mix_lengths.py "
          f"(generated in {time.perf_counter() - t:.0f} s)")
    texts = [turn["value"] for rec in records[:5_000] for turn in rec["conversations"]]
    tokenizer, described = training_tokenizer(tokenizer_path, texts, args.vocab)
    t = time.perf_counter()
    positions = llm_positions(records, tokenizer, max_len)
    check_against_encoder(records[:100], tokenizer, positions[:100], max_len)
    words = np.array([text_words(r) for r in records])
    has_image = np.array([r["image"] is not None for r in records])
    n_tokens = sum(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"]))
    per_word = n_tokens / sum(len(x.split()) for x in texts)
    print(f"tokenizer: {described}; {per_word:.2f} tokens/word; tokenised in {time.perf_counter() - t:.0f} s; "
          f"{NUM_PATCHES} positions per image, truncated at {max_len} ({int((positions == max_len).sum()):,} samples)")

    print(f"\n{'source':<16}{'samples':>9}{'mean':>7}{'p5':>6}{'p50':>6}{'p95':>6}{'max':>6}   LLM positions")
    sources = np.array([r["source"] for r in records])
    for source in dict.fromkeys(p.source for p in parts):
        p = positions[sources == source]
        print(f"{source:<16}{len(p):>9,}{p.mean():>7.0f}{np.percentile(p, 5):>6.0f}{np.median(p):>6.0f}"
              f"{np.percentile(p, 95):>6.0f}{p.max():>6}")

    lengths = modality_lengths(words, has_image)  # Imp's: words + 700 per image, minus words for text-only
    world = args.gpus
    rng = np.random.default_rng(args.seed)
    flat = np.array(llava_order(lengths, batch, world * accum, rng))
    flat = flat[: len(flat) // batch * batch].reshape(-1, batch)  # consecutive batches, dealt round-robin
    k = np.arange(len(flat))
    llava = waste(flat, positions, False, k % world, k // (world * accum))
    ours = {}
    per_rank = [sample_order(len(records), seed=args.seed, epoch=0, rank=r, world_size=world, lengths=lengths,
                             megabatch=batch * world * accum) for r in range(world)]
    n_micro = len(per_rank[0]) // batch
    micro = np.concatenate([o[: n_micro * batch].reshape(-1, batch) for o in per_rank])
    j = np.tile(np.arange(n_micro), world)
    for packed in (False, True):
        ours[packed] = waste(micro, positions, packed, np.repeat(np.arange(world), n_micro), j // accum)
    print(f"\nbatches: {batch} per GPU x {accum} accumulation x {world} GPUs (manifests/runs/imp3b_stage2.yaml)")
    print(f"{'':<48}{'padding':>9}{'+ DDP waits':>13}")
    for name, w in (("LLaVA modality-length grouping (padded rows)", llava),
                    ("imp-data sampler, padded rows (packing off)", ours[False]),
                    ("imp-data sampler, packed rows (packing on)", ours[True])):
        print(f"{name:<48}{w['padding']:>9.1%}{w['with_waits']:>13.1%}")
    print(f"padding waste: imp-data {ours[True]['padding']:.1%} vs LLaVA modality-length grouping "
          f"{llava['padding']:.1%}")


if __name__ == "__main__":
    main()
