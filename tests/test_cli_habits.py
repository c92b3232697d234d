"""The usual CLI habits (issue 19, deliverable 5): `--version`, help on every argument of every command,
`stats` as aligned terminal tables and `stats --json` for scripts.

Run: pytest tests/test_cli_habits.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from imp_data.cli import main, parser, terminal_table


def actions(p: argparse.ArgumentParser, path: str = "imp-data"):
    """(command path, action) for every argument of `p` and of its subcommands, recursively."""
    for action in p._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the command list shown by `imp-data --help`
                yield path, choice
            for name, sub in action.choices.items():
                yield from actions(sub, f"{path} {name}")


def test_every_argument_of_every_command_has_help():
    top = parser()
    hidden_ok = {opt for a in top._actions for opt in a.option_strings}  # documented once, on the top level
    seen = list(actions(top))
    assert {path for path, _ in seen} >= {"imp-data export-llava", "imp-data schemas", "imp-data demo"}
    missing = []
    for path, action in seen:
        if action.help == argparse.SUPPRESS and set(action.option_strings) <= hidden_ok:
            continue  # `imp-data build --debug` = `imp-data --debug build`
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"arguments without help: {missing}"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"imp-data {version('imp-data')}"


def test_terminal_table_aligns_a_markdown_table():
    text = terminal_table("| source | kind | count |\n|---|---|---:|\n| dvqa | `rejected` | 7 |\n"
                          "| **total** | | 1,024 |")
    assert text.splitlines() == ["source  kind      count",
                                 "------  --------  -----",
                                 "dvqa    rejected      7",
                                 "total             1,024"]
    assert terminal_table("_nothing was rejected or dropped_") == "nothing was rejected or dropped"


def tables(out: str) -> list[list[str]]:
    """The tables of `imp-data stats` output: each a header, a rule of dashes and the rows below it."""
    lines, found = out.splitlines(), []
    for i, line in enumerate(lines):
        if line and set(line) <= {"-", " "}:
            rows = [lines[i - 1], line]
            for below in lines[i + 1:]:
                if not below.strip():
                    break
                rows.append(below)
            found.append(rows)
    return found


def test_stats_prints_aligned_tables_and_json(demo_build, capsys):
    mix = demo_build[0] / "mixes" / "demo_stage2"
    stats = json.loads((mix / "stats.json").read_text())
    assert main(["stats", str(mix)]) == 0
    out = capsys.readouterr().out
    assert "|" not in out and "**" not in out and "`" not in out
    found = tables(out)
    assert len(found) == 2, out  # per source, and by reason
    for table in found:
        spans = [m.span() for m in re.finditer(r"-+", table[1])]
        for line in table:
            gaps = [c for i, c in enumerate(line) if not any(s <= i < e for s, e in spans)]
            assert set(gaps) <= {" "}, f"a cell crosses its column: {line!r}"
    sources, reasons = found
    spans = [m.span() for m in re.finditer(r"-+", sources[1])]
    cells = {row[spans[0][0]:spans[0][1]].strip(): [row[s:e].strip() for s, e in spans] for row in sources[2:]}
    header = [sources[0][s:e].strip() for s, e in spans]
    assert header == ["source", "target", "read", "rejected", "dropped", "taken", "shortfall"]
    for name, entry in stats["sources"].items():
        row = dict(zip(header, cells[name]))
        assert (row["read"], row["taken"]) == (f"{entry['read']:,}", f"{entry['taken']:,}")
        assert sources[2 + list(stats["sources"]).index(name)].rstrip().endswith(f"{entry['shortfall']:,}")  # right
    assert cells["total"][5] == f"{stats['totals']['taken']:,}"
    assert any("textcaps" in row for row in reasons[2:])

    assert main(["stats", "--json", str(mix)]) == 0
    assert json.loads(capsys.readouterr().out) == stats


def test_a_closed_pipe_is_no_error(demo_build):
    """`imp-data stats --json MIX | head -1`: the reader leaving early prints no error."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "imp_data.cli", "stats", "--json",
                               str(demo_build[0] / "mixes" / "demo_stage2")], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")
