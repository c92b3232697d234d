"""Dedup index benchmark: build + self-query time and peak memory for 100K, 300K and 1M synthetic 64-bit
hashes with planted near duplicates (distance 0..d+2), and recall against brute force on a 20K subset.
Each size runs in a fresh process so its peak RSS is its own. Target: 1M in <= 60 s and <= 2 GiB.

    python bench/dedup.py [--d 4] [--sizes 100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imp_data.mix.dedup import HashIndex, brute_force_pairs  # noqa: E402


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) << np.uint64(1)
    planted = n // 100  # 1% of the corpus is a near copy of another image
    src, dst = rng.choice(n, size=planted), rng.choice(n, size=planted)
    flips = rng.integers(0, d + 3, size=planted)
    for a, b, k in zip(src, dst, flips):
        value = int(hashes[a])
        for bit in rng.choice(64, size=int(k), replace=False):
            value ^= 1 << int(bit)
        hashes[b] = value
    return hashes


def run_size(n: int, d: int) -> dict:
    hashes = synthetic(n, d)
    t0 = time.perf_counter()
    i, j, _ = HashIndex(hashes, d).self_pairs()
    seconds = time.perf_counter() - t0
    return {"n": n, "seconds": round(seconds, 2), "pairs": int(len(i)),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--child", type=int)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_size(args.child, args.d)))
        return
    sub = synthetic(20_000, args.d, seed=1)
    t0 = time.perf_counter()
    i, j, _ = HashIndex(sub, args.d).self_pairs()
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = brute_force_pairs(sub, args.d)
    t_brute = time.perf_counter() - t0
    found = set(zip(i.tolist(), j.tolist()))
    print(f"recall on 20K vs brute force: {len(found & truth)}/{len(truth)} = {len(found & truth) / max(1, len(truth)):.2%}, "
          f"false positives {len(found - truth)}; index {t_index:.2f}s vs brute force {t_brute:.1f}s "
          f"({t_brute / t_index:.0f}x)")
    print(f"{'hashes':>10}{'seconds':>10}{'pairs':>10}{'peak RSS MiB':>14}")
    prev = None
    for n in (int(x) for x in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--d", str(args.d)], capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        growth = f"  (x{r['seconds'] / prev[1]:.1f} time for x{n / prev[0]:.1f} hashes)" if prev else ""
        print(f"{n:>10}{r['seconds']:>10}{r['pairs']:>10}{r['peak_rss_mib']:>14}{growth}")
        prev = (n, r["seconds"])


if __name__ == "__main__":
    main()
