"""``chatfile --summary --structure court|meeting``: fields found by document structure, every item cited
to a span of the file as read, model items whose quotes are not in the file dropped, and a file without the
structure a one-line error."""

import json
from pathlib import Path

import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.kb.chatfile import read_documents
from domainlm.kb.structured_summary import (
    CourtDraft,
    MeetingDraft,
    ask_json,
    extract_court,
    summarize_structure,
    to_markdown,
)

DATA = Path(__file__).parent / "data" / "structured"
BENCH = Path("/work/shared/benchmarks")
LAWBENCH = BENCH / "lawbench" / "data" / "zero_shot" / "2-3.json"
CMRC = BENCH / "cmrc2018" / "cmrc2018_dev.json"


@pytest.fixture(autouse=True)
def _outside_any_workspace(tmp_path, monkeypatch):
    # chatfile uses the nearest domainlm.yaml's clean.recipe: run where there is none.
    monkeypatch.chdir(tmp_path)


def source_of(path) -> str:
    """The text citations point into: the file as chatfile reads it (after the clean recipe)."""
    return read_documents(path)[0]["text"]


def assert_cited(summary, source: str) -> int:
    """Every item has a citation whose text is the source at its offsets; returns how many items."""
    items = summary.items()
    assert items
    for name, item in items:
        assert item.citations, (name, item)
        for c in item.citations:
            assert c.file == summary.file
            assert source[c.start:c.end] == c.text and c.text, (name, c)
    return len(items)


def texts(items) -> list[str]:
    return [i.text for i in items]


# ---------------------------------------------------------------------------------------------------
# Court documents, without a model
# ---------------------------------------------------------------------------------------------------
def test_first_instance_judgment():
    path = DATA / "court_first_instance.txt"
    s = summarize_structure(path, "court")
    source = source_of(path)
    assert s.mode == "extractive" and s.language == "zh"
    assert_cited(s, source)
    assert s.case_number.text == "（2023）京0105民初48217号"
    parties = [(p.role, p.name, p.represents) for p in s.parties]
    assert parties == [
        ("原告", "张某某", None),
        ("委托诉讼代理人", "刘某", "张某某"),
        ("被告", "北京恒远建材贸易有限公司", None),
        ("法定代表人", "王某某", "北京恒远建材贸易有限公司"),
        ("被告", "李某某", None),
    ]  # and not the narrative "原告张某某与被告…一案" nor "…到庭参加诉讼"
    assert texts(s.claims) == [
        "判令恒远公司偿还借款本金300000元",
        "判令恒远公司支付自2022年10月1日起至实际还款之日止的逾期利息，按全国银行间同业拆借中心公布的一年期贷款市场报价利率的四倍计算",
        "判令李某某对上述债务承担连带保证责任",
        "本案诉讼费由两被告负担。",
    ]  # the claims stop at 事实和理由
    assert s.facts and all(source.index("本院经审理认定事实如下") <= i.citations[0].start < source.index("本院认为")
                           for i in s.facts)
    assert s.reasoning and all(source.index("本院认为") <= i.citations[0].start < source.index("判决如下") for i in s.reasoning)
    assert any(i.text.startswith("依照《中华人民共和国民法典》") for i in s.reasoning)  # the law applied
    decision = texts(s.decision)
    assert len(decision) == 5 and decision[0] == "北京恒远建材贸易有限公司于本判决生效之日起十日内偿还张某某借款本金300000元"
    assert decision[3] == "驳回张某某的其他诉讼请求。" and decision[4].startswith("案件受理费5800元")
    # The late-payment notice and the appeal notice are boilerplate, the signature block is not a decision.
    assert not any(d.startswith(("如果未按", "如不服")) or "审　判　员" in d for d in decision)


def test_second_instance_judgment_is_not_confused_by_the_first_instance_it_quotes():
    path = DATA / "court_appeal.txt"
    s = summarize_structure(path, "court")
    source = source_of(path)
    assert_cited(s, source)
    assert s.case_number.text == "(2024)苏01民终1532号"
    assert [(p.role, p.name) for p in s.parties if p.represents is None] == [
        ("上诉人（原审被告）", "南京启航物流有限公司"),
        ("被上诉人（原审原告）", "吴某某"),
        ("原审第三人", "南京顺捷劳务派遣有限公司"),
    ]
    assert {p.name: p.represents for p in s.parties if p.represents} == {"周某": "南京启航物流有限公司", "陈某某": "南京启航物流有限公司"}
    assert s.claims[0].text.startswith("撤销一审判决，改判启航公司无需")  # 上诉请求
    # This court's decision, not the first instance's "一审法院判决：…" quoted above it.
    assert texts(s.decision) == ["驳回上诉，维持原判。", "二审案件受理费10元，由南京启航物流有限公司负担。", "本判决为终审判决。"]
    # "一审法院认定事实错误" in the appeal's reasons is no facts cue; the facts end at the first instance's reasoning.
    assert s.facts and all(source.index("一审法院认定事实：") <= i.citations[0].start < source.index("一审法院认为") for i in s.facts)
    assert all(i.citations[0].start >= source.index("本院认为") for i in s.reasoning)


def test_ruling_written_as_one_block():
    path = DATA / "court_ruling.txt"
    s = summarize_structure(path, "court")
    assert_cited(s, source_of(path))
    assert [(p.role, p.name) for p in s.parties] == [("申请人", "杭州禾丰农业科技有限公司"), ("被申请人", "郑某某")]
    assert texts(s.claims) == ["冻结被申请人郑某某名下银行存款520000元，或查封、扣押其相应价值的其他财产。"]
    assert s.reasoning[0].text.startswith("本院经审查认为")
    assert s.decision[0].text.startswith("冻结被申请人郑某某名下的银行存款520000元")
    assert not any(i.text.startswith("如不服") or "书记员" in i.text for i in s.decision)


def test_criminal_judgment():
    """公诉机关 / 被告人 / 辩护人, the prosecution's charge (指控) as the claim, a bracketed note kept whole."""
    path = DATA / "court_criminal.txt"
    s = summarize_structure(path, "court")
    assert_cited(s, source_of(path))
    assert [(p.role, p.name, p.represents) for p in s.parties] == [
        ("公诉机关", "河南省郑州市金水区人民检察院", None), ("被告人", "邢某某", None), ("辩护人", "贾某", "邢某某")]
    assert len(s.claims) == 1 and s.claims[0].text.startswith("2024年1月至2月间，被告人邢某某先后三次")
    assert s.facts[0].text.startswith("经审理查明，2024年1月至2月间")  # the section's opening sentence is kept
    assert s.reasoning[0].text.startswith("本院认为，被告人邢某某以非法占有为目的")
    assert [d.text[:8] for d in s.decision] == ["被告人邢某某犯盗", "（刑期从判决执行", "责令被告人邢某某"]


@pytest.mark.skipif(not LAWBENCH.is_file(), reason="LawBench fixture not present")
def test_real_judgment_sentences_from_lawbench():
    """Real sentences of Chinese divorce judgments: every one that opens the court's view (本院认为) or states
    the claims (诉讼请求：) is found as that field, cited to its own span."""
    rows = json.loads(LAWBENCH.read_text(encoding="utf-8"))
    sentences = [r["question"].removeprefix("句子:") for r in rows]
    views = [t for t in sentences if "本院认为" in t]
    claims = [t for t in sentences if "诉讼请求：" in t]
    assert len(views) >= 15 and claims
    for text in views:
        s = extract_court(text, "lawbench")
        assert s.reasoning, text
        at = text.index("本院认为")
        assert any(c.start <= at < c.end and text[c.start:c.end] == c.text for i in s.reasoning for c in i.citations), text
    for text in claims:
        s = extract_court(text, "lawbench")
        assert s.claims and all(c.start >= text.index("诉讼请求：") + 5 for i in s.claims for c in i.citations), text


@pytest.mark.skipif(not CMRC.is_file(), reason="CMRC 2018 fixture not present")
def test_real_prose_has_no_judgment_or_minutes_structure(tmp_path):
    """Wikipedia passages (CMRC 2018): no structure is invented, and the file is a one-line error."""
    data = json.loads(CMRC.read_text(encoding="utf-8"))
    passages = [p["context"] for a in data["data"] for p in a["paragraphs"]][:200]
    path = tmp_path / "wiki.txt"
    for passage in passages[:20]:
        path.write_text(passage, encoding="utf-8")
        for structure in ("court", "meeting"):
            try:
                summarize_structure(path, structure)
            except DomainlmError as exc:
                assert str(exc).startswith(f"{path}: ") and "structure found" in str(exc)
            else:
                raise AssertionError(f"{structure} structure found in: {passage[:80]}")


# ---------------------------------------------------------------------------------------------------
# Minutes, without a model
# ---------------------------------------------------------------------------------------------------
def test_meeting_minutes():
    path = DATA / "meeting_minutes.txt"
    s = summarize_structure(path, "meeting")
    assert_cited(s, source_of(path))
    roles = {}
    for a in s.attendees:
        roles.setdefault(a.role, []).append(a.name)
    assert roles == {"主持": ["马某某"], "出席": ["马某某", "秦某", "许某某", "韩某", "曹某某"],
                     "列席": ["财务科邓某", "办公室彭某"], "缺席": ["吕某（病假）"], "记录": ["苏某"]}
    assert texts(s.agenda) == ["研究2024年夏粮收购资金安排", "审议《青禾区高标准农田建设项目管理办法（修订稿）》",
                               "部署防汛救灾农业生产恢复工作。"]
    assert [d.text[:6] for d in s.decisions] == ["会议同意从区", "会议原则通过", "会议要求各乡"]
    assert [(a.task, a.owner, a.due) for a in s.actions] == [
        ("夏粮收购资金请示报区财政局", "邓某", "7月15日"),
        ("修改并印发高标准农田项目管理办法", "许某某", "7月31日"),
        ("组织各乡镇开展受灾农田排查，形成灾情报告", "韩某", "7月12日前"),
    ]


def test_minutes_in_other_wording():
    """Markdown headings for the agenda, "会议由…主持", "经研究，同意…", "由X牵头，于…前…" actions."""
    path = DATA / "meeting_variant.md"
    s = summarize_structure(path, "meeting")
    assert_cited(s, source_of(path))
    assert [a.name for a in s.attendees if a.role == "出席"] == ["曾某某", "范某", "汪某某", "金某", "田某某"]
    assert [a.name for a in s.attendees if a.role == "主持"] == ["主任曾某某"]
    assert texts(s.agenda) == ["关于家庭医生签约服务考核结果的通报", "关于新增夜间门诊的讨论"]
    assert any(d.text.startswith("经研究，同意自12月1日起试行三个月") for d in s.decisions)
    assert [(a.owner, a.due) for a in s.actions] == [("公共卫生科", "11月30日"), ("门诊部", "11月27日"), ("田某某", "12月上旬")]
    assert s.actions[0].task == "修订家庭医生团队绩效考核方案"


def test_minutes_docx_with_a_task_table(tmp_path):
    """A .docx read by the knowledge base's reader: paragraphs, and a task table whose rows come back as
    "【表1·第1行】序号：1，工作任务：…，责任人：…，完成时限：…。" lines."""
    import docx

    document = docx.Document()
    document.add_heading("东湖街道安全生产工作专题会议纪要", 1)
    document.add_paragraph("2024年9月3日，街道召开安全生产工作专题会议，会议由街道办事处副主任贺某主持。")
    document.add_paragraph("参会人员：贺某、钟某某、任某、姚某某")
    document.add_paragraph("会议议题：")
    document.add_paragraph("1. 通报8月份辖区安全生产检查情况；")
    document.add_paragraph("2. 部署国庆节前安全隐患排查整治工作。")
    document.add_paragraph("会议决定，9月10日至9月25日在全街道开展节前安全隐患集中排查整治行动。")
    document.add_paragraph("具体任务分工如下：")
    table = document.add_table(rows=1, cols=4)
    for cell, head in zip(table.rows[0].cells, ["序号", "工作任务", "责任人", "完成时限"], strict=True):
        cell.text = head
    for row in (["1", "对辖区12家危化品经营单位逐一检查", "钟某某", "9月20日"], ["2", "组织沿街商铺消防通道清理", "任某", "9月25日"]):
        for cell, value in zip(table.add_row().cells, row, strict=True):
            cell.text = value
    path = tmp_path / "minutes.docx"
    document.save(path)
    s = summarize_structure(path, "meeting")
    source = source_of(path)
    assert_cited(s, source)
    assert texts(s.agenda) == ["通报8月份辖区安全生产检查情况", "部署国庆节前安全隐患排查整治工作。"]
    assert texts(s.decisions)[0].startswith("会议决定，9月10日至9月25日")
    assert [(a.task, a.owner, a.due) for a in s.actions] == [
        ("对辖区12家危化品经营单位逐一检查", "钟某某", "9月20日"), ("组织沿街商铺消防通道清理", "任某", "9月25日")]
    assert all(not a.citations[0].text.startswith("【") for a in s.actions)  # the row label is not the action


def test_markdown_puts_a_span_after_every_item():
    s = summarize_structure(DATA / "meeting_minutes.txt", "meeting")
    md = to_markdown(s)
    lines = [line for line in md.splitlines() if line[:1].isdigit()]
    assert len(lines) == len(s.items())
    for line, (_, item) in zip(lines, s.items(), strict=True):
        c = item.citations[0]
        assert line.endswith(f"[§ {c.start}–{c.end}]"), line
    assert "## 待办事项" in md and "责任人：邓某；完成时限：7月15日" in md


# ---------------------------------------------------------------------------------------------------
# With a model
# ---------------------------------------------------------------------------------------------------
class FixedJSONModel:
    """Stands in for a model without a local tokenizer (an upstream server): answers every window with the
    same JSON and records what it was asked with."""

    def __init__(self, answer: dict | str):
        self.answer = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        self.calls = []

    def chat(self, conversations, **kwargs):
        self.calls.append(kwargs)
        return [self.answer for _ in conversations]


def test_model_items_are_kept_only_when_their_quote_is_in_the_file():
    path = DATA / "court_first_instance.txt"
    source = source_of(path)
    wrapped = "依照《中华人民共和国民法典》第六百七十五条、第六百七十六条、\n第六百八十六条"  # the file has no line break there
    model = FixedJSONModel({
        "parties": [
            {"role": "原告", "name": "张某某", "represents": None, "quote": "原告：张某某"},
            {"role": "被告", "name": "赵某", "represents": None, "quote": "被告：李某某"},  # name not in its quote
        ],
        "claims": [
            {"text": "偿还借款本金300000元", "quote": "判令恒远公司偿还借款本金300000元"},
            {"text": "赔偿精神损失50000元", "quote": "判令恒远公司赔偿精神损失费50000元"},  # hallucinated quote
            {"text": "偿还借款本金400000元", "quote": "判令恒远公司偿还借款本金300000元"},  # a number the quote lacks
        ],
        "facts": [{"text": "借条载明借款30万元", "quote": "恒远"}],  # too short to prove anything
        "reasoning": [{"text": "适用民法典", "quote": wrapped}],
        "decision": [{"text": "驳回其他诉讼请求", "quote": "驳回张某某的其他诉讼请求。"}, "not an object"],
    })
    s = summarize_structure(path, "court", model)
    assert s.mode == "model"
    assert_cited(s, source)
    assert [(p.role, p.name) for p in s.parties] == [("原告", "张某某")]
    assert texts(s.claims) == ["偿还借款本金300000元"]
    assert s.facts == []
    assert s.reasoning[0].citations[0].text == wrapped.replace("\n", "")  # only whitespace may differ
    assert texts(s.decision) == ["驳回其他诉讼请求"]
    reasons = {(d.field, d.reason.split(" '")[0].split(",")[0]) for d in s.dropped}
    assert reasons == {
        ("parties", "its name"), ("claims", "its quote is not in the file"), ("claims", "states 400000"),
        ("facts", "its quote is shorter than 4 characters"), ("decision", "does not follow the schema (Input should be a valid dictionary or instance of DraftItem)"),
    }
    # Asked for JSON to the draft schema (an upstream constrains to it).
    fmt = model.calls[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == CourtDraft.model_json_schema()
    # A long document is read window by window; an item two windows both report is kept once.
    windowed = summarize_structure(path, "court", FixedJSONModel(model.answer), window_chars=500)
    assert windowed.model_dump(exclude={"dropped"}) == s.model_dump(exclude={"dropped"}) and len(windowed.dropped) > 5
    md = to_markdown(s)
    assert "未采用模型输出 5 项" in md and f"[§ {s.claims[0].citations[0].start}–" in md


def test_a_model_summary_with_nothing_supported_is_an_error():
    path = DATA / "meeting_minutes.txt"
    model = FixedJSONModel({"attendees": [{"name": "赵某", "role": "出席", "quote": "出席：赵某、钱某"}], "agenda": [],
                            "decisions": [{"text": "会议决定撤销农业农村局", "quote": "会议决定撤销农业农村局"}], "actions": []})
    with pytest.raises(DomainlmError, match=r"meeting_minutes.txt: none of the model's 2 meeting summary items is supported"):
        summarize_structure(path, "meeting", model)
    with pytest.raises(DomainlmError, match=r"meeting_minutes.txt: none of the model's 1 meeting summary items .*not a JSON object"):
        summarize_structure(path, "meeting", FixedJSONModel("我无法完成这个任务。"))


def test_a_local_model_decodes_under_the_schema(tmp_path):
    """A real (untrained) transformers model: the answer parses and follows the draft schema because the
    grammar holds it there; what it says is not in the file, so the summary is an error, never a success."""
    from domainlm.models import load_model
    from domainlm.models.testing import make_tiny_model

    model = load_model(str(make_tiny_model(tmp_path / "tiny")))
    for draft in (CourtDraft, MeetingDraft):
        [raw] = ask_json(model, [[{"role": "user", "content": "会议纪要：出席：张某、李某。"}]], draft.model_json_schema(),
                         max_new_tokens=64)
        draft.model_validate_json(raw)
    with pytest.raises(DomainlmError, match=r"court_ruling.txt: (none of the model's|the model found no)"):
        summarize_structure(DATA / "court_ruling.txt", "court", model, max_new_tokens=64)


# ---------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------
def test_cli_json_and_markdown(capsys):
    path = DATA / "court_appeal.txt"
    assert main(["chatfile", str(path), "--summary", "--structure", "court", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["structure"] == "court" and out["mode"] == "extractive"
    source = source_of(path)
    for name in ("parties", "claims", "facts", "reasoning", "decision"):
        assert out[name], name
        for item in out[name]:
            for c in item["citations"]:
                assert source[c["start"]:c["end"]] == c["text"]
    assert main(["chatfile", str(DATA / "meeting_minutes.txt"), "--summary", "--structure", "meeting"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# 会议纪要摘要：meeting_minutes.txt") and "## 决定事项" in md and "[§ " in md


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    prose = tmp_path / "notice.txt"
    prose.write_text("海港银行将于下月起调整部分网点的营业时间，具体安排以各网点公告为准。客户可通过手机银行查询最近网点的营业时间和地址。",
                     encoding="utf-8")
    assert main(["chatfile", str(prose), "--summary", "--structure", "court"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and f"{prose}: no court judgment structure found" in err, err
    assert main(["chatfile", str(prose), "--summary", "--structure", "minutes"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "minutes" in err and "court" in err and "meeting" in err, err
    records = tmp_path / "cases.jsonl"
    records.write_text("".join(json.dumps({"text": (DATA / name).read_text(encoding="utf-8")}, ensure_ascii=False) + "\n"
                               for name in ("court_appeal.txt", "court_ruling.txt")), encoding="utf-8")
    assert main(["chatfile", str(records), "--summary", "--structure", "court"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{records}: 2 documents" in err, err
    assert main(["chatfile", str(prose), "--ask", "营业时间？", "--structure", "court"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--structure" in err and "--summary" in err, err
