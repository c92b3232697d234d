"""Where every output of a build lives under the data root (docs/design.md §4): the one place that spells paths.

Source and mix names come from a recipe; each folder or file named after one is checked to stay under
its layout folder (`imp_data.core.paths.contained`), so a name can never place a build's output elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imp_data.core.paths import contained, name_part


@dataclass(frozen=True)
class Layout:
    """Where every output of a build lives under the data root."""

    root: Path

    def raw(self, source: str) -> Path:
        return contained(self.root / "raw", name_part(source, "source"))

    def normalized(self, source: str) -> Path:
        return contained(self.root / "normalized", f"{name_part(source, 'source')}.parquet")

    def source_counts(self, source: str) -> Path:
        """read / normalized / rejected-by-reason of the last normalize (imp_data.normalize writes it)."""
        return self.normalized(source).with_suffix(".counts.json")

    def source_rejects(self, source: str) -> Path:
        return contained(self.root / "rejects", f"{name_part(source, 'source')}.parquet")

    def mix(self, mix: str) -> Path:
        return contained(self.root / "mixes", name_part(mix, "mix"))

    def selected(self, mix: str) -> Path:
        return self.mix(mix) / "selected.parquet"

    def drops(self, mix: str) -> Path:
        return self.mix(mix) / "drops.parquet"

    def reserve(self, mix: str) -> Path:
        """Samples past each source's take-N, in the seeded order: replacements (imp_data.mix.fill)."""
        return self.mix(mix) / "reserve.parquet"

    def fill(self, mix: str) -> Path:
        """The reserve samples the fill loop brought in for samples lost after selection."""
        return self.mix(mix) / "fill.parquet"

    def render_dir(self, mix: str) -> Path:
        return self.mix(mix) / "render"

    def renders(self, mix: str) -> Path:
        return self.mix(mix) / "renders.parquet"

    def removals(self, mix: str) -> Path:
        return self.mix(mix) / "removals.parquet"

    def plan(self, mix: str) -> Path:
        return self.mix(mix) / "plan.parquet"

    def shards_dir(self, mix: str) -> Path:
        return self.mix(mix) / "shards"

    def index_parts(self, mix: str) -> Path:
        return self.shards_dir(mix) / ".parts"

    def index(self, mix: str) -> Path:
        return self.mix(mix) / "index.parquet"

    def wids(self, mix: str) -> Path:
        return self.shards_dir(mix) / "index.wids.json"

    def rejects(self, mix: str) -> Path:
        return self.mix(mix) / "rejects.parquet"

    def stats(self, mix: str) -> Path:
        return self.mix(mix) / "stats.json"

    def report(self, mix: str) -> Path:
        return self.mix(mix) / "report.md"

    def contamination(self, mix: str) -> Path:
        return self.mix(mix) / "contamination.parquet"

    def stamp(self, unit: str) -> Path:
        """What a unit of work was made from (imp_data.core.fingerprint): `stamps/<unit>.json`, e.g.
        `stamps/normalized/llava_665k.json`, `stamps/mixes/demo_stage2/plan.json`."""
        return contained(self.root / "stamps", f"{unit}.json")

    def state(self) -> Path:
        """Machine-local state, never an output: the file-hash cache and the build lock."""
        return self.root / ".imp-data"

    def file_hashes(self) -> Path:
        return self.state() / "filehashes.sqlite"
