"""The data card: what the clean stage did, in numbers, plots and examples (``datacard.md`` and
``datacard.html``), aggregated while the documents stream past.

Plots are matplotlib PNGs written beside the card (linked from the Markdown, embedded in the HTML).
The HTML is a small self-contained page built here: the shared ``domainlm.report`` helpers did not
exist when this was written. Nothing time-dependent goes in, so a re-run gives identical files.
"""

from __future__ import annotations

import base64
import html
from collections import Counter, defaultdict
from pathlib import Path

from domainlm.data.recipe import Recipe
from domainlm.io import write_bytes, write_text

_EXAMPLES_PER_KIND = 3
_PII_TYPES = ("id_card", "mobile", "bank_card", "email", "address")


class DataCard:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.units = 0
        self.kept = 0
        self.duplicates = 0
        self.rejected_by_stage: Counter = Counter()
        self.reject_examples: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.chars_in = 0
        self.chars_out = 0
        self.op_docs_changed: Counter = Counter()
        self.op_chars_removed: Counter = Counter()
        self.op_flags: Counter = Counter()
        self.kind_counts: Counter = Counter()
        self.kind_examples: dict[str, list[dict]] = defaultdict(list)
        # What each operator removed, so a reader can judge a step from its card row, not only its count.
        self.op_examples: dict[str, list[dict]] = defaultdict(list)
        self.quality_bins = [0] * 10
        self.pii: Counter = Counter()
        self.languages: Counter = Counter()
        self.encodings: Counter = Counter()
        self.formats: Counter = Counter()
        self.clusters: dict[str, list[dict]] = {}
        self.extra_outputs: list[str] = []

    # --- aggregation -------------------------------------------------------------------------------

    def add(self, outcome) -> None:
        self.units += 1
        self.chars_in += outcome.input_chars
        meta = outcome.meta or {}
        if outcome.text is not None:
            self.kept += 1
            self.chars_out += len(outcome.text)
        elif outcome.reject_stage == "dedup":
            self.duplicates += 1
        else:
            self.rejected_by_stage[outcome.reject_stage] += 1
            examples = self.reject_examples[outcome.reject_stage]
            if len(examples) < _EXAMPLES_PER_KIND:
                examples.append((outcome.source, outcome.reject_reason or ""))
        if "lang" in meta:
            self.languages[meta["lang"]] += 1
        if "encoding" in meta:
            self.encodings[meta["encoding"]] += 1
        if "format" in meta:
            self.formats[meta["format"]] += 1
        if "quality" in meta:
            self.quality_bins[min(9, int(float(meta["quality"]) * 10))] += 1
        for entry in outcome.trace.get("ops", []):
            op = entry["op"]
            changes = entry.get("changes", [])
            if changes:
                self.op_docs_changed[op] += 1
            for change in changes:
                removed = len(change["old"]) - len(change["new"])
                if removed > 0:
                    self.op_chars_removed[op] += removed
                kind = change["kind"]
                self.kind_counts[kind] += 1
                if kind in _PII_TYPES:
                    self.pii[kind] += 1
                if len(self.kind_examples[kind]) < _EXAMPLES_PER_KIND and (change["old"] or change["new"]):
                    self.kind_examples[kind].append(
                        {"source": outcome.source, "old": change["old"][:160], "new": change["new"][:160]}
                    )
                if removed > 0 and len(self.op_examples[op]) < _EXAMPLES_PER_KIND:
                    self.op_examples[op].append(
                        {"source": outcome.source, "kind": kind, "old": change["old"][:160], "new": change["new"][:160]}
                    )
            for flag in entry.get("flags", []):
                self.op_flags[op] += 1
                kind = "flag:" + flag["kind"]
                self.kind_counts[kind] += 1
                if len(self.kind_examples[kind]) < _EXAMPLES_PER_KIND:
                    self.kind_examples[kind].append(
                        {"source": outcome.source, "old": flag["text"][:160], "new": "(flagged)"}
                    )

    def summary(self) -> dict:
        rejected = sum(self.rejected_by_stage.values())
        return {
            "documents": self.units,
            "kept": self.kept,
            "rejected": rejected,
            "duplicates": self.duplicates,
            "rejected_by_stage": dict(sorted(self.rejected_by_stage.items())),
            "chars_in": self.chars_in,
            "chars_out": self.chars_out,
            "pii": dict(sorted(self.pii.items())),
            "languages": dict(sorted(self.languages.items())),
            "duplicate_clusters": len(self.clusters),
        }

    # --- rendering ---------------------------------------------------------------------------------

    def _op_rows(self) -> list[list]:
        rows = []
        for step in self.recipe.steps:
            op = step.op
            if op == "dedup":
                rows.append([op, self.duplicates, "-", "-", self.duplicates])
                continue
            share = self.op_chars_removed[op] / self.chars_in if self.chars_in else 0.0
            rows.append(
                [
                    op,
                    self.op_docs_changed[op],
                    f"{self.op_chars_removed[op]:,} ({share:.2%})",
                    self.op_flags[op],
                    self.rejected_by_stage[op],
                ]
            )
        return rows

    def _sections(self) -> list[tuple[str, list[str], list[list]]]:
        """(title, header, rows) tables shared by the Markdown and HTML renderings."""
        s = self.summary()
        overview = [
            ["documents in", s["documents"]],
            ["kept", s["kept"]],
            ["rejected", s["rejected"]],
            ["duplicates removed", s["duplicates"]],
            ["characters in / out", f"{s['chars_in']:,} / {s['chars_out']:,}"],
            ["characters removed", f"{(1 - s['chars_out'] / s['chars_in']) if s['chars_in'] else 0:.2%}"],
        ]
        tables = [
            ("Overview", ["", "value"], overview),
            (
                "Operators",
                ["operator", "docs changed", "chars removed (share of input)", "flags", "docs dropped"],
                self._op_rows(),
            ),
            (
                "Rejections by stage",
                ["stage", "documents", "examples"],
                [
                    [stage, n, "; ".join(f"{src}: {why}" for src, why in self.reject_examples[stage])]
                    for stage, n in sorted(self.rejected_by_stage.items())
                ],
            ),
            ("PII redacted", ["type", "count"], [[t, self.pii[t]] for t in _PII_TYPES]),
            ("Languages (documents)", ["language", "documents"], sorted(self.languages.items())),
            (
                "Encodings and formats",
                ["", "documents"],
                [[f"encoding {k}", v] for k, v in sorted(self.encodings.items())]
                + [[f"format {k}", v] for k, v in sorted(self.formats.items())],
            ),
            (
                "Quality score (kept and dropped by quality)",
                ["score", "documents"],
                [[f"{i / 10:.1f}-{(i + 1) / 10:.1f}", n] for i, n in enumerate(self.quality_bins)],
            ),
            (
                "Duplicate clusters",
                ["kept document", "duplicates (type, jaccard)"],
                [
                    [first, ", ".join(f"{d['id']} ({d['type']}, {d['jaccard']})" for d in dups)]
                    for first, dups in sorted(self.clusters.items())[:50]
                ],
            ),
            (
                "Removal examples per operator",
                ["operator", "kind", "source", "removed", "replaced by"],
                [
                    [op, ex["kind"], ex["source"], ex["old"], ex["new"]]
                    for op in dict.fromkeys(step.op for step in self.recipe.doc_steps)
                    for ex in self.op_examples[op]
                ],
            ),
            (
                "Examples of each change",
                ["kind", "count", "source", "before", "after"],
                [
                    [kind, self.kind_counts[kind], ex["source"], ex["old"], ex["new"]]
                    for kind in sorted(self.kind_examples)
                    for ex in self.kind_examples[kind]
                ],
            ),
        ]
        return tables

    def _plots(self, out_dir: Path) -> list[tuple[str, str]]:
        """Write the PNG plots; returns (file name, caption)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plots = []
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar([f"{i / 10:.1f}" for i in range(10)], self.quality_bins, color="#4878a8")
        ax.set_xlabel("quality score (bin start)")
        ax.set_ylabel("documents")
        ax.set_title("Quality scores")
        fig.tight_layout()
        plots.append(("datacard_quality.png", "Quality score histogram", fig))
        ops = [step.op for step in self.recipe.steps if step.op != "dedup"]
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(ops) + 1))
        shares = [100 * self.op_chars_removed[op] / self.chars_in if self.chars_in else 0 for op in ops]
        ax.barh(ops[::-1], shares[::-1], color="#c85a3c")
        ax.set_xlabel("% of input characters removed")
        ax.set_title("Characters removed per operator")
        fig.tight_layout()
        plots.append(("datacard_removed.png", "Removed-character share per operator", fig))
        written = []
        for name, caption, figure in plots:
            import io

            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
            plt.close(figure)
            write_bytes(out_dir / name, buffer.getvalue())
            written.append((name, caption))
            self.extra_outputs.append(name)
        return written

    def write(self, md_path: Path, html_path: Path, out_dir: Path) -> None:
        plots = self._plots(out_dir)
        tables = self._sections()
        title = f"Data card: recipe {self.recipe.name}"
        md = [f"# {title}", "", "Steps: " + " → ".join(s.op for s in self.recipe.steps), ""]
        for caption_title, header, rows in tables:
            md += [f"## {caption_title}", "", _md_table(header, rows), ""]
        md += ["## Plots", ""] + [f"![{caption}]({name})" for name, caption in plots] + [""]
        write_text(md_path, "\n".join(md))
        body = [
            f"<h1>{html.escape(title)}</h1>",
            "<p>Steps: " + " → ".join(html.escape(s.op) for s in self.recipe.steps) + "</p>",
        ]
        for caption_title, header, rows in tables:
            body.append(f"<h2>{html.escape(caption_title)}</h2>" + _html_table(header, rows))
        body.append("<h2>Plots</h2>")
        for name, caption in plots:
            data = base64.b64encode((out_dir / name).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
            )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:left;vertical-align:top;max-width:380px;word-break:break-all}th{background:#f3f3f3}"
            "</style></head><body>" + "\n".join(body) + "</body></html>\n"
        )
        write_text(html_path, page)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", "⏎")


def _md_table(header: list[str], rows: list[list]) -> str:
    if not rows:
        return "(none)"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
