"""PII detectors (check digits, Luhn) and dedup on real Chinese text."""

import json
import random
from pathlib import Path

from domainlm.data.dedup import Deduplicator, signature
from domainlm.data.pii import find_pii, luhn_ok, redact_pii, valid_id_card

CMRC = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"


def _id_with_check(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def test_id_card_check_digit_and_date():
    assert valid_id_card("11010519491231002X")
    assert not valid_id_card("110105194912310021")  # wrong check digit
    assert not valid_id_card(_id_with_check("11010519491331002"))  # month 13


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_find_pii_types_and_false_positives():
    text = (
        "客户张三，身份证号11010519491231002X，手机138-1234-5678，备用+86 13912345678，"
        "银行卡6222 0212 3456 7890 128，邮箱zhang.san@harbor-bank.cn，"
        "住址上海市浦东新区世纪大道100号3栋2单元1201室。客服热线95599，订单号110105194912310021，卡号4111111111111112。"
    )
    found = {(s.type, s.text) for s in find_pii(text)}
    assert ("id_card", "11010519491231002X") in found
    assert ("mobile", "138-1234-5678") in found and ("mobile", "+86 13912345678") in found
    assert ("email", "zhang.san@harbor-bank.cn") in found
    assert any(t == "address" and s.startswith("上海市浦东新区世纪大道100号") for t, s in found)
    assert luhn_ok("6222021234567890128")  # the card number in the text is Luhn-valid
    assert ("bank_card", "6222 0212 3456 7890 128") in found
    # invalid check digit / Luhn: not PII; short service numbers: not PII
    assert not any(s in {"110105194912310021", "4111111111111112", "95599"} for _, s in found)


def test_redact_uses_typed_placeholders():
    result = redact_pii("电话13812345678，邮箱a.b@example.com。")
    assert result.text == "电话[MOBILE]，邮箱[EMAIL]。"
    assert result.meta == {"pii": {"mobile": 1, "email": 1}}


def _passages(n):
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    return [p["context"] for d in data for p in d["paragraphs"] if len(p["context"]) > 300][:n]


def test_near_duplicates_found_distinct_passages_kept():
    passages = _passages(30)
    rng = random.Random(0)
    dedup = Deduplicator(threshold=0.7)
    for i, text in enumerate(passages):
        assert dedup.check(f"p{i}", text, signature(text)) is None
    # 1% of characters substituted: still a near duplicate of its source
    for i, text in enumerate(passages[:10]):
        chars = list(text)
        for pos in rng.sample(range(len(chars)), len(chars) // 100):
            chars[pos] = "的"
        edited = "".join(chars)
        evidence = dedup.check(f"e{i}", edited, signature(edited))
        assert evidence and evidence["type"] == "near" and evidence["duplicate_of"] == f"p{i}"
        assert evidence["jaccard"] >= 0.7
    exact = dedup.check("x", passages[3] + "\n", signature(passages[3]))
    assert exact == {"type": "exact", "duplicate_of": "p3", "jaccard": 1.0}
    assert set(dedup.clusters) == {f"p{i}" for i in range(10)}
