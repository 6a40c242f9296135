"""Report helpers: a self-contained page (no external resources) with tables and embedded SVG plots."""

import base64
import re

from domainlm.report import bar_plot, html_page, scatter_plot, table


def test_table_escapes_and_formats():
    html = table([{"name": "<b>x</b>", "score": 0.123456, "n": 3}])
    assert "&lt;b&gt;x&lt;/b&gt;" in html and ">0.1235<" in html and '<td class="num">3</td>' in html
    assert "no rows" in table([])


def test_plots_are_inline_svg_with_text_kept_as_text():
    img = bar_plot(["金融知识", "安全合规"], {"score": [0.5, 0.75]}, errors={"score": [(0.4, 0.6), (0.7, 0.8)]},
                   title="scores")
    data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', img).group(1)
    svg = base64.b64decode(data).decode("utf-8")
    assert svg.startswith("<?xml") and "金融知识" in svg  # the browser draws CJK labels itself
    dots = scatter_plot([(1e-3, 0.5, "base"), (2e-3, 0.7, "tuned")], xlabel="TFLOPs", ylabel="score", logx=True)
    assert dots.startswith("<img")


def test_page_is_self_contained():
    page = html_page("报告", [("表", table([{"a": 1}])), ("图", bar_plot(["a"], {"s": [1.0]}))])
    assert page.startswith("<!DOCTYPE html>") and "<title>报告</title>" in page
    assert not re.search(r'(src|href)="https?://', page)
