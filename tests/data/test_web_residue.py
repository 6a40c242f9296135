"""Web residue on real scraped-style pages: gambling spam in headlines and inside sentences, gallery
furniture, repeated disclaimers, comment blocks, off-topic tails, pinyin/mojibake/markup runs.

The fixtures (tests/data/fixtures/web/, built by build.py there) wrap real UHGEval news articles in that
residue; each page's sidecar lists the article sentences that must survive and the residue that must go.
Scoring is benchmarks/clean_quality.py's, so the benchmark's numbers are the ones tested here.
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from domainlm.data import clean, noise, normalize
from domainlm.data.recipe import load_recipe
from domainlm.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "fixtures" / "web"
SHARED = ROOT / ".." / "shared" / "benchmarks"
HAN = re.compile("[\u3400-\u9fff]")


def _bench():
    spec = importlib.util.spec_from_file_location("clean_quality", ROOT / "benchmarks" / "clean_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


# --- The fixtures, end to end through `clean` ------------------------------------------------------


def test_tuned_fixtures_every_residue_class_removed_no_sentence_lost(bench):
    fixtures = bench.load_fixtures(FIXTURES)
    assert len(fixtures) >= 12
    classes = {item["class"] for _, expected in fixtures for item in expected["noise"]}
    assert classes == {"spam", "gallery", "disclaimer", "comments", "tail", "pinyin"}
    result = bench.score(bench.run_domainlm(fixtures), fixtures)
    assert result["lost_sentences"] == [] and result["precision"] == 1.0
    assert result["missed_noise"] == [] and result["recall"] == 1.0, result["recall_by_class"]


def test_heldout_fixtures_stay_above_measured_floor(bench):
    """The held-out pages use other articles and other residue vocabulary. Measured: precision 0.932,
    recall 0.952 (first look, before any rule saw them: 0.825 / 0.701). This guards against regressions."""
    fixtures = bench.load_fixtures(FIXTURES / "heldout")
    result = bench.score(bench.run_domainlm(fixtures), fixtures)
    assert result["pages_dropped"] == 0
    assert result["precision"] >= 0.92, result["lost_sentences"]
    assert result["recall"] >= 0.94, result["missed_noise"]
    for kind in ("comments", "disclaimer", "gallery", "pinyin", "tail"):
        assert result["recall_by_class"][kind] == 1.0, (kind, result["missed_noise"])


def test_removals_are_traced_with_their_operator_and_shown_in_the_data_card(tmp_path):
    pages = sorted(FIXTURES.glob("page0[0-3].html"))
    out = tmp_path / "out"
    clean(pages, out, {"workers": 1})
    kinds_by_op: dict[str, set] = {}
    for trace in read_jsonl(out / "trace.jsonl"):
        for entry in trace["ops"]:
            for change in entry.get("changes", []):
                kinds_by_op.setdefault(entry["op"], set()).add(change["kind"])
    assert "spam" in kinds_by_op["remove_spam"]
    assert {"markup"} <= kinds_by_op["remove_markup"]
    assert "pinyin" in kinds_by_op["remove_pinyin"]
    assert {"comment", "disclaimer", "image_placeholder", "image_credit"} <= kinds_by_op["remove_furniture"]
    assert "offtopic_tail" in kinds_by_op["remove_offtopic_tail"]
    card = (out / "datacard.md").read_text(encoding="utf-8")
    section = card.split("## Removal examples per operator", 1)[1].split("\n## ", 1)[0]
    for op in ("remove_spam", "remove_markup", "remove_pinyin", "remove_furniture", "remove_offtopic_tail"):
        rows = [line for line in section.splitlines() if line.startswith(f"| {op} |")]
        assert 1 <= len(rows) <= 3, op
    assert "| remove_spam | spam |" in section


# --- Real prose is not eaten -------------------------------------------------------------------------


def _real_passages(n: int = 300) -> list[str]:
    cmrc = json.loads((SHARED / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))
    texts = [p["context"] for d in cmrc["data"] for p in d["paragraphs"]][:n]
    with (SHARED / "uhgeval" / "uhgeval_concise.dev.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle][:n]
    return texts + [(r["headLine"] + "\n" + r["newsBeginning"] + r["newsRemainder"]).strip() for r in rows]


def test_real_passages_lose_no_han_text_to_the_web_rules():
    """600 real CMRC (Wikipedia) and UHGEval (news) passages through the recipe's text steps: the spam,
    pinyin, markup, mojibake and tail rules remove no Han character (markup removes only the tags CMRC
    carries, "<br>"); furniture removes only photo credits and editor lines."""
    recipe = load_recipe("default-zh")
    han_removed: dict[str, int] = {}
    furniture: list[str] = []
    passages = _real_passages()
    assert len(passages) == 600
    for text in passages:
        for step in recipe.doc_steps:
            if step.op in ("language", "quality", "redact_pii", "remove_repeats", "flag_censor", "to_simplified"):
                continue
            result = step.run(text)
            lost = len(HAN.findall(text)) - len(HAN.findall(result.text))
            han_removed[step.op] = han_removed.get(step.op, 0) + max(0, lost)
            if step.op == "remove_furniture":
                furniture += [c["old"] for c in result.changes]
            text = result.text
    for op in (
        "fix_mojibake",
        "fix_cjk_mojibake",
        "remove_markup",
        "remove_pinyin",
        "remove_spam",
        "remove_offtopic_tail",
    ):
        assert han_removed[op] == 0, (op, han_removed)
    assert all(re.search(r"摄|图片来源|编辑[:：]|来源[:：]|责任编辑", old) for old in furniture), furniture


def test_real_lottery_news_is_not_spam():
    with (SHARED / "uhgeval" / "uhgeval_concise.dev.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    lottery = [r["headLine"] + "\n" + r["newsBeginning"] + r["newsRemainder"] for r in rows if "彩票" in r["headLine"]]
    assert lottery
    for text in lottery:
        assert noise.remove_spam(text).changes == []


# --- The rules, one at a time ----------------------------------------------------------------------


def test_spam_glued_inside_a_clause_goes_alone():
    text = "四国外长在德国首都柏林举行会晤金沙娱乐城官网注册送38元彩金商讨和平解决危机的途径。"
    assert noise.remove_spam(text).text == "四国外长在德国首都柏林举行会晤商讨和平解决危机的途径。"
    # A glue word that starts the host's next word stays with it ("集团公司").
    glued = "他担任东方航空ag真人平台开户集团公司副总经理。"
    assert noise.remove_spam(glued).text == "他担任东方航空集团公司副总经理。"


def test_spam_clause_and_headline_splices():
    text = "声明中说，时时彩网投平台24小时秒提现，冲突近日严重升级。"
    assert noise.remove_spam(text).text == "声明中说，冲突近日严重升级。"
    assert noise.remove_spam("德法外长商讨和平解决危机办法_皇冠体育网址 hg0088.cc\n正文。").text == (
        "德法外长商讨和平解决危机办法\n正文。"
    )
    handle = "初到哈尔滨，她就被这里官网bodog88.com的城市建筑吸引。请登录官网www.icbc.com.cn查询。"
    assert noise.remove_spam(handle).text == "初到哈尔滨，她就被这里的城市建筑吸引。请登录官网www.icbc.com.cn查询。"


def test_topic_words_need_evidence():
    for prose in (
        "3月份，福利彩票机构销售178.22亿元，体育彩票机构销售129.90亿元。",
        "北京重点检查歌舞娱乐场所40家。",
        "某些直播商会在六合彩开奖时段切换频道。",
        "他们把概念带到澳门威尼斯人度假村酒店。",
        "该系列包括《极速赛车手》等游戏。",
    ):
        assert noise.remove_spam(prose).changes == [], prose
    assert noise.remove_spam("【凤凰彩票APP下载】今年彩票销售增长。").text == "今年彩票销售增长。"


def test_markup_pinyin_and_mojibake_runs_repaired_han_kept():
    text = "声明说，四国guó?</span>外长zhÇŽng重申全quán</font>面执行&nbsp;协议。"
    steps = {step.op: step for step in load_recipe("default-zh").steps}
    for op in ("fix_mojibake", "remove_markup", "remove_pinyin"):  # in the recipe's order
        text = steps[op].run(text).text
    assert text == "声明说，四国外长重申全面执行 协议。"
    assert noise.remove_pinyin("全国人大网在中zhÅ\ufffdng?国开设").text == "全国人大网在中国开设"
    assert noise.remove_markup("a<b 且 <5% 的利率").changes == []
    # An English gloss in brackets is not a reading of the word before it.
    assert noise.remove_pinyin("本·拉登(Osama Bin Laden)和塔科马（Tacoma）").changes == []
    assert normalize.repair_latin_mojibake("存款cÃºn，的å­˜æ¬¾。").text == "存款cún，的存款。"
    assert normalize.repair_latin_mojibake("café au lait 咖啡").changes == []


def test_gallery_disclaimer_comment_lines():
    good = "新华社柏林1月22日电（记者商婧）四国外交部长21日晚在柏林举行会晤。（图片来源：视觉中国）"
    lines = [
        good,
        "图1　现场图片",
        "3 / 8 ‹ 上一张 | 下一张 ›",
        "第3张/共9张 < 上一页 下一页 >",
        "高清组图",
        "本文仅代表作者观点，不代表本站立场。",
        "【郑重声明】本网站刊登内容仅供参考，据此操作风险自担。",
        "已有12条评论",
        "北京网友 老张 2015-01-10 8:10",
        "说得太对了，支持！",
        "支持(12) 反对(3)",
    ]
    result = noise.remove_furniture("\n".join(lines))
    assert result.text == "新华社柏林1月22日电（记者商婧）四国外交部长21日晚在柏林举行会晤。\n"


def test_book_tail_cut():
    article = "新华社北京电 公安部表示，非法集资犯罪影响国家经济秩序和社会稳定，将继续开展专项行动。" * 3
    text = article + "\n好书推荐\n《活着》余华 著 作家出版社\n《三体》刘慈欣 著 重庆出版社\n"
    assert noise.remove_offtopic_tail(text).text == article + "\n"


def test_benchmark_stops_when_a_peer_is_missing(bench):
    with pytest.raises(SystemExit, match="pip install"):
        bench._require("no_such_peer_module_16", "no-such-peer")
