"""Query-side handling of dates, numbers and named entities (domainlm.kb.query), on real CMRC 2018 prose."""

import json
from dataclasses import replace

import pytest

from domainlm.kb import KBConfig, build_kb, open_kb
from domainlm.kb.query import analyze, analyze_query, cn_to_number, evidence, expand, number_to_cn, rerank
from domainlm.kb.search import Hit


def keys(text: str, kind: str) -> list[tuple]:
    return [v.key for v in analyze(text) if v.kind == kind]


# ---- extraction and normalisation -------------------------------------------------------------------


def test_dates_in_real_sentences():
    # CMRC 2018 dev, DEV_33 (固始站) and DEV_72 (中国建筑工程总公司)
    assert keys("自2016年9月17日起，固始县财政开始对固始站乘降旅客进行现金补贴", "date") == [(2016, 9, 17)]
    assert keys("它在2007年成立，并在2009年7月29日于上海证券交易所上市", "date") == [(2007, None, None), (2009, 7, 29)]
    # a month and day without a year; a day alone is not a date
    assert keys("10月7日国庆节返程日发送旅客1124人", "date") == [(None, 10, 7)]
    assert keys("每月5日结算", "date") == []


def test_a_date_is_the_same_in_every_surface_form():
    forms = ["2016年9月17日", "二〇一六年九月十七日", "２０１６年９月１７日", "2016-09-17", "2016/9/17", "二零一六年九月十七号"]
    assert {tuple(keys(f, "date")) for f in forms} == {((2016, 9, 17),)}
    assert keys("一九九八年", "date") == keys("1998年", "date") == [(1998, None, None)]
    assert keys("2019年3月", "date") == keys("二〇一九年三月", "date") == [(2019, 3, None)]


def test_numbers_with_units_in_real_sentences():
    # DEV_29 (魏斯可金融公司), DEV_8 (于乐), DEV_78 (西巴丹岛)
    assert keys("自从1973年以来，魏斯可一直由蓝筹印花公司持有80.1%股权", "number") == [(80.1, "%")]
    assert keys("于乐出身于北京国安，在2006年以2万元转会到河南建业", "number") == [(20000.0, "元")]
    assert keys("岛屿面积约4万平方米，从600米深的海底直接伸出海面", "number") == [(40000.0, "平方米"), (600.0, "米")]


def test_a_number_is_the_same_in_every_surface_form():
    assert keys("百分之三点五", "number") == keys("3.5%", "number") == keys("百分之3.5", "number") == [(3.5, "%")]
    assert keys("12万元", "number") == keys("十二万元", "number") == keys("120000元", "number") == keys("120,000元", "number")
    assert keys("三千", "number") == keys("3000", "number") == [(3000.0, "")]
    assert keys("一万二千元", "number") == [(12000.0, "元")]


def test_numeral_words_that_are_not_quantities():
    # adverbs and names written with numerals, and question words
    assert keys("这十分重要，千万不要说万一", "number") == []
    assert keys("文周王是百济第多少代国王？", "number") == []
    assert keys("底特律圣公会三一堂哪一年成立？", "number") == []
    assert keys("俄罗斯AK-130多用途双管舰砲", "number") == []


def test_chinese_numerals_both_ways():
    assert [cn_to_number(t) for t in ("三千五百", "十二", "两万", "一亿二千万", "三点五", "一九九八")] == [
        3500, 12, 20000, 120_000_000, 3.5, 1998]
    assert cn_to_number("铁路") is None
    for n in (3500, 12, 10, 20000, 120000, 100005, 1203, 3.5):
        assert cn_to_number(number_to_cn(n)) == n
    assert number_to_cn(1998, digit_by_digit=True) == "一九九八"


def test_entities_come_from_jieba_part_of_speech_tags():
    # DEV_0 (范廷颂), DEV_72
    values = analyze("范廷颂是越南罗马天主教枢机。1963年被任为主教")
    entities = {(v.key[0], v.slot) for v in values if v.kind == "entity"}
    assert {("范廷颂", "PER"), ("越南", "LOC")} <= entities
    assert ("上海证券交易所", "ORG") in {(v.key[0], v.slot) for v in analyze("于上海证券交易所上市")}
    # traditional characters fold to simplified before matching
    assert [v.key for v in analyze("於上海證券交易所上市") if v.kind == "entity"][0] == ("上海证券交易所",)


def test_expand_adds_the_other_surface_forms():
    expanded = expand("二〇〇六年于乐以多少钱转会到河南建业？")
    assert "2006年" in expanded and expanded.startswith("二〇〇六年")
    assert "百分之三点五" in expand("股价涨了3.5%吗")
    assert expand("什么是铁路") == "什么是铁路"


# ---- reranking ----------------------------------------------------------------------------------------

# CMRC 2018 dev DEV_8 (于乐), first sentences, and a near-duplicate that differs only in the year and the fee.
ORIGINAL = ("于乐（），中国足球运动员，司职前锋。于乐出身于北京国安，在2006年以2万元转会到河南建业。2007年赛季，"
            "河南建业对阵大连实德，于乐下半场打进制胜一球，帮助球队获得队史首场中超胜利而一战成名。")
NEAR_DUP = ORIGINAL.replace("2006年", "2008年").replace("2万元", "5万元").replace("2007年", "2009年")


def hit(chunk_id: str, text: str, rank: int) -> Hit:
    return Hit(chunk_id=chunk_id, doc_id=chunk_id.split("#")[0], source="cmrc", title="于乐", headings=[], start=0,
               end=len(text), text=text, score=1.0 / rank, rank=rank)


@pytest.mark.parametrize("query", ["于乐在2006年转会到哪个球队？", "于乐在二〇〇六年转会到哪个球队？", "于乐以2万元转会到哪个球队？",
                                   "于乐以两万元转会到哪个球队？"])
def test_the_passage_with_the_query_value_comes_first(query):
    hits = [hit("dup#0", NEAR_DUP, 1), hit("orig#0", ORIGINAL, 2)]
    out = rerank(query, hits)
    assert [h.chunk_id for h in out] == ["orig#0", "dup#0"]
    assert [h.rank for h in out] == [1, 2]
    analysis = analyze_query(query)
    assert evidence(analysis, ORIGINAL) > 0 > evidence(analysis, NEAR_DUP)


def test_a_conflicting_value_outside_the_slot_is_not_penalised():
    # The near-duplicate names 2008年 only in an unrelated sentence: no anchor of the query is near it.
    unrelated = "于乐（），中国足球运动员，司职前锋。2008年北京举办了奥运会。"
    analysis = analyze_query("于乐在2006年转会到哪个球队？")
    assert evidence(analysis, unrelated) == pytest.approx(0.3 / 2)  # the name is there (weight 0.3), the year is not: no conflict


def test_no_change_without_values():
    hits = [hit("dup#0", NEAR_DUP, 1), hit("orig#0", ORIGINAL, 2)]
    for query in ("司职前锋是什么意思？", "什么是铁路", "?"):
        assert not analyze_query(query)
        assert rerank(query, hits) == hits


def test_hits_beyond_depth_keep_their_order():
    hits = [hit(f"d{i}#0", NEAR_DUP, i) for i in range(1, 4)] + [hit("orig#0", ORIGINAL, 4)]
    out = rerank("于乐在2006年转会到哪个球队？", hits, depth=3)
    assert out[-1].chunk_id == "orig#0" and [h.rank for h in out] == [1, 2, 3, 4]


def test_odd_input_does_not_crash():
    assert analyze("") == [] and analyze("   ") == [] and analyze(None) == []  # type: ignore[arg-type]
    assert analyze("？？？!!!") == []
    assert analyze("9" * 3000) and analyze("年月日号%万亿") == []
    assert expand("") == ""
    assert rerank("", []) == [] and rerank("2006年", []) == []
    odd = [hit("a#0", "", 1), hit("b#0", "😀\x00\u200b", 2)]
    assert [h.chunk_id for h in rerank("于乐在2006年转会", odd)] == ["a#0", "b#0"]
    assert evidence(analyze_query("2006年"), "") == 0.0


def test_end_to_end_on_a_bm25_kb_with_the_query_in_chinese_numerals(tmp_path):
    docs = [{"id": "orig", "text": ORIGINAL, "source": "cmrc2018_dev.json#DEV_8", "meta": {"title": "于乐"}},
            {"id": "dup", "text": NEAR_DUP, "source": "near-duplicate", "meta": {"title": "于乐"}}]
    build_kb(docs, tmp_path / "kb", KBConfig(embedder="none"))
    kb = open_kb(tmp_path / "kb")
    query = "于乐在二〇〇六年以多少钱转会到河南建业？"
    hits = kb.search(expand(query), k=5, mode="bm25")
    assert {h.doc_id for h in hits} == {"orig", "dup"}
    assert rerank(query, hits)[0].doc_id == "orig"
    # the reranked hits are the same hits, renumbered
    assert sorted(json.dumps(replace(h, rank=0).to_dict()) for h in rerank(query, hits)) == sorted(
        json.dumps(replace(h, rank=0).to_dict()) for h in hits)
