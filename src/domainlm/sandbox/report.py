"""HTML reports of sweeps, fits, capacity and coordinate checks (plots embedded, one self-contained page).

Page layout and tables come from the shared ``domainlm.report`` helpers; the plots here are the
sandbox's own (lines on log axes with fitted curves and intervals).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from domainlm.report import escape, figure_html, html_page, new_figure, table


def lr_plot(rows: list[dict]) -> str:
    """Validation loss against learning rate, one line per model size: the muTransfer picture."""
    fig, ax = new_figure(6.5, 4)
    by_size = defaultdict(dict)
    for r in rows:
        key = (r["width"], r["depth"], r["D"])
        by_size[key][r["lr"]] = min(by_size[key].get(r["lr"], np.inf), r["loss"])
    for (width, depth, tokens), line in sorted(by_size.items()):
        lrs = sorted(line)
        ax.plot(lrs, [line[x] for x in lrs], marker="o", label=f"w={width} d={depth} D={tokens:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation loss (nats/byte)")
    ax.set_title("loss vs learning rate by model size")
    ax.legend(fontsize="x-small")
    return figure_html(fig, "loss vs learning rate")


def compute_plot(fit: dict) -> str:
    from domainlm.sandbox.fit import loss_c

    fig, ax = new_figure(6.5, 4)
    env = fit["envelope"]
    ax.scatter([r["C"] for r in fit["runs_table"]], [r["loss"] for r in fit["runs_table"]], s=8, c="#bbb", label="runs")
    ax.scatter([r["C"] for r in env], [r["loss"] for r in env], s=18, label="best per (N, D)")
    law = fit["fits"].get("loss_compute")
    if law:
        c = np.geomspace(min(r["C"] for r in env), max(r["C"] for r in env) * 10, 60)
        ax.plot(c, loss_c(law["params"], c), label="fit E + A·C^-γ")
        if law["bootstrap"]:
            curves = np.array([loss_c(b, c) for b in law["bootstrap"]])
            tail = (1 - fit["confidence"]) / 2
            ax.fill_between(c, np.quantile(curves, tail, axis=0), np.quantile(curves, 1 - tail, axis=0), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6ND (FLOPs)")
    ax.set_ylabel("validation loss")
    ax.set_title("loss vs compute (to 10x beyond the largest run)")
    ax.legend(fontsize="x-small")
    return figure_html(fig, "loss vs compute")


def optimum_plot(fit: dict, name: str) -> str:
    from domainlm.sandbox.fit import power_law

    law = fit["fits"][name]
    points = np.array(law["points"])
    fig, ax = new_figure(6, 3.6)
    ax.scatter(points[:, 0], points[:, 1], label=f"optimal {name} per size")
    c = np.geomspace(points[:, 0].min(), points[:, 0].max() * 10, 50)
    ax.plot(c, power_law(law["params"], c), label=f"fit a·C^b (b={law['params']['b']:.3f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel(name)
    ax.legend(fontsize="x-small")
    return figure_html(fig, f"optimal {name} vs compute")


def fit_report(fit: dict, title: str = "domainlm sandbox: scaling fits") -> str:
    sections = []
    rows = []
    for name, law in fit["fits"].items():
        for key, value in law["params"].items():
            low, high = law["interval"].get(key, (None, None))
            rows.append({"law": name, "parameter": key, "estimate": value, "low": low, "high": high})
    sections.append(("Fitted laws", table(rows) + f'<p class="note">{int(fit["confidence"] * 100)}% bootstrap intervals over '
                     f'{fit["n_boot"]} resamples of {fit["runs"]} runs ({fit["groups"]} (N, D) groups). {escape(fit["note"])}</p>'))
    sections.append(("Learning rate transfer", lr_plot(fit["runs_table"])))
    if "loss_compute" in fit["fits"]:
        sections.append(("Loss vs compute", compute_plot(fit)))
    for name in ("lr", "batch_size"):
        if name in fit["fits"]:
            sections.append((f"Optimal {name} vs scale", optimum_plot(fit, name)))
    sections.append(("Best run per size", table(fit["envelope"])))
    return html_page(title, sections, intro="Small muP proxy runs, fitted to predict a bigger run.")


def capacity_report(results: list[dict], config: dict) -> str:
    fig, ax = new_figure(6, 3.8)
    for mix in sorted({r["mix_fraction"] for r in results}):
        line = sorted((r["exposures"], r["bits_per_param"]) for r in results if r["mix_fraction"] == mix)
        ax.plot([x for x, _ in line], [y for _, y in line], marker="o", label=f"other text {mix:.0%}")
    ax.axhline(results[0]["published_bits_per_param"], ls="--", c="gray", label="published ~2 bits/param")
    ax.set_xscale("log")
    ax.set_xlabel("exposures per fact")
    ax.set_ylabel("bits per parameter")
    ax.legend(fontsize="x-small")
    columns = ["exposures", "mix_fraction", "params_total", "train_tokens", "bits", "bits_possible", "bits_per_param", "accuracy"]
    sections = [("Bits per parameter vs exposures", figure_html(fig, "capacity")), ("Runs", table(results, columns)),
                ("Configuration", f"<pre>{escape(config)}</pre>")]
    return html_page("domainlm sandbox: knowledge capacity", sections,
                     intro="Synthetic fictional people with uniformly random attributes; bits = log2 q(true | person) "
                     "- log2 q̄(true), q̄ the model's mean prediction. Published figure: about 2 bits/param at "
                     "saturation, 1000 exposures (Allen-Zhu & Li 2024, Physics of Language Models 3.3).")


def coord_report(results: dict[str, dict[int, dict[str, float]]]) -> str:
    sections = []
    for label, per_width in results.items():
        fig, ax = new_figure(6, 3.6)
        widths = sorted(per_width)
        for layer in per_width[widths[0]]:
            ax.plot(widths, [per_width[w][layer] for w in widths], marker="o", label=layer)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel("mean |activation|")
        ax.legend(fontsize="x-small")
        sections.append((label, figure_html(fig, label)))
    return html_page("domainlm sandbox: muP coordinate check", sections,
                     intro="Flat lines: activation sizes do not depend on width (muP); rising lines: they do (SP).")
