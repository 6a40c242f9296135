"""Operators on small real inputs: what each removes, repairs or flags, and what it must leave alone."""

import json
from pathlib import Path

import pytest

from domainlm.data import noise, normalize
from domainlm.data.edits import replace_spans
from domainlm.data.quality import QualityScorer, detect_language, quality_filter

FTFY = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "ftfy-cases"

GOOD = "海港银行定期存款的年利率为1.75%，起存金额为50元，期限为三个月至五年。"


def test_replace_spans_merges_overlaps_and_records_old_text():
    result = replace_spans("abcdef", [(1, 3, "", "x"), (2, 4, "", "y"), (5, 6, "Z", "z")])
    assert result.text == "aeZ"
    assert [(c["old"], c["kind"]) for c in result.changes] == [("bcd", "x"), ("f", "z")]


def _ftfy_cases(name):
    return [c for c in json.loads((FTFY / name).read_text(encoding="utf-8")) if c["expect"] == "pass"]


@pytest.mark.parametrize(
    "name", ["in-the-wild.json", "synthetic.json", "language-names.json", "negative.json"]
)
def test_ftfy_cases_repaired_like_fix_encoding(name):
    cases = _ftfy_cases(name)
    assert cases
    wrong = [
        c["label"]
        for c in cases
        if normalize.repair_latin_mojibake(c["original"]).text != c.get("fixed-encoding", c["fixed"])
    ]
    assert wrong == []


def test_ftfy_negative_cases_untouched_by_cjk_repair():
    # Text that merely looks like mojibake must not be "repaired" into Chinese nor flagged.
    for case in _ftfy_cases("negative.json"):
        result = normalize.repair_cjk_mojibake(case["original"])
        assert result.text == case["original"] and not result.flags, case["label"]
        if case.get("fixed-encoding", case["fixed"]) == case["original"]:
            assert normalize.repair_latin_mojibake(case["original"]).changes == []


def test_cjk_mojibake_island_repaired_in_place():
    island = "利率期限".encode().decode("gbk")  # 12 UTF-8 bytes that GBK decodes without loss
    text = "海港银行" + island + "为1.75%。"
    result = normalize.repair_cjk_mojibake(text)
    assert result.text == "海港银行利率期限为1.75%。"
    assert result.changes[0]["kind"] == "mojibake_cjk" and result.changes[0]["old"] == island


def test_cjk_mojibake_big5_repaired_and_damaged_island_flagged():
    big5 = "个人贷款".encode().decode("big5")
    assert normalize.repair_cjk_mojibake("本行" + big5 + "说明。").text == "本行个人贷款说明。"
    damaged = "海港银行，定期".encode().decode("gbk", errors="replace")
    result = normalize.repair_cjk_mojibake("欢迎来到" + damaged + "存款。")
    assert any("\ufffd" in f["text"] for f in result.flags)


def test_cjk_mojibake_leaves_clean_chinese_and_traditional_alone():
    for text in (GOOD * 5, "海港銀行的定期存款年利率為百分之一點七五，客戶可以通過手機銀行辦理相關業務。"):
        result = normalize.repair_cjk_mojibake(text)
        assert result.text == text and not result.flags


def test_normalize_keeps_chinese_punctuation():
    result = normalize.normalize_unicode("ＡＴＭ取款１００元，手续费：０元（免费）！\u200b\r\n")
    assert result.text == "ATM取款100元，手续费：0元（免费）！\n"


def test_to_simplified():
    assert normalize.to_simplified("海港銀行存款利率").text == "海港银行存款利率"


def test_tidy_collapses_blank_lines():
    assert normalize.tidy_whitespace("  a  \n\n\n\nb \n").text == "a\n\nb"


def test_pinyin_removed_after_han_only():
    text = "海港银行（hǎi gǎng yín háng）推出定期存款(dìng qī cún kuǎn)，银行 yín háng 提供服务。Fee (long) applies."
    result = noise.remove_pinyin(text)
    assert result.text == "海港银行推出定期存款，银行提供服务。Fee (long) applies."
    assert {c["kind"] for c in result.changes} == {"pinyin"}
    assert noise.remove_pinyin("信用卡（Visa）年费（annual fee）").changes == []


def test_spam_cut_from_sentence_sentence_kept():
    text = "定期存款年利率为1.75%，【澳门威尼斯人注册送彩金】起存金额为50元，加微信领红包，期限为三年。"
    result = noise.remove_spam(text)
    assert result.text == "定期存款年利率为1.75%，起存金额为50元，期限为三年。"
    assert noise.remove_spam(GOOD).changes == []


def test_furniture_lines_removed_content_kept():
    text = "\n".join(
        [
            GOOD,
            "[图片]",
            "图片来源：海港银行官网",
            "免责声明：本文仅供参考，不构成任何投资建议。",
            "分享到：微信 微博 QQ空间",
            "点赞 收藏 转发",
            "THE END",
            "网友评论",
            "小王 2024-03-01 10:22 利率太低了",
            "小李 3小时前 还行",
        ]
    )
    result = noise.remove_furniture(text)
    assert result.text == GOOD + "\n"
    kinds = {c["kind"] for c in result.changes}
    assert kinds == {"image_placeholder", "disclaimer", "furniture", "comment"}


def test_repeats_and_offtopic_tail():
    text = f"{GOOD}\n第二段内容说明提前支取的规则。\n{GOOD}\n相关阅读\n海港银行信用卡年费减免活动开始了\n"
    no_repeat = noise.remove_repeats(text)
    assert no_repeat.text.count(GOOD) == 1
    tail = noise.remove_offtopic_tail(no_repeat.text)
    assert tail.text == f"{GOOD}\n第二段内容说明提前支取的规则。\n"
    assert noise.remove_offtopic_tail("相关阅读：本行推荐阅读下列条款后再签约。" + GOOD * 3).changes == []


def test_censor_flagged_and_mark_removed():
    text = "该客户因***原因被拒，详见[已屏蔽]文件。"
    result = noise.flag_censor(text)
    assert result.text == "该客户因原因被拒，详见文件。"
    assert [f["text"] for f in result.flags] == ["***", "[已屏蔽]"]
    kept = noise.flag_censor(text, remove=False)
    assert kept.text == text and len(kept.flags) == 2


def test_language_by_script():
    assert detect_language(GOOD)[0] == "zh"
    assert detect_language("Harbor Bank fixed deposits pay 1.75% a year.")[0] == "en"
    assert detect_language("ハーバー銀行の定期預金は年利1.75%です。")[0] == "ja"
    assert detect_language("12345 !!!")[0] == "unknown"


def test_quality_heuristics_drop_junk_keep_prose():
    assert quality_filter(GOOD * 3).drop is None
    junk = "\n".join(["| # | $ | @ |"] * 20)
    result = quality_filter(junk)
    assert result.drop and "many_symbols" in result.drop


def test_learned_scorer_separates_its_classes(tmp_path):
    kept = [
        GOOD,
        "信用卡年费为200元，首年免年费，刷卡满六次免次年年费。",
        "个人住房贷款最长期限为三十年，利率按LPR浮动。",
    ] * 3
    rejected = [
        "点击领取 免费领取 注册送彩金 日赚千元",
        "加微信 刷单 兼职赚钱 稳赚不赔",
        "六合彩 开奖 时时彩 包中",
    ] * 3
    scorer = QualityScorer.train(kept, rejected)
    path = scorer.save(tmp_path / "scorer.npz")
    from domainlm.data.quality import load_scorer

    loaded = load_scorer(path)
    assert loaded.predict("定期存款的利率为2.1%，期限三年，起存金额五十元。") > 0.5
    assert loaded.predict("注册送彩金，加微信，日赚千元，稳赚不赔") < 0.5
    result = quality_filter("注册送彩金，加微信，日赚千元，稳赚不赔。" * 5, threshold=0.0, scorer=str(path))
    assert result.drop and "learned" in result.drop
