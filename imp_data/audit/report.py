"""The audit a person reads: `report.md` with tables and PNG charts, made only from `stats.json`.

Rendering from the stats file (never from live objects) means the report can be regenerated and always
says exactly what the stats say. Charts use matplotlib's Agg backend with fixed metadata so the PNG
bytes are reproducible.
"""

from __future__ import annotations

from pathlib import Path

from imp_data.core.io import atomic_path, write_text_atomic
from imp_data.core.layout import MixDir


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
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight")


TAKEN, TARGET, SHORT, REJECTED, DROPPED = "#4C72B0", "#C8D3E6", "#C44E52", "#DD8452", "#8C8C8C"


def _hist_labels(hist: list[dict]) -> list[str]:
    return [f"{h['lo']:g}–{h['hi']:g}" if h["hi"] is not None else f"≥{h['lo']:g}" for h in hist]


def _bar_values(ax, bars, values, fmt=_fmt) -> None:
    """Counts printed at the end of each horizontal bar: the chart reads without a ruler."""
    for bar, v in zip(bars, values):
        if v:
            ax.annotate(fmt(v), (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=9)


def _chart_sources(plt, stats: dict):
    """Target as a pale bar behind taken, the shortfall in red at its end: a short source stands out."""
    names = list(stats["sources"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
    y = list(range(len(names)))[::-1]
    # take "all": the target is whatever was eligible
    target = [e["target"] if isinstance(e["target"], int) else e["taken"] + max(e["shortfall"], 0)
              for e in (stats["sources"][n] for n in names)]
    target_text = [_fmt(stats["sources"][n]["target"]) for n in names]
    taken = [stats["sources"][n]["taken"] for n in names]
    short = [max(stats["sources"][n]["shortfall"], 0) for n in names]
    ax.barh(y, target, height=0.75, color=TARGET, label="target")
    ax.barh(y, taken, height=0.45, color=TAKEN, label="taken")
    ax.barh(y, short, left=taken, height=0.45, color=SHORT, label="shortfall")
    for yi, t, s, tg, label in zip(y, taken, short, target, target_text):
        text = f"{_fmt(t)} / {label}" + (f"  (short {_fmt(s)})" if s else "")
        ax.annotate(text, (max(t + s, tg), yi), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=9, color=SHORT if s else "black")
    ax.set_yticks(y, names, fontsize=10)
    ax.set_xlabel("samples")
    ax.set_xlim(0, max(target + taken + [1]) * 1.35)
    ax.set_title("Target vs taken per source (red: shortfall)", fontsize=12)
    ax.legend(loc="lower right", fontsize=9, frameon=False)
    return fig


def _chart_reasons(plt, stats: dict):
    """Every reject and drop reason summed over sources, biggest first, rejects and drops coloured apart."""
    totals: dict[tuple[str, str], int] = {}
    for e in stats["sources"].values():
        for kind in ("rejected", "dropped"):
            for reason, n in e[kind].items():
                totals[(kind, reason)] = totals.get((kind, reason), 0) + n
    rows = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(rows), 1) + 1.4))
    if not rows:
        ax.text(0.5, 0.5, "nothing was rejected or dropped", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        y = list(range(len(rows)))[::-1]
        colors = [REJECTED if kind == "rejected" else DROPPED for (kind, _), _ in rows]
        bars = ax.barh(y, [n for _, n in rows], color=colors, height=0.6)
        _bar_values(ax, bars, [n for _, n in rows])
        ax.set_yticks(y, [reason for (_, reason), _ in rows], fontsize=10)
        ax.set_xlabel("records")
        ax.set_xlim(0, max(n for _, n in rows) * 1.15)
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=REJECTED, label="rejected"), Patch(color=DROPPED, label="dropped by rule")],
                  loc="lower right", fontsize=9, frameon=False)
    ax.set_title("Rejects and drops by reason (all sources)", fontsize=12)
    return fig


def _hist_panel(ax, hist: list[dict], xlabel: str, title: str, color: str) -> None:
    bars = ax.bar(range(len(hist)), [h["count"] for h in hist], color=color)
    for bar, h in zip(bars, hist):
        if h["count"]:
            ax.annotate(_fmt(h["count"]), (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(hist)), _hist_labels(hist), rotation=35, ha="right", fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=11)


def _chart_images(plt, stats: dict):
    """Original width/height as boxes (p25-p75, median, whiskers p5-p95, dots at min and max) next to the
    aspect histogram: what the renderer was fed before resize-then-pad."""
    d = stats["distributions"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    boxes = [{"label": label, "med": q["p50"], "q1": q["p25"], "q3": q["p75"], "whislo": q["p5"],
              "whishi": q["p95"], "fliers": [q["p0"], q["p100"]]}
             for key, label in (("orig_width", "width"), ("orig_height", "height")) if (q := d.get(key))]
    if boxes:
        left.bxp(boxes, orientation="horizontal", showfliers=True, widths=0.5)
        left.set_xlabel("pixels (box p25–p75, whiskers p5–p95, dots min/max)")
    else:
        left.text(0.5, 0.5, "no images", ha="center", va="center", transform=left.transAxes)
    left.set_title(f"Image size ({_fmt(d['with_image'])} with image, {_fmt(d['text_only'])} text-only)", fontsize=11)
    _hist_panel(right, d["aspect"]["histogram"], "aspect ratio (width / height)", "Image aspect", TAKEN)
    fig.tight_layout()
    return fig


def _chart_text(plt, stats: dict):
    d = stats["distributions"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    _hist_panel(left, d["text_chars"]["histogram"], "characters per sample (all turns)", "Text length", TAKEN)
    turns = sorted(d["turns"].items(), key=lambda kv: int(kv[0]))
    bars = right.bar(range(len(turns)), [n for _, n in turns], color=TAKEN)
    for bar, (_, n) in zip(bars, turns):
        right.annotate(_fmt(n), (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                       textcoords="offset points", ha="center", fontsize=8)
    right.set_xticks(range(len(turns)), [k for k, _ in turns], fontsize=9)
    right.set_xlabel("turns per sample")
    right.set_ylabel("samples")
    right.set_title("Conversation length", fontsize=11)
    fig.tight_layout()
    return fig


CHART_FILES = {"sources.png": _chart_sources, "reasons.png": _chart_reasons, "images.png": _chart_images,
               "text.png": _chart_text}


def write_charts(stats: dict, out_dir: Path) -> list[str]:
    """PNG charts of the stats (about 800-1000 px wide, 10-12 pt text: readable where the Dagster UI shows
    them); returns their paths relative to out_dir. PNGs left by an older chart set are removed, since the
    report stage stamps every PNG under charts/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = MixDir(Path(out_dir)).charts
    charts.mkdir(parents=True, exist_ok=True)
    for old in charts.glob("*.png"):
        if old.name not in CHART_FILES:
            old.unlink()
    written = []
    with plt.rc_context({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False}):
        for fname, draw in CHART_FILES.items():
            fig = draw(plt, stats)
            _save(fig, charts / fname)
            plt.close(fig)
            written.append((charts / fname).relative_to(out_dir).as_posix())
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
        parts += ["## URL downloads", "", "| source | URLs | ok | success rate | by status |",
                  "|---|---:|---:|---:|---|"]
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
    from imp_data.audit.card import write_card

    charts = write_charts(stats, mix_dir)
    write_card(stats, mix_dir)
    return write_text_atomic(MixDir(Path(mix_dir)).report, render_report(stats, charts))
