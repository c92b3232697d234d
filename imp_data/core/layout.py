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

    def mixes(self) -> Path:
        return self.root / "mixes"

    def mix(self, mix: str) -> Path:
        """A mix's folder, to write into: it must stay under mixes/ (no symlink leading out)."""
        return contained(self.mixes(), name_part(mix, "mix"))

    def mix_to_read(self, mix: str) -> Path:
        """A mix's folder, to read (training): it may be a symlink to a mix built elsewhere."""
        return self.mixes() / name_part(mix, "mix")

    def mix_files(self, mix: str) -> MixDir:
        return MixDir(self.mix(mix))

    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, name: str) -> Path:
        """A training run's folder (`imp-data train`): checkpoints, log, eval answers and metrics."""
        return contained(self.runs(), name_part(name, "run"))

    def run_eval(self, name: str) -> Path:
        """What `imp-data eval` wrote for a run: answers, uploads, metrics.json and metrics.md."""
        return self.run(name) / "eval"

    def benchmarks(self) -> Path:
        """The benchmarks laid out as LLaVA's playground/data/eval/<name> (the eval job reads them)."""
        return self.root / "eval"

    # one method per file of a mix, kept for the stages' brevity: each is MixDir's
    def selected(self, mix: str) -> Path:
        return self.mix_files(mix).selected

    def drops(self, mix: str) -> Path:
        return self.mix_files(mix).drops

    def reserve(self, mix: str) -> Path:
        return self.mix_files(mix).reserve

    def fill(self, mix: str) -> Path:
        return self.mix_files(mix).fill

    def render_dir(self, mix: str) -> Path:
        return self.mix_files(mix).render_dir

    def renders(self, mix: str) -> Path:
        return self.mix_files(mix).renders

    def removals(self, mix: str) -> Path:
        return self.mix_files(mix).removals

    def plan(self, mix: str) -> Path:
        return self.mix_files(mix).plan

    def shards_dir(self, mix: str) -> Path:
        return self.mix_files(mix).shards

    def index_parts(self, mix: str) -> Path:
        return self.mix_files(mix).index_parts

    def index(self, mix: str) -> Path:
        return self.mix_files(mix).index

    def wids(self, mix: str) -> Path:
        return self.mix_files(mix).wids

    def rejects(self, mix: str) -> Path:
        return self.mix_files(mix).rejects

    def stats(self, mix: str) -> Path:
        return self.mix_files(mix).stats

    def report(self, mix: str) -> Path:
        return self.mix_files(mix).report

    def contamination(self, mix: str) -> Path:
        return self.mix_files(mix).contamination

    def stamp(self, unit: str) -> Path:
        """What a unit of work was made from (imp_data.core.fingerprint): `stamps/<unit>.json`, e.g.
        `stamps/normalized/llava_665k.json`, `stamps/mixes/demo_stage2/plan.json`."""
        return contained(self.root / "stamps", f"{unit}.json")

    def state(self) -> Path:
        """Machine-local state, never an output: the file-hash cache and the build lock."""
        return self.root / ".imp-data"

    def file_hashes(self) -> Path:
        return self.state() / "filehashes.sqlite"


# ---- stamp and sync units: a unit of work's name is its folder under the data root (and the bucket)

def raw_unit(source: str) -> str:
    return f"raw/{source}"


def normalized_unit(source: str) -> str:
    return f"normalized/{source}"


def mix_unit(mix: str, what: str) -> str:
    return f"mixes/{mix}/{what}"


def benchmark_unit(name: str) -> str:
    return f"raw/benchmarks/{name}"


def shard_unit(mix: str, shard: int) -> str:
    return f"mixes/{mix}/shards/{shard:06d}"


def shard_name(mix: str, shard: int) -> str:
    """`<mix>-000000.tar`.

    Example:
        >>> shard_name("demo", 3)
        'demo-000003.tar'
    """
    return f"{mix}-{shard:06d}.tar"


@dataclass(frozen=True)
class MixDir:
    """The files of one built mix, wherever its folder lies: `DATA/mixes/<mix>`, a copy, a bucket's cache.
    Readers that get a mix folder rather than a data root (validate, publish, training) name files here."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def selected(self) -> Path:
        return self.path / "selected.parquet"

    @property
    def drops(self) -> Path:
        return self.path / "drops.parquet"

    @property
    def reserve(self) -> Path:
        """Samples past each source's take-N, in the seeded order: replacements (imp_data.mix.fill)."""
        return self.path / "reserve.parquet"

    @property
    def fill(self) -> Path:
        """The reserve samples the fill loop brought in for samples lost after selection."""
        return self.path / "fill.parquet"

    @property
    def render_dir(self) -> Path:
        return self.path / "render"

    @property
    def renders(self) -> Path:
        return self.path / "renders.parquet"

    @property
    def removals(self) -> Path:
        return self.path / "removals.parquet"

    @property
    def contamination(self) -> Path:
        return self.path / "contamination.parquet"

    @property
    def plan(self) -> Path:
        return self.path / "plan.parquet"

    @property
    def shards(self) -> Path:
        return self.path / "shards"

    def shard(self, shard: int, mix: str | None = None) -> Path:
        """Shard `shard`'s tar (named after `mix`, by default this folder's name)."""
        return self.shards / shard_name(mix or self.name, shard)

    def shard_tars(self) -> list[Path]:
        return sorted(self.shards.glob("*.tar"))

    @property
    def index_parts(self) -> Path:
        return self.shards / ".parts"

    def index_part(self, shard: int) -> Path:
        """One shard's rows of the index, written with the shard (its fingerprint says what it holds)."""
        return self.index_parts / f"{shard:06d}.parquet"

    @property
    def index(self) -> Path:
        return self.path / "index.parquet"

    @property
    def wids(self) -> Path:
        return self.shards / "index.wids.json"

    @property
    def rejects(self) -> Path:
        return self.path / "rejects.parquet"

    @property
    def stats(self) -> Path:
        return self.path / "stats.json"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def card(self) -> Path:
        """The dataset card (a Hugging Face dataset README)."""
        return self.path / "README.md"

    @property
    def charts(self) -> Path:
        return self.path / "charts"

    def chart_files(self) -> list[Path]:
        return sorted(self.charts.glob("*.png"))

    def published_files(self) -> list[Path]:
        """What publishing a built mix uploads: its tables, report, card, charts, shards and wids index."""
        files = [p for p in (self.index, self.rejects, self.stats, self.report, self.card, self.plan) if p.is_file()]
        return files + self.chart_files() + self.shard_tars() + [self.wids]
