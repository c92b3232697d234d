"""`imp-data`: the command line. Each command is a thin call into the library (the same functions the
Dagster assets call). Every failure is one line on stderr and exit 1: an `ImpDataError` as written, a
full disk or read-only output as the path and what to do, anything else as its type and message with a
hint; `--debug` adds the traceback."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from imp_data.cli_errors import error_line
from imp_data.core.errors import ImpDataError
from imp_data.core.stages import STAGE_NAMES


def _print_reconciliation(rows: list[dict]) -> None:
    if not rows:
        return
    print(f"{'mix':<14} {'source':<16} {'read':>8} {'rejected':>9} {'normalized':>11} {'dropped (rule)':<28} "
          f"{'available':>9}  ok")
    for r in rows:
        dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "-"
        print(f"{r['mix']:<14} {r['source']:<16} {r['read']:>8} {r['rejected']:>9} {r['normalized']:>11} "
              f"{dropped:<28} {r['available']:>9}  {'yes' if r['balanced'] else 'NO'}")


def _print_reuse(reuse: list[dict]) -> None:
    """A line per stage and subject: what this build redid and what it reused unchanged."""
    if not reuse:
        return
    print(f"{'stage':<10} {'of':<18} {'redone':>7} {'reused':>7}")
    for r in reuse:
        print(f"{r['stage']:<10} {r['subject']:<18} {r['redone']:>7} {r['reused']:>7}  {r['unit']}")


def _output_folder(path: str | Path, what: str) -> Path:
    """`path` as a folder to write into: refused in one line when it, or the nearest existing folder above
    it, is a file."""
    path = Path(path)
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                problem = "exists and is not a folder" if existing == path else f"{existing} is a file, not a folder"
                raise ImpDataError(f"{path}: {problem} — choose a folder (or a new path) for the {what}")
            break
    return path


def policy_violations(ctx, mix: str) -> list[str]:
    """The recipe's blocking policies (reject rate, decontamination limit), measured by the same functions
    the Dagster checks call; one line per violation."""
    from imp_data.audit.quality import contamination_left, reject_rate

    if ctx.remote is not None:  # the checks read the mix's tables, as Dagster's do after pulling them
        from imp_data.storage.sync import pull_mix_tables

        pull_mix_tables(ctx, mix)
    lines, report = [], ctx.layout.report(mix)
    r = reject_rate(ctx, mix)
    if not r["ok"]:
        lines.append(f"mix {mix}: reject rate {r['rate']:.2%} ({r['rejected']} of {r['read']} records) exceeds "
                     f"max_reject_rate {r['limit']:.2%} — see {report}")
    c = contamination_left(ctx, mix)
    if not c["ok"]:
        lines.append(f"mix {mix}: " + (c.get("problem") or (
            f"{c['left']} benchmark-matching samples remain, more than the decontamination limit {c['limit']} "
            f"(policy {c['policy']}) — see {report}")))
    return lines


def cmd_build(args: argparse.Namespace) -> int:
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.io import remove_stale_temps
    from imp_data.core.recipe import load_recipe
    from imp_data.storage.buildlock import BUILD_DIRS, hold_build_lock
    from imp_data.storage.dataroot import open_data_root

    recipe = load_recipe(args.recipe)
    for mix in args.mix or []:
        if mix not in recipe.mixes:
            raise ImpDataError(f"--mix {mix!r}: {args.recipe} has no such mix; its mixes: {', '.join(recipe.mixes)}")
    local, remote = open_data_root(args.data_root, args.cache)
    ctx = BuildContext(recipe=recipe, data_root=local, workers=args.workers, progress=not args.quiet, remote=remote)
    if remote is not None:
        print(f"data root {remote.url} (working in {local})")
    sources = [s for s in args.sources.split(",") if s] if args.sources else None
    with hold_build_lock(local):  # one build per data root (a remote root: per cache, i.e. per machine)
        stale = sum(remove_stale_temps(local / d) for d in BUILD_DIRS)  # left by a killed build
        if stale:
            print(f"removed {stale} temp file(s) left by an interrupted build")
        result = build(ctx, sources=sources, until=args.until, mixes=args.mix or None)
    _print_reuse(ctx.reuse)
    _print_reconciliation(result["rows"])
    for mix, stats in result["mixes"].items():
        t = stats["totals"]
        print(f"mix {mix}: {t['taken']} samples in {t['shards']} shards -> {ctx.layout.mix(mix)}  "
              f"(rejected {t['rejected']}, dropped {t['dropped']}; report: {ctx.layout.report(mix)})")
    violations = [line for mix in result["mixes"] for line in policy_violations(ctx, mix)]
    for line in violations:
        print(f"imp-data build: error: {line}", file=sys.stderr)
    return 0 if all(r["balanced"] for r in result["rows"]) and not violations else 1


def cmd_fixtures(args: argparse.Namespace) -> int:
    from imp_data.fixtures import write_mirror

    summary = write_mirror(_output_folder(args.out_dir, "fixture mirror"), scale=args.scale, seed=args.seed)
    print(f"fixture mirror written to {args.out_dir}: {summary}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from imp_data.audit.validate import validate_paths

    problems = validate_paths([Path(p) for p in args.paths], max_report=args.max_errors)
    for p in problems:
        print(p)
    print(f"{len(args.paths)} path(s) checked: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def terminal_table(markdown: str) -> str:
    """A markdown table of `imp_data.audit.report` as aligned columns for a terminal: the same rows, without pipes
    or emphasis, right-aligned where the markdown says `---:`. Text that is no table passes unchanged."""
    lines = markdown.splitlines()
    if len(lines) < 2 or not lines[0].startswith("|") or set(lines[1]) - set("|-: "):
        return markdown.strip("_")
    header, rule, *body = ([c.strip().strip("*`") for c in line.strip().strip("|").split("|")] for line in lines)
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    right = [cell.endswith(":") for cell in rule]

    def row(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()
    return "\n".join([row(header), "  ".join("-" * w for w in widths), *map(row, body)])


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from imp_data.audit.report import reasons_table, source_table
    from imp_data.audit.stats import load_stats

    stats = load_stats(Path(args.mix_dir))
    if args.json:  # stats.json as written by the build, for scripts
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0
    table = (lambda markdown: markdown) if args.markdown else terminal_table
    print(f"mix {stats['mix']} (stage {stats['stage']}): {stats['totals']['taken']} samples\n")
    print(table(source_table(stats)))
    print("\nrejected or dropped, by reason:")
    print(table(reasons_table(stats)))
    return 0


def cmd_export_llava(args: argparse.Namespace) -> int:
    from imp_data.shards.export import export_llava

    out = export_llava(Path(args.mix_dir), _output_folder(args.out_dir, "export"))
    print(f"wrote {out}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    import fsspec

    from imp_data.publish.remote import publish_mix

    if args.url.startswith("hf://"):  # the Hub's commit API, not its fsspec file system (a commit per file)
        from imp_data.publish.hub import publish_to_hub

        counts = publish_to_hub(Path(args.mix_dir), args.url, private=args.private or None,
                                files_per_commit=args.files_per_commit, say=print)
        print(f"published {args.mix_dir} -> {args.url}: {counts['uploaded']} uploaded, {counts['skipped']} unchanged, "
              f"{counts['deleted']} removed in {counts['commits']} commit(s)")
        return 0
    fs, target = fsspec.core.url_to_fs(args.url.rstrip("/"))
    if "file" in fs.protocol or "local" in fs.protocol:
        _output_folder(target, "published mix")
    elif fs.isfile(target):
        raise ImpDataError(f"{args.url}: exists and is not a folder — choose a new prefix for the published mix")
    counts = publish_mix(Path(args.mix_dir), args.url)
    print(f"published {args.mix_dir} -> {args.url}: {counts['uploaded']} uploaded, {counts['skipped']} unchanged")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from imp_data.schema_export import write_schemas

    for path in write_schemas(_output_folder(args.out_dir, "schemas")):
        print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from imp_data.train.loop import train

    overrides = [*(args.set or []), *(["train.trust_shards=true"] if args.trust_shards else [])]
    data_root = args.data_root
    if data_root is not None:  # a path or file:// URL as it is; a bucket: pulled into its cache first
        from imp_data.storage.sync import local_data_root_for_training
        from imp_data.train.config import load_run

        data_root = local_data_root_for_training(data_root, args.cache, load_run(Path(args.run), overrides).mix)
    out = train(Path(args.run), resume=args.resume, overrides=overrides, data_root=data_root)
    print(f"run written to {out}")
    return 0


def _name_ints(pairs: list[str] | None, flag: str) -> dict[str, int]:
    out = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"{flag} {pair!r}: expected NAME=INTEGER, e.g. mmbench=64") from None
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    from imp_data.eval.job import evaluate_run

    out = evaluate_run(Path(args.run), data_root=args.data_root, overrides=args.set or [],
                       benchmarks_root=args.benchmarks_root, max_new_tokens=args.max_new_tokens,
                       max_new_tokens_for=_name_ints(args.max_new_tokens_for, "--max-new-tokens-for"),
                       only=[n for n in args.only.split(",") if n] if args.only else None)
    print(f"metrics written to {out} (table: {out.with_name('metrics.md')})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from imp_data.demo import run_demo

    run_demo(Path(args.data_root).resolve(), workers=args.workers, skip_train=args.skip_train)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imp-data")
    except PackageNotFoundError:  # a source tree that was never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imp-data",
        description="Build the Imp training mixes reproducibly (fetch -> normalize -> select -> render -> "
        "shards -> report), train on them, and evaluate. Outputs follow docs/design.md §4 under the data root.",
    )
    p.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                   help="print the installed imp-data version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="one of these; `imp-data COMMAND --help` for its arguments")

    s = sub.add_parser("fixtures", help="write a small mirror of every source in its native published layout")
    s.add_argument("out_dir", help="where to write the mirror (e.g. DATA/mirror)")
    s.add_argument("--scale", type=int, default=1, help="multiply record counts (default 1)")
    s.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    s.set_defaults(func=cmd_fixtures)

    s = sub.add_parser("build", help="fetch -> normalize -> plan -> shards -> report for a recipe")
    s.add_argument("recipe", help="recipe YAML (manifests/*.yaml)")
    s.add_argument("--data-root", default=os.environ.get("IMP_DATA_ROOT", "data"),
                   help="root of raw/, normalized/, mixes/ (default $IMP_DATA_ROOT or ./data): a directory, or an "
                   "fsspec URL such as s3://bucket/imp (credentials from the environment) whose stages run in --cache")
    s.add_argument("--cache", default=None,
                   help="local working copy of a URL data root (default $IMP_DATA_CACHE/<root>, ~/.cache/imp-data)")
    s.add_argument("--sources", help="comma-separated sources: fetch and normalize just these")
    s.add_argument("--mix", action="append", help="build only this mix (repeatable)")
    s.add_argument("--until", metavar="STAGE", help="stop after this stage: " + ", ".join(STAGE_NAMES)
                   + " (docs/design.md §8)")
    s.add_argument("--workers", type=int, default=1, help="processes for rendering and shard writing")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("validate", help="check recipes, parquet and shards against schemas/; exit 1 on error")
    s.add_argument("paths", nargs="+", help="recipe .yaml, .parquet, .tar, or a mix directory")
    s.add_argument("--max-errors", type=int, default=50, help="stop listing after this many problems")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("stats", help="print the audit tables of a built mix")
    s.add_argument("mix_dir", help="DATA/mixes/<mix>")
    form = s.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the mix's stats.json instead, for scripts")
    form.add_argument("--markdown", action="store_true", help="print the tables as markdown, as report.md has them")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("export-llava", help="write a mix as LLaVA-format JSON + image folder")
    s.add_argument("mix_dir", help="DATA/mixes/<mix>")
    s.add_argument("out_dir", help="folder for <mix>.json and images/ (created if missing)")
    s.set_defaults(func=cmd_export_llava)

    s = sub.add_parser("publish", help="upload a built mix to the Hugging Face Hub (hf://datasets/ORG/NAME[@branch]) "
                                       "or object storage (s3://..., any fsspec URL)")
    s.add_argument("mix_dir", help="DATA/mixes/<mix>")
    s.add_argument("url", help="hf://datasets/ORG/NAME[@branch] (token from HF_TOKEN or `hf auth login`), or a "
                               "destination prefix, e.g. s3://bucket/mixes/<mix> (credentials from the environment)")
    s.add_argument("--private", action="store_true", help="Hub: create the repo private if it does not exist yet")
    s.add_argument("--files-per-commit", type=int, default=100, metavar="N",
                   help="Hub: at most N files per commit (default 100); a rerun resumes after the last commit")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("schemas", help="regenerate schemas/*.schema.json from the pydantic models")
    s.add_argument("--out-dir", default=str(Path(__file__).resolve().parent.parent / "schemas"),
                   help="where to write the *.schema.json files (default: the repository's schemas/)")
    s.set_defaults(func=cmd_schemas)

    s = sub.add_parser("train", help="train stage 1 or 2 on a mix's shards (CPU tiny or GPU real)")
    s.add_argument("run", help="run recipe (manifests/runs/*.yaml)")
    s.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    s.add_argument("--data-root", default=None, help="overrides the run recipe's data root; an s3://… root is "
                   "pulled into --cache first (the mix's index and shards)")
    s.add_argument("--cache", default=None, help="local copy of a URL data root (default $IMP_DATA_CACHE/<root>)")
    s.add_argument("--set", action="append", metavar="A.B=VALUE", help="override a config field (repeatable)")
    s.add_argument("--trust-shards", action="store_true",
                   help="skip checking every sample read against its sha256 in index.parquet (on by default: a "
                   "changed member is refused, naming shard and key); only for storage trusted end to end, or a "
                   "mix built before the index had member hashes (= --set train.trust_shards=true)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="run the benchmarks for a trained run -> metrics.json + table + uploads")
    s.add_argument("run", help="run recipe (manifests/runs/*.yaml) whose checkpoint to evaluate")
    s.add_argument("--data-root", default=None, help="overrides the run recipe's data root")
    s.add_argument("--set", action="append", metavar="A.B=VALUE", help="override a run config field (repeatable)")
    s.add_argument("--benchmarks-root", default=None,
                   help="folder of <benchmark>/ dirs laid out as LLaVA's playground/data/eval (default DATA/eval)")
    s.add_argument("--only", metavar="NAMES", help="comma-separated benchmarks or splits, e.g. pope,vqav2_testdev")
    s.add_argument("--max-new-tokens", type=int, default=None,
                   help="one answer-length cap for every benchmark (default per benchmark as LLaVA: 128, "
                   "scienceqa/mmbench 1024, at most the run's model_max_length)")
    s.add_argument("--max-new-tokens-for", action="append", metavar="NAME=N",
                   help="cap for one benchmark or split, e.g. mmbench=64 (repeatable; wins over --max-new-tokens)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("demo", help="fixtures -> build demo.yaml -> tiny train -> eval, end to end on CPU")
    s.add_argument("--data-root", default="demo-data", help="where the demo writes (default ./demo-data)")
    s.add_argument("--workers", type=int, default=1, help="processes for rendering and shard writing (default 1)")
    s.add_argument("--skip-train", action="store_true", help="stop after building the mixes")
    s.set_defaults(func=cmd_demo)
    for command in sub.choices.values():  # `imp-data build --debug …` as well as `imp-data --debug build …`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `imp-data stats --json MIX | head`: the reader has gone, which is no error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit does not fail again
        return 141  # as a shell tool killed by SIGPIPE
    except Exception as err:  # noqa: BLE001 - the one place every failure becomes one line
        if args.debug:
            traceback.print_exc()
        print(error_line(err, args), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
