"""The clean stage end to end on real files: every format, bad inputs, determinism, caching, CLI."""

import json
import subprocess
import sys

import pytest

from domainlm.data import clean
from domainlm.data.ingest import Rejected, decode_bytes
from domainlm.io import read_jsonl

PARA = (
    "海港银行定期存款的年利率为1.75%，起存金额为50元，期限为三个月至五年。"
    "客户可通过手机银行或网点办理，提前支取的部分按活期利率计息。"
)
NOISY = "\n".join(
    [
        "海港银行（hǎi gǎng yín háng）定期存款产品说明",
        PARA,
        "到期后可选择自动转存，【澳门威尼斯人注册送彩金】转存期限与原期限相同。",
        "如有疑问请联系客户经理，电话13812345678，邮箱service.team@example.com。",
        PARA,
        "[图片]",
        "免责声明：本文仅供参考，不构成任何投资建议。",
        "分享到：微信 微博 QQ空间",
        "相关阅读",
        "海港银行信用卡年费减免活动开始了",
    ]
)
ENGLISH = (
    "Harbor Bank fixed deposits pay 1.75% a year. The minimum deposit is 50 dollars and terms run from three "
    "months to five years. Early withdrawals earn the demand deposit rate."
)
LOAN = "个人住房贷款最长期限为三十年，首付比例不低于百分之二十，贷款利率按照贷款市场报价利率加点确定。"
SAVINGS = (
    "Savings accounts at Harbor Bank have no monthly fee. Interest is credited every quarter, and customers can "
    "open an account online with a valid identity document."
)
CARDS = (
    "Harbor credit cards come with a 50 day interest-free period. The annual fee is waived after six purchases, "
    "and lost cards are replaced within five working days."
)
RECORD = (
    "Personal loans are available to customers aged 22 to 55. Loans up to 300 thousand yuan are repaid in equal "
    "monthly instalments over at most five years."
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder with every supported format, several encodings and several kinds of bad file."""
    root = tmp_path_factory.mktemp("corpus") / "raw"
    root.mkdir()
    (root / "a_noisy_gbk.txt").write_bytes(NOISY.encode("gbk"))
    (root / "z_copy_utf16.txt").write_bytes(NOISY.encode("utf-16"))  # exact duplicate after cleaning
    big5 = "海港銀行個人貸款的年利率為百分之四點五，貸款期限最長為五年，客戶可以通過手機銀行辦理相關業務並查詢進度。"
    (root / "trad_big5.txt").write_bytes(big5.encode("big5"))
    (root / "page.html").write_text(
        "<html><head><title>Deposits</title></head><body><nav>首页 &gt; 存款</nav><article><h1>定期存款</h1>"
        f"<p>大额存单的起存金额为20万元，期限有一个月至三年共九档，可在二级市场转让。</p><p>{LOAN}</p></article><footer>版权所有 海港银行</footer></body></html>",
        encoding="utf-8",
    )
    (root / "notes.md").write_text("# Fixed deposits\n\n" + ENGLISH + "\n", encoding="utf-8")
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_paragraph(SAVINGS)
    document.save(root / "manual.docx")
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, CARDS)
    pdf.output(str(root / "cards.pdf"))
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(root / "cards.pdf"))
    writer.encrypt("secret", algorithm="RC4-128")
    with open(root / "locked.pdf", "wb") as handle:
        writer.write(handle)
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (root / "broken.docx").write_bytes(b"PK not a zip")
    (root / "empty.txt").write_text("  \n", encoding="utf-8")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 8)
    records = [
        {"id": "r1", "text": RECORD},
        {"id": "r2", "body": "no text field"},
        {"id": "r3", "text": "| # | $ | @ | x |\n" * 10},
    ]
    (root / "records.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records[:2])
        + "\n{bad json\n"
        + json.dumps(records[2], ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    (root / "table.csv").write_text(
        'id,text\n1,"海港银行通知存款需提前一天或七天通知支取，最低起存金额为5万元，利率按支取日挂牌利率计算。"\n',
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="module")
def cleaned(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = clean([corpus], out, {"workers": 2})
    return out, result


def _by_source(path):
    return {r["source"]: r for r in read_jsonl(path)}


def test_every_format_ingested_and_noise_removed(cleaned):
    out, result = cleaned
    kept = _by_source(out / "clean.jsonl")
    noisy = kept["raw/a_noisy_gbk.txt"]
    assert noisy["meta"]["encoding"] == "gb18030"
    text = noisy["text"]
    for gone in (
        "hǎi",
        "威尼斯人",
        "13812345678",
        "service.team@example.com",
        "[图片]",
        "免责声明",
        "分享到",
        "相关阅读",
        "信用卡年费",
    ):
        assert gone not in text
    assert text.count("起存金额为50元") == 1  # repeated paragraph removed, first kept
    assert "到期后可选择自动转存，转存期限与原期限相同。" in text  # spam cut, sentence kept
    assert "[MOBILE]" in text and "[EMAIL]" in text
    assert kept["raw/trad_big5.txt"]["text"].startswith("海港银行个人贷款的年利率")  # Big5 decoded, t2s applied
    assert "大额存单" in kept["raw/page.html"]["text"] and "版权所有" not in kept["raw/page.html"]["text"]
    assert "Savings accounts" in kept["raw/manual.docx"]["text"]
    assert "interest-free period" in kept["raw/cards.pdf"]["text"]
    assert kept["raw/notes.md"]["meta"]["lang"] == "en"
    assert kept["raw/table.csv"]["text"].startswith("海港银行通知存款")
    assert kept["raw/records.jsonl"]["meta"]["orig_id"] == "r1"


def test_bad_inputs_rejected_with_reasons(cleaned):
    out, result = cleaned
    rejected = read_jsonl(out / "rejected.jsonl")
    reasons = {(r["source"], r["stage"]): r["reason"] for r in rejected}
    assert "encrypted" in reasons[("raw/locked.pdf", "ingest")]
    assert "PDF" in reasons[("raw/broken.pdf", "ingest")]
    assert "docx" in reasons[("raw/broken.docx", "ingest")]
    assert reasons[("raw/empty.txt", "ingest")] == "empty document"
    assert "binary" in reasons[("raw/blob.bin", "ingest")]
    record_reasons = sorted(r["reason"] for r in rejected if r["source"] == "raw/records.jsonl")
    assert any("no text field 'text'" in x for x in record_reasons)
    assert any("not valid JSON" in x for x in record_reasons)
    assert any(x.startswith("quality") for x in record_reasons)
    dup = (
        reasons[("raw/a_noisy_gbk.txt", "dedup")]
        if ("raw/a_noisy_gbk.txt", "dedup") in reasons
        else reasons[("raw/z_copy_utf16.txt", "dedup")]
    )
    assert "exact duplicate of" in dup
    assert result.metrics["duplicates"] == 1


def test_trace_has_every_document_and_operator(cleaned, corpus):
    out, result = cleaned
    trace = read_jsonl(out / "trace.jsonl")
    assert len(trace) == result.metrics["documents"]
    ids = [t["id"] for t in trace]
    assert len(ids) == len(set(ids))
    noisy = next(t for t in trace if t["source"] == "raw/a_noisy_gbk.txt")
    ops = [o["op"] for o in noisy["ops"]]
    assert ops[0] == "fix_mojibake" and ops[-1] == "dedup"
    spam = next(o for o in noisy["ops"] if o["op"] == "remove_spam")
    assert spam["changes"][0]["old"] == "【澳门威尼斯人注册送彩金】"
    pii = next(o for o in noisy["ops"] if o["op"] == "redact_pii")
    assert all("13812345678" not in c["old"] for c in pii["changes"])  # the trace does not leak PII


def test_datacard_written(cleaned):
    out, _ = cleaned
    md = (out / "datacard.md").read_text(encoding="utf-8")
    assert "| remove_spam | 2 |" in md and "| mobile | 2 |" in md  # the noisy file and its UTF-16 copy
    html = (out / "datacard.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["outputs"]) >= {
        "clean.jsonl",
        "rejected.jsonl",
        "trace.jsonl",
        "datacard.md",
        "datacard.html",
    }


def test_byte_identical_rerun_any_workers_and_cache(cleaned, corpus, tmp_path):
    out, first = cleaned
    again = clean([corpus], tmp_path / "single", {"workers": 1})
    for name in (
        "clean.jsonl",
        "rejected.jsonl",
        "trace.jsonl",
        "datacard.md",
        "datacard.html",
        "datacard_quality.png",
    ):
        assert (out / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    assert again.metrics["kept"] == first.metrics["kept"]
    cached = clean([corpus], out, {"workers": 2})
    assert cached.skipped and cached.metrics["kept"] == first.metrics["kept"]


def test_decode_bytes_encodings():
    text = "海港银行个人贷款说明"
    assert decode_bytes(text.encode("gb18030")) == (text, "gb18030")
    assert decode_bytes(text.encode("utf-16-le"))[0] == text
    assert decode_bytes(("\ufeff" + text).encode("utf-8"))[0] == text
    with pytest.raises(Rejected):
        decode_bytes(b"\x00\x01\x02\x03" * 100)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "domainlm", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_explain_errors_and_run(corpus, tmp_path):
    explain = _cli("clean", "--explain", "--recipe", "default-en", cwd=tmp_path)
    assert explain.returncode == 0 and "remove_spam" in explain.stdout and "remove_pinyin" not in explain.stdout
    missing = _cli("clean", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert missing.returncode != 0 and "nope: no such file or folder" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("operators:\n  - op: remove_spam\n    wrods: [x]\n", encoding="utf-8")
    typo = _cli("clean", str(corpus / "notes.md"), "--out", str(tmp_path / "o"), "--recipe", str(bad), cwd=tmp_path)
    assert typo.returncode != 0 and "operators[0] (remove_spam): unknown parameter 'wrods'" in typo.stderr
    assert not (tmp_path / "o" / "clean.jsonl").exists()
    ok = _cli(
        "clean",
        str(corpus / "notes.md"),
        str(corpus / "table.csv"),
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "kept 2, rejected 0, duplicates 0 of 2 documents" in ok.stdout


def test_quality_scorer_command_trains_on_clean_and_rejected(tmp_path, capsys):
    from domainlm.data.commands import quality_scorer_command
    from domainlm.data.quality import load_scorer
    from domainlm.io import write_jsonl

    good = [{"text": t} for t in (PARA, LOAN, SAVINGS, CARDS, RECORD, ENGLISH)]
    bad = [
        {"text": t}
        for t in ("注册送彩金 加微信 日赚千元", "| # | $ | @ |\n" * 5, "点击领取 免费领取 稳赚不赔", "$$$ ### !!!")
    ]
    write_jsonl(tmp_path / "kept.jsonl", good)
    write_jsonl(tmp_path / "rejected.jsonl", bad)
    quality_scorer_command(
        kept=[tmp_path / "kept.jsonl"],
        rejected=[tmp_path / "rejected.jsonl"],
        out=tmp_path / "s.npz",
        text_field="text",
    )
    assert "trained on 6 kept / 4 rejected" in capsys.readouterr().out
    scorer = load_scorer(tmp_path / "s.npz")
    assert scorer.predict(LOAN) > 0.5 > scorer.predict("注册送彩金 加微信 日赚千元")


def test_ids_stable_and_unique_across_same_named_folders(tmp_path):
    from domainlm.data.ingest import iter_units

    for folder in ("a", "b"):
        (tmp_path / folder / "web").mkdir(parents=True)
        (tmp_path / folder / "web" / "x.txt").write_text(PARA, encoding="utf-8")
    units = list(iter_units([tmp_path / "a" / "web", tmp_path / "b" / "web"]))
    assert units[0].source == "web/x.txt" and len({u.id for u in units}) == 2
    again = list(iter_units([tmp_path / "a" / "web", tmp_path / "b" / "web"]))
    assert [u.id for u in again] == [u.id for u in units]
