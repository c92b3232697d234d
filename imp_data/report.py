"""The audit a person reads: `report.md` with tables and PNG charts, made only from `stats.json`.

Rendering from the stats file (never from live objects) means the report can be regenerated and always
says exactly what the stats say. Charts use matplotlib's Agg backend with fixed metadata so the PNG
bytes are reproducible.
"""

from __future__ import annotations

from pathlib import Path

from imp_data.io import atomic_path, write_text_atomic

CHARTS = "charts"


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def source_table(stats: dict) -> str:
    """Markdown table of per-source target vs taken, with drops and rejects (also used as UI metadata)."""
    lines = ["| source | target | read | rejected | dropped | taken | shortfall |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, e in stats["sources"].items():
        rejected = sum(e["rejected"].values())
        dropped = ", ".join(f"{k} {_fmt(v)}" for k, v in e["dropped"].items()) or "0"
        lines.append(f"| {name} | {_fmt(e['target'])} | {_fmt(e['read'])} | {_fmt(rejected)} | {dropped} | "
                     f"{_fmt(e['taken'])} | {_fmt(e['shortfall'])} |")
    t = stats["totals"]
    lines.append(f"| **total** | | {_fmt(t['read'])} | {_fmt(t['rejected'])} | {_fmt(t['dropped'])} | "
                 f"**{_fmt(t['taken'])}** | |")
    return "\n".join(lines)


def reasons_table(stats: dict) -> str:
    lines = ["| source | kind | reason | count |", "|---|---|---|---:|"]
    for name, e in stats["sources"].items():
        for kind in ("rejected", "dropped"):
            for reason, n in e[kind].items():
                lines.append(f"| {name} | {kind} | `{reason}` | {_fmt(n)} |")
    return "\n".join(lines) if len(lines) > 2 else "_nothing was rejected or dropped_"


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None}, bbox_inches="tight")


def write_charts(stats: dict, out_dir: Path) -> list[str]:
    """PNG charts of the stats; returns their paths relative to out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out_dir / CHARTS).mkdir(parents=True, exist_ok=True)
    written = []
    names = list(stats["sources"])
    charts = {
        "sources.png": ("Samples per source", names, [stats["sources"][n]["taken"] for n in names]),
        "turns.png": ("Turns per sample", list(stats["distributions"]["turns"]),
                      list(stats["distributions"]["turns"].values())),
    }
    for key, title in (("text_chars", "Text length (characters)"), ("aspect", "Original image aspect (w/h)")):
        hist = stats["distributions"][key]["histogram"]
        labels = [f"{h['lo']:g}-{h['hi']:g}" if h["hi"] is not None else f">{h['lo']:g}" for h in hist]
        charts[f"{key}.png"] = (title, labels, [h["count"] for h in hist])
    for fname, (title, labels, values) in charts.items():
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.bar(range(len(values)), values, color="#4C72B0")
        ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        _save(fig, out_dir / CHARTS / fname)
        plt.close(fig)
        written.append(f"{CHARTS}/{fname}")
    return written


def render_report(stats: dict, charts: list[str]) -> str:
    t, d = stats["totals"], stats["distributions"]
    r = stats["render"]
    parts = [
        f"# Mix `{stats['mix']}` (stage {stats['stage']}, recipe `{stats['recipe']}`)",
        "",
        f"**{_fmt(t['taken'])} samples** in {t['shards']} shards ({t['shard_bytes'] / 1e6:.1f} MB); "
        f"read {_fmt(t['read'])}, rejected {_fmt(t['rejected'])} (rate {t['reject_rate']:.2%}, "
        f"limit {stats['max_reject_rate']:.0%}), dropped by rules {_fmt(t['dropped'])}. "
        f"Images: `{r['mode']}` at {r['resolution']}px, fill {tuple(r['fill'])}, JPEG q{r['quality']}; "
        f"{_fmt(d['with_image'])} with image, {_fmt(d['text_only'])} text-only. Seed {stats['seed']}.",
        "",
        "Every source balances: read = rejected + dropped + taken.",
        "",
        "## Per source: target vs taken",
        "",
        source_table(stats),
        "",
        "## Why records were rejected or dropped",
        "",
        reasons_table(stats),
        "",
        "## Distributions",
        "",
        "| measure | p5 | p50 | p95 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (("orig_width", "original width"), ("orig_height", "original height")):
        q = d[key]
        if q:
            parts.append(f"| {label} | {q['p5']:g} | {q['p50']:g} | {q['p95']:g} | {q['p100']:g} |")
    for key, label in (("text_chars", "text characters"), ("aspect", "aspect w/h")):
        q = d[key]["quantiles"]
        if q:
            parts.append(f"| {label} | {q['p5']:g} | {q['p50']:g} | {q['p95']:g} | {q['p100']:g} |")
    parts.append("")
    for chart in charts:
        parts += [f"![{Path(chart).stem}]({chart})", ""]
    downloads = {name: e["downloads"] for name, e in stats["sources"].items() if e.get("downloads")}
    if downloads:
        parts += ["## URL downloads", "", "| source | URLs | ok | success rate | by status |", "|---|---:|---:|---:|---|"]
        for name, d in downloads.items():
            by = ", ".join(f"{k} {v}" for k, v in sorted(d["by_status"].items()))
            parts.append(f"| {name} | {_fmt(d['total'])} | {_fmt(d['ok'])} | {d['success_rate']:.1%} | {by} |")
        parts.append("")
    contamination = stats.get("contamination")
    if contamination is not None:
        parts += ["## Contamination (training images that match benchmark images)", "",
                  f"**{contamination['remaining']} contaminated samples remain in the shards.**", ""]
        if contamination["benchmarks"]:
            parts += ["| benchmark | matched samples | exact | dropped | remaining |", "|---|---:|---:|---:|---:|"]
            for bench, c in contamination["benchmarks"].items():
                parts.append(f"| {bench} | {c['found']} | {c['exact']} | {c['dropped']} | {c['remaining']} |")
        else:
            parts.append("_no training image matched a benchmark image_")
        parts.append("")
    extra = stats.get("report_sections") or []
    for section in extra:
        parts += [section, ""]
    return "\n".join(parts)


def write_report(stats: dict, mix_dir: Path) -> Path:
    """report.md and its charts, and the dataset card (README.md): the report unit, all from stats.json."""
    from imp_data.card import write_card

    charts = write_charts(stats, mix_dir)
    write_card(stats, mix_dir)
    return write_text_atomic(mix_dir / "report.md", render_report(stats, charts))
