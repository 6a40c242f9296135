"""Self-contained HTML reports: one page, inline CSS, plots embedded as base64 SVG.

Shared by the eval report, the data card and the demo report. Plots are matplotlib SVG with text
kept as text (``svg.fonttype = none``), so the browser draws Chinese labels with its own fonts even
where matplotlib has no CJK font installed. Nothing here needs a server or the network.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence
from typing import Any

_CSS = """
body{font-family:-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;
margin:2em auto;max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #2b6cb0;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;color:#2b6cb0}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#edf2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.9em}img{max-width:100%}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em}
"""


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(value)}</td>"


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """An HTML table from dicts; columns default to the keys of the first row."""
    if not rows:
        return '<p class="note">(no rows)</p>'
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, sections: Sequence[tuple[str, str]], intro: str = "") -> str:
    """A full page: ``sections`` are (heading, inner HTML) pairs."""
    parts = [f"<h1>{escape(title)}</h1>"]
    if intro:
        parts.append(f'<p class="note">{escape(intro)}</p>')
    for heading, body in sections:
        parts.append(f"<section><h2>{escape(heading)}</h2>{body}</section>")
    return (
        f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def new_figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    # Glyphs missing from matplotlib's own fonts are drawn by the browser; silence the warnings.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return plt.subplots(figsize=(width, height))


def figure_html(fig, alt: str) -> str:
    import warnings

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def bar_plot(labels: Sequence[str], series: dict[str, Sequence[float]], *, title: str = "",
             errors: dict[str, Sequence[tuple[float, float]]] | None = None, ylabel: str = "score",
             horizontal: bool = True) -> str:
    """Grouped bars (one group per label, one bar per series) with optional (low, high) error bars."""
    import numpy as np

    n, k = len(labels), max(1, len(series))
    if horizontal:
        fig, ax = new_figure(8, max(2.0, 0.28 * n * k + 1))
    else:
        fig, ax = new_figure(max(4.0, 0.5 * n * k + 1), 4)
    positions = np.arange(n)
    width = 0.8 / k
    for j, (name, values) in enumerate(series.items()):
        offsets = positions + (j - (k - 1) / 2) * width
        err = None
        if errors and name in errors:
            lows = [v - lo for v, (lo, _) in zip(values, errors[name], strict=True)]
            highs = [hi - v for v, (_, hi) in zip(values, errors[name], strict=True)]
            err = [np.clip(lows, 0, None), np.clip(highs, 0, None)]
        if horizontal:
            ax.barh(offsets, values, height=width, xerr=err, label=name, capsize=2)
        else:
            ax.bar(offsets, values, width=width, yerr=err, label=name, capsize=2)
    if horizontal:
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
    else:
        ax.set_xticks(positions, labels, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize="small")
    ax.set_title(title)
    return figure_html(fig, title or "bar plot")


def scatter_plot(points: Sequence[tuple[float, float, str]], *, title: str = "", xlabel: str = "",
                 ylabel: str = "", logx: bool = False) -> str:
    """Labelled points (x, y, label)."""
    fig, ax = new_figure(6, 4)
    for x, y, label in points:
        ax.scatter([x], [y])
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    if logx and all(p[0] > 0 for p in points):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return figure_html(fig, title or "scatter plot")


__all__ = ["bar_plot", "escape", "figure_html", "html_page", "new_figure", "scatter_plot", "table"]
