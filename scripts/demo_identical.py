"""Compare two demo data roots file by file: the check that a refactor changed no output.

    python scripts/demo_identical.py OLD_ROOT NEW_ROOT

Every file must exist in both and be byte-identical, except what differs between two runs of the *same*
code, which is normalised first (so the check still catches any real change):
- the data root's own path, written into run metadata (`tokenizer`, answer-upload paths);
- wall-clock rates in training logs (`samples_per_s`, `tokens_per_s`, `eta_s`);
- the order of peft's `target_modules` (peft stores a Python set);
- `.imp-data/` (machine-local state: the file-hash cache keyed by inode and mtime, the build lock).
Exit 0 when identical, 1 with a line per difference otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VOLATILE_LOG_KEYS = ("samples_per_s", "tokens_per_s", "eta_s")


def normalised(path: Path, root: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix not in (".json", ".jsonl"):
        return data
    text = data.decode("utf-8").replace(str(root.resolve()), "<ROOT>").replace(str(root), "<ROOT>")
    if path.name == "log.jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        rows = [{k: v for k, v in row.items() if k not in VOLATILE_LOG_KEYS} for row in rows]
        return "\n".join(json.dumps(r, sort_keys=True) for r in rows).encode()
    if path.name == "adapter_config.json":
        config = json.loads(text)
        if isinstance(config.get("target_modules"), list):
            config["target_modules"] = sorted(config["target_modules"])
        return json.dumps(config, sort_keys=True).encode()
    return text.encode()


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != ".imp-data"}


def main(old: Path, new: Path) -> int:
    left, right = files(old), files(new)
    problems = [f"only in {old}: {f}" for f in sorted(left - right)]
    problems += [f"only in {new}: {f}" for f in sorted(right - left)]
    problems += [f"differs: {f}" for f in sorted(left & right)
                 if normalised(old / f, old) != normalised(new / f, new)]
    for line in problems:
        print(line)
    print(f"{len(left & right)} files compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
