"""Hostile inputs at the edges a user controls: names in a recipe, members and keys in a shard, the paths
commands write to, a full or read-only disk, a bug, and the recipe's blocking policies.

Each case asserts the exact outcome — the message and exit code of a real `python -m imp_data.cli`
process, or of `main()` in-process where a fault is injected — and, through `roots`, that nothing was
written beside or above the data root, cache and export folder.

Run: pytest tests/hostile/test_containment_and_cli.py
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import polars as pl
import pytest

from imp_data.cli import main
from imp_data.core.layout import Layout
from imp_data.core.paths import PathEscapeError, contained
from tests.conftest import DEMO_RECIPE, edited_demo_recipe, guarded_env

NAME_RULE = "mix names must match ^[a-z][a-z0-9_]*$ (the name becomes a folder name)"


def imp(*args, prelude: str = "") -> subprocess.CompletedProcess:
    """`python -m imp_data.cli ARGS`; with `prelude`, that code runs first in the same process (a fault)."""
    cmd = ([sys.executable, "-c", f"import sys\n{prelude}\nfrom imp_data.cli import main\nsys.exit(main(sys.argv[1:]))"]
           if prelude else [sys.executable, "-m", "imp_data.cli"])
    return subprocess.run([*cmd, *map(str, args)], check=False, capture_output=True, text=True, timeout=300,
                          env=guarded_env({"IMP_DATA_PROGRESS": "0", "PATH": "/usr/bin:/bin"}))


@pytest.fixture
def inputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("inputs")


def rename_mix(name: str):
    def edit(raw):
        raw["mixes"] = {name if m == "demo_stage1" else m: spec for m, spec in raw["mixes"].items()}
    return edit


def stage2_source(source: str, **fields):
    return lambda raw: raw["mixes"]["demo_stage2"]["sources"][source].update(fields)


RULES = ["mixes", "demo_stage2", "sources", "llava_665k", "drop"]
RECIPE_CASES = {
    "mix ../../x": (rename_mix("../../x"), f"mixes.'../../x': {NAME_RULE}"),
    "mix /tmp/x": (rename_mix("/tmp/x"), f"mixes.'/tmp/x': {NAME_RULE}"),
    "mix a/b": (rename_mix("a/b"), f"mixes.'a/b': {NAME_RULE}"),
    "mix empty": (rename_mix(""), f"mixes.'': {NAME_RULE}"),
    "duplicate rule names": (
        stage2_source("llava_665k", drop=[{"name": "textcaps", "image_prefix": "textvqa/"},
                                          {"name": "textcaps", "text_only": True}]),
        "mixes.demo_stage2.sources.llava_665k.drop: rules 0 and 1 are both named 'textcaps': "
        "each rule needs its own name"),
    "rule named not_sampled": (
        stage2_source("llava_665k", drop=[{"name": "not_sampled", "image_prefix": "textvqa/"}]),
        ("mixes.demo_stage2.sources.llava_665k.drop.0.name: 'not_sampled' is reserved (take-N records the records it "
         "leaves out): give the rule another name")),
    "rule named duplicate_near": (
        stage2_source("llava_665k", drop=[{"name": "duplicate_near", "text_only": True}]),
        ("mixes.demo_stage2.sources.llava_665k.drop.0.name: 'duplicate_near' is reserved (dedup records near-duplicate "
         "images): give the rule another name")),
    "take: true": (stage2_source("dvqa", take=True),
                   "mixes.demo_stage2.sources.dvqa.take: take must be a whole number >= 0 or 'all', got true"),
    "files: [/etc/hostname]": (
        lambda raw: raw["sources"]["dvqa"].update(files=["/etc/hostname"]),
        ("sources.dvqa.files: '/etc/hostname': files are paths relative to `location`, without '..' (to read another "
         "folder, make it the location)")),
    "files: [../../x.json]": (
        lambda raw: raw["sources"]["dvqa"].update(files=["../../x.json"]),
        ("sources.dvqa.files: '../../x.json': files are paths relative to `location`, without '..' (to read another "
         "folder, make it the location)")),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_recipe_problems_are_found_before_any_work(case, roots, inputs):
    """`validate` names the problem with its YAML path; `build` refuses the recipe before writing anything."""
    edit, problem = RECIPE_CASES[case]
    recipe = edited_demo_recipe(inputs, edit)
    listing = f"{recipe}: 1 problem(s) in recipe:\n  - {problem}\n"
    check = imp("validate", recipe)
    assert (check.returncode, check.stdout) == (1, f"{listing}1 path(s) checked: 1 problem(s)\n"), check.stdout
    built = imp("build", recipe, "--data-root", roots.data, "--quiet")
    assert (built.returncode, built.stderr) == (1, f"imp-data build: error: {listing}"), built.stderr
    assert list(roots.data.iterdir()) == []


def test_contained_refuses_names_that_leave_the_root(roots):
    root = roots.data
    assert contained(root, "mixes", "a/b") == root / "mixes" / "a" / "b"  # inside is fine: names are checked apart
    refused = {("../../x",): f"../../x: refusing to write outside {root} ('..' in a name)",
               ("/tmp/x",): f"/tmp/x: refusing to write outside {root} (an absolute path where a name belongs)",
               ("",): f"{root}/'': refusing to write outside {root} (an empty name)",
               ("mixes", "m/../../../x"): f"m/../../../x: refusing to write outside {root} ('..' in a name)"}
    for parts, message in refused.items():
        with pytest.raises(PathEscapeError) as err:
            contained(root, *parts)
        assert str(err.value) == message
    (root / "mixes").mkdir()
    (root / "mixes" / "m").symlink_to(roots.export, target_is_directory=True)  # a link out of the data root
    with pytest.raises(PathEscapeError) as err:
        Layout(root).mix("m")
    assert str(err.value) == f"{root / 'mixes' / 'm'}: refusing to write outside {root / 'mixes'} " \
                             f"(a symlink leads to {roots.export})"
    for name in ("../../x", "/tmp/x", "a/b", ""):
        with pytest.raises(PathEscapeError, match=r"^mix .*: not a plain name"):
            Layout(root).mix(name)


def copy_mix(demo_build, roots) -> Path:
    root, _ = demo_build
    mix = roots.data / "mixes" / "demo_stage2"
    shutil.copytree(root / "mixes" / "demo_stage2", mix, ignore=shutil.ignore_patterns("render"))
    return mix


def test_export_ignores_crafted_tar_members(demo_build, roots):
    """A shard rewritten with members `../../X.json` + `../../X.jpg` (the old export named files after tar
    members, so X.jpg landed beside the output folder): export reads what the index lists, by offset."""
    mix = copy_mix(demo_build, roots)
    shard = min((mix / "shards").glob("*.tar"))
    with tarfile.open(shard, "a") as tar:  # appended: the index's offsets and hashes stay right
        for name, data in (("../../X.json", json.dumps({"key": "../../X", "id": "x", "conversations": []}).encode()),
                           ("../../X.jpg", b"\xff\xd8\xff\xe0 not much of a jpeg")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = imp("export-llava", mix, roots.export)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"wrote {roots.export / 'demo_stage2.json'}\n", "")
    index = pl.read_parquet(mix / "index.parquet")
    with_image = index.filter(pl.col("jpg_offset").is_not_null())["key"].to_list()
    assert sorted(p.name for p in roots.export.iterdir()) == ["demo_stage2.json", "images"]
    assert sorted(p.name for p in (roots.export / "images").iterdir()) == [f"{k}.jpg" for k in sorted(with_image)]
    exported = json.loads((roots.export / "demo_stage2.json").read_text())
    assert [r["id"] for r in exported] == index["id"].to_list()


@pytest.mark.parametrize("column, value, message", [
    ("key", "../../X", "{index}: key '../../X' is not a sample key"),
    ("shard_name", "../../../../etc/hostname",
     "shard name '../../../../etc/hostname': not a plain name (it names one file or folder: no '/', not empty)"),
])
def test_export_refuses_a_crafted_index(demo_build, roots, column, value, message):
    mix = copy_mix(demo_build, roots)
    index = pl.read_parquet(mix / "index.parquet")
    index.with_columns(pl.when(pl.col("position") == index["position"].min()).then(pl.lit(value))
                       .otherwise(pl.col(column)).alias(column)).write_parquet(mix / "index.parquet")
    out = imp("export-llava", mix, roots.export)
    expected = message.format(index=mix / "index.parquet")
    assert (out.returncode, out.stderr) == (1, f"imp-data export-llava: error: {expected}\n"), out.stderr
    assert not any(p.is_file() for p in roots.export.rglob("*"))


def test_unknown_mix_is_one_line(roots):
    out = imp("build", DEMO_RECIPE, "--data-root", roots.data, "--mix", "nope")
    assert (out.returncode, out.stderr) == (1, (f"imp-data build: error: --mix 'nope': {DEMO_RECIPE} has no such mix; "
                                               "its mixes: demo_stage1, demo_stage2\n"))
    assert list(roots.data.iterdir()) == []


@pytest.mark.parametrize("command, what", [("export-llava", "export"), ("fixtures", "fixture mirror"),
                                           ("publish", "published mix")])
def test_writing_into_a_file_is_one_line(demo_build, roots, command, what):
    taken = roots.export / "taken"
    taken.write_text("a file, not a folder")
    mix = demo_build[0] / "mixes" / "demo_stage2"
    for target, problem in ((taken, "exists and is not a folder"), (taken / "sub", f"{taken} is a file, not a folder")):
        out = imp(command, *([] if command == "fixtures" else [mix]), target)
        assert (out.returncode, out.stderr) == (
            1, f"imp-data {command}: error: {target}: {problem} — choose a folder (or a new path) for the {what}\n")
    assert [p.name for p in roots.export.iterdir()] == ["taken"] and taken.read_text() == "a file, not a folder"


@pytest.fixture
def fault(monkeypatch):
    """`fault(folder, code, mkdir=...)`: creating a file (and with `mkdir`, a folder) under `folder` fails with
    OSError `code`, as a full or read-only filesystem would.

    Why a simulation: these tests run as root, and root writes through chmod 0o555; a tmpfs or loop mount
    needs privileges. So the faults are injected at the lowest level Python code reaches in this process
    (io.open/builtins.open, os.open, os.mkdir) and `main()` runs in-process; the unprivileged chmod case
    below runs for real where the suite is not root.
    """
    real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir

    def arm(folder: Path, code: int, *, mkdir: bool) -> None:
        def hit(path) -> bool:
            return isinstance(path, (str, os.PathLike)) and Path(os.path.abspath(path)).is_relative_to(folder)

        def refuse(path):
            raise OSError(code, os.strerror(code), os.fspath(path))

        def fake_open(file, mode="r", *args, **kwargs):
            if hit(file) and set(mode) & set("wax+"):
                refuse(file)
            return real_open(file, mode, *args, **kwargs)

        def fake_os_open(path, flags, *args, **kwargs):
            if hit(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                refuse(path)
            return real_os_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if mkdir and hit(path):
                refuse(path)
            return real_mkdir(path, *args, **kwargs)

        for module, name, fake in ((io, "open", fake_open), (builtins, "open", fake_open), (os, "open", fake_os_open),
                                   (os, "mkdir", fake_mkdir)):
            monkeypatch.setattr(module, name, fake)
    return arm


@pytest.mark.parametrize("code, hint", [
    (errno.EROFS, "Read-only file system — the data root {root} is read-only: choose a writable --data-root"),
    (errno.EACCES, "Permission denied — the data root {root} is read-only: choose a writable --data-root"),
    (errno.ENOSPC, "no space left on the device — free space on {root} (the data root) and rerun"),
])
def test_unwritable_data_root_is_one_line(roots, fault, capsys, code, hint):
    fault(roots.data, code, mkdir=True)
    assert main(["build", str(DEMO_RECIPE), "--data-root", str(roots.data), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"imp-data build: error: {roots.data / '.imp-data'}: {hint.format(root=roots.data)}\n"
    assert list(roots.data.iterdir()) == []


@pytest.mark.parametrize("code, hint", [
    (errno.ENOSPC, "no space left on the device — free space on {root} (the output folder) and rerun"),
    (errno.EROFS, "Read-only file system — the output folder {root} is read-only: choose a writable OUT_DIR"),
])
def test_full_export_folder_is_one_line(demo_build, roots, fault, capsys, code, hint):
    mix = demo_build[0] / "mixes" / "demo_stage2"
    first = pl.read_parquet(mix / "index.parquet").filter(pl.col("jpg_offset").is_not_null())["key"][0]
    fault(roots.export, code, mkdir=False)
    assert main(["export-llava", str(mix), str(roots.export)]) == 1
    err = capsys.readouterr().err
    assert err == f"imp-data export-llava: error: {roots.export / 'images' / f'{first}.jpg'}: " \
                  f"{hint.format(root=roots.export)}\n"
    assert [p.name for p in roots.export.rglob("*")] == ["images"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the injected faults above cover root")
def test_read_only_data_root_by_chmod(roots):
    roots.data.chmod(0o555)
    try:
        out = imp("build", DEMO_RECIPE, "--data-root", roots.data, "--quiet")
    finally:
        roots.data.chmod(0o755)
    assert (out.returncode, out.stderr) == (1, (f"imp-data build: error: {roots.data / '.imp-data'}: "
                                               f"Permission denied — the data root {roots.data} is read-only: "
                                               "choose a writable --data-root\n"))


BUG = ("import imp_data.shards.export as e\ndef boom(*a):\n"
       "    raise RuntimeError('the disk controller\\nis on fire')\n"
       "e.export_llava = boom")


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(demo_build, roots):
    mix = demo_build[0] / "mixes" / "demo_stage2"
    out = imp("export-llava", mix, roots.export, prelude=BUG)
    assert (out.returncode, out.stderr) == (1, ("imp-data: unexpected error: RuntimeError: the disk controller is on "
                                               "fire (run with --debug for the traceback)\n"))
    for argv in (["--debug", "export-llava", mix, roots.export], ["export-llava", "--debug", mix, roots.export]):
        out = imp(*argv, prelude=BUG)
        assert out.returncode == 1 and out.stderr.startswith("Traceback (most recent call last):\n"), out.stderr
        assert ", in boom\n" in out.stderr and "RuntimeError: the disk controller\nis on fire\n" in out.stderr
        assert out.stderr.endswith("\nimp-data: unexpected error: RuntimeError: the disk controller is on fire\n")
    assert list(roots.export.iterdir()) == []


def test_policies_fail_the_build_after_the_report(demo_build, roots, inputs):
    """max_reject_rate 0.0 and a report-only decontamination policy allowing 0 matches: both are violated
    (the demo has render rejects and POPE matches), each is one line, and report.md is written first."""
    shutil.copytree(demo_build[0] / "mirror", roots.data / "mirror")

    def strict(raw):
        raw["max_reject_rate"] = 0.0
        raw["mixes"]["demo_stage2"]["decontaminate"].update(drop=False, max_remaining=0)
    out = imp("build", edited_demo_recipe(inputs, strict), "--data-root", roots.data, "--mix", "demo_stage2", "--quiet")
    layout = Layout(roots.data)
    stats = json.loads(layout.stats("demo_stage2").read_text())
    t, left, report = stats["totals"], stats["contamination"]["remaining"], layout.report("demo_stage2")
    assert t["rejected"] > 0 and left > 0 and report.is_file()
    assert out.returncode == 1 and f"mix demo_stage2: {t['taken']} samples" in out.stdout
    assert out.stderr == (
        f"imp-data build: error: mix demo_stage2: reject rate {t['reject_rate']:.2%} ({t['rejected']} of {t['read']} "
        f"records) exceeds max_reject_rate 0.00% — see {report}\n"
        f"imp-data build: error: mix demo_stage2: {left} benchmark-matching samples remain, more than the "
        f"decontamination limit 0 (policy report only) — see {report}\n")


def test_demo_recipe_meets_its_own_policies(demo_build):
    """`imp-data build manifests/demo.yaml` must keep exiting 0: the demo stays within its own limits."""
    from imp_data.cli import policy_violations
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe

    ctx = BuildContext(recipe=load_recipe(DEMO_RECIPE), data_root=demo_build[0], progress=False)
    assert {mix: policy_violations(ctx, mix) for mix in ctx.recipe.mixes} == {"demo_stage1": [], "demo_stage2": []}
