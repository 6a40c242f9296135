"""Structured summaries of one long document, every item cited to a span of the source text.

Two structures, the two documents courts and offices summarise most:

* ``court``: a judgment or ruling (判决书, 裁定书, 调解书; first or second instance): parties with their
  roles and names, claims (诉讼请求 / 上诉请求), facts found (经审理查明), the court's reasoning (本院认为)
  and the decision (判决如下 / 裁定如下 items).
* ``meeting``: minutes (会议纪要 / 会议记录): attendees, agenda items, decisions, action items (owner,
  task, due date when stated).

Without a model the fields are found by document structure: the cue phrases and enumerations these genres
are written with (本院认为, 判决如下, 议题, 会议议定, 责任人, 完成时限 ...), not by anything a sample
document happens to say. With a model, the model is asked, window by window, for JSON that follows a
pydantic schema (held to the schema while decoding for a local transformers model, through the server's
constrained decoding; asked for through ``response_format`` otherwise), and every item must quote the
window verbatim: the quote is looked up in the source and an item whose quote is not there, or whose name,
owner, date or numbers are not in the quoted span, is dropped and listed under ``dropped``.

Every citation is ``{file, start, end, text}`` with ``text == source[start:end]``, where the source is the
document as chatfile reads it (after the clean recipe). A summary with no cited item is never returned: it
is a DomainlmError naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domainlm.errors import DomainlmError
from domainlm.kb.chatfile import DEFAULT_RECIPE, extractive_summary, read_documents
from domainlm.kb.chunking import chunk_document
from domainlm.kb.text import language, split_sentences
from domainlm.models import load_model
from domainlm.parsing import extract_json

STRUCTURES = ("court", "meeting")


# ---------------------------------------------------------------------------------------------------
# What a summary is
# ---------------------------------------------------------------------------------------------------
class Citation(BaseModel):
    file: str
    start: int = Field(description="Character offset of the span in the document as read (after the clean recipe).")
    end: int
    text: str = Field(description="The span itself: source[start:end].")


class Item(BaseModel):
    text: str
    citations: list[Citation] = Field(min_length=1)


class Party(Item):
    role: str = Field(description="原告, 被告, 上诉人, 被申请人, 第三人, 委托诉讼代理人 ...")
    name: str
    represents: str | None = Field(None, description="For an agent or legal representative: the party's name.")


class Attendee(Item):
    name: str
    role: str = Field(description="出席 | 列席 | 主持 | 记录 | 缺席")


class Action(Item):
    task: str
    owner: str | None = None
    due: str | None = None


class Dropped(BaseModel):
    """A model item left out of the summary, with why."""

    field: str
    item: dict
    reason: str


class StructuredSummary(BaseModel):
    file: str
    structure: str
    mode: str = Field(description="extractive | model")
    language: str
    dropped: list[Dropped] = Field(default_factory=list)

    def items(self) -> list[tuple[str, Item]]:
        """Every (field, item) of the summary, in field order."""
        return [(name, item) for name in FIELDS[self.structure] for item in getattr(self, name)] + [
            (name, getattr(self, name)) for name in ("case_number",) if getattr(self, name, None) is not None
        ]


class CourtSummary(StructuredSummary):
    structure: Literal["court"] = "court"
    case_number: Item | None = None
    parties: list[Party] = Field(default_factory=list)
    claims: list[Item] = Field(default_factory=list)
    facts: list[Item] = Field(default_factory=list)
    reasoning: list[Item] = Field(default_factory=list)
    decision: list[Item] = Field(default_factory=list)


class MeetingSummary(StructuredSummary):
    structure: Literal["meeting"] = "meeting"
    attendees: list[Attendee] = Field(default_factory=list)
    agenda: list[Item] = Field(default_factory=list)
    decisions: list[Item] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)


FIELDS = {
    "court": ("parties", "claims", "facts", "reasoning", "decision"),
    "meeting": ("attendees", "agenda", "decisions", "actions"),
}
# A summary must have at least one of these: parties or attendees alone are a letterhead, not a judgment.
_CORE = {"court": ("claims", "facts", "reasoning", "decision"), "meeting": ("agenda", "decisions", "actions")}
_CUES_NAMED = {"court": "诉讼请求, 经审理查明, 本院认为, 判决如下/裁定如下", "meeting": "议题, 会议决定/议定, 责任人/完成时限"}


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------
def summarize_structure(
    path: str | Path, structure: str, model=None, *, recipe=DEFAULT_RECIPE, text_field: str = "text",
    window_chars: int = 3000, max_new_tokens: int = 1024, label: str | None = None,
) -> StructuredSummary:
    """A ``court`` or ``meeting`` summary of one file read through the clean recipe (see the module doc).

    ``label``: the name the summary and its citations give the file (default: ``path``), e.g. an upload's own
    name rather than the temporary file it was written to."""
    if structure not in STRUCTURES:
        raise DomainlmError(f"unknown summary structure '{structure}' (use one of {', '.join(STRUCTURES)})")
    docs = read_documents(path, recipe, text_field=text_field)
    if len(docs) > 1:
        raise DomainlmError(f"{path}: {len(docs)} documents; a {structure} summary reads one document (one record or one file)")
    text, file = docs[0]["text"], label or str(path)
    if model is None:
        summary = extract_structure(text, structure, file)
    else:
        model = load_model(model) if isinstance(model, str) else model
        summary = model_structure(text, structure, file, model, window_chars=window_chars, max_new_tokens=max_new_tokens)
    check_citations(summary, text)
    return summary


def check_citations(summary: StructuredSummary, source: str) -> None:
    """Every citation's text is the source at its offsets, and at least one core field has an item."""
    for name, item in summary.items():
        for c in item.citations:
            if not (0 <= c.start < c.end <= len(source)) or source[c.start:c.end] != c.text:
                raise DomainlmError(f"{summary.file}: {name} item cites [{c.start}:{c.end}], which is not that text of the file")
    if not any(getattr(summary, name) for name in _CORE[summary.structure]):
        what = "court judgment" if summary.structure == "court" else "meeting-minutes"
        if summary.mode == "model" and summary.dropped:
            reasons = sorted({d.reason for d in summary.dropped})
            raise DomainlmError(f"{summary.file}: none of the model's {len(summary.dropped)} {summary.structure} summary items "
                                f"is supported by the file ({'; '.join(reasons[:2])})")
        if summary.mode == "model":
            raise DomainlmError(f"{summary.file}: the model found no {what} structure (an empty {summary.structure} summary)")
        raise DomainlmError(f"{summary.file}: no {what} structure found (none of {_CUES_NAMED[summary.structure]})")


# ---------------------------------------------------------------------------------------------------
# Without a model: document structure
# ---------------------------------------------------------------------------------------------------
_NUM_ZH = "一二三四五六七八九十"
# List markers as judgments and minutes write them: 一、 （一） 1. 1、 (1) ①.
_ENUM = re.compile(rf"(?:[{_NUM_ZH}]{{1,3}}[、．]|[（(][{_NUM_ZH}\d]{{1,3}}[）)]|\d{{1,2}}(?:[、．]|\.(?!\d))|[①-⑳])[ \t　]*")
# A marker counts where an item can start: a line start, or after the previous item's ；。：
_ENUM_AT = re.compile(rf"(?:^|(?<=[\n；;。：:]))[ \t　]*{_ENUM.pattern}", re.M)
_TRIM = " \t\r\n　；;，,、"
# What may open a line before its content: blanks, a Markdown heading mark or a bullet.
_LEAD = r"[ \t　]*(?:#{1,6}[ \t]+|[-*•·][ \t]+)?"


def _trim(text: str, s: int, e: int) -> tuple[int, int] | None:
    """(s, e) without surrounding blanks and trailing separators; None when nothing is left."""
    while s < e and text[s] in _TRIM:
        s += 1
    while e > s and text[e - 1] in _TRIM:
        e -= 1
    return (s, e) if e > s and re.search(r"\w", text[s:e]) else None


def _cite(text: str, file: str, s: int, e: int) -> Citation:
    return Citation(file=file, start=s, end=e, text=text[s:e])


def _paragraphs(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """Lines of text[s:e] with content, as offsets."""
    out, pos = [], s
    for line in text[s:e].split("\n"):
        span = _trim(text, pos, pos + len(line))
        if span:
            out.append(span)
        pos += len(line) + 1
    return out


def _list_items(text: str, s: int, e: int, *, by: str = "sentence") -> list[tuple[int, int]]:
    """Items of text[s:e]: each paragraph split at its list markers, else into sentences (``by="sentence"``)
    or kept whole (``by="paragraph"``)."""
    items = []
    for ps, pe in _paragraphs(text, s, e):
        marks = list(_ENUM_AT.finditer(text, ps, pe))
        if marks:
            head = _trim(text, ps, marks[0].start())
            if head and not text[head[0]:head[1]].endswith(("：", ":")):
                items.append(head)  # text before the first marker that is not its lead-in
            for m, nxt in zip(marks, [*marks[1:], None], strict=True):
                span = _trim(text, m.end(), nxt.start() if nxt else pe)
                if span:
                    items.append(span)
        elif by == "sentence" and not (text[ps] in "（(" and text[pe - 1] in "）)"):  # a bracketed note stays whole
            items += [sp for sp in (_trim(text, a, b) for a, b in split_sentences(text[ps:pe], ps)) if sp]
        else:
            items.append((ps, pe))
    return items


# -- court ------------------------------------------------------------------------------------------
_PARTY_ROLES = (
    "附带民事诉讼原告人", "附带民事诉讼被告人", "再审申请人", "申请再审人", "被申请再审人", "申请执行人", "被执行人",
    "原审原告", "原审被告", "原审第三人", "反诉原告", "反诉被告", "公诉机关", "被上诉人", "上诉人", "被申请人",
    "申请人", "被申诉人", "申诉人", "被告人", "自诉人", "第三人", "异议人", "案外人", "原告", "被告",
)
_AGENT_ROLES = (
    "委托诉讼代理人", "委托代理人", "诉讼代理人", "法定代理人", "指定代理人", "诉讼代表人", "法定代表人", "指定辩护人",
    "辩护人", "负责人", "经营者",
)
_ROLE_ALT = "|".join(sorted(_PARTY_ROLES + _AGENT_ROLES, key=len, reverse=True))
# A party line: at a line or sentence start, the role, an optional second role in brackets (上诉人（原审被告）),
# an optional colon, then the name up to the first comma, full stop or bracket.
_PARTY = re.compile(
    rf"(?:^|(?<=[\n。；;]))[ \t　]*(?P<role>{_ROLE_ALT})(?P<alias>[（(][^（）()\n]{{1,20}}[）)])?[：:]?[ \t　]*"
    r"(?P<name>[^，,。；;：:（(\n \t　]{1,40})",
    re.M,
)
# What follows a role word in a sentence about the party, not in its line: "原告诉称", "被告辩称", "原告张某与被告…一案".
_NOT_A_NAME = re.compile(r"诉称|辩称|述称|认为|不服|一案|向本院|提出|请求|^[诉与对的及和称在因以已未并均应亦也]|^某$")
# A sentence that narrates the case ("原告张某与被告李某借款纠纷一案，本院于…") rather than introducing a party.
_CASE_SENTENCE = re.compile(r"一案|诉称|辩称|述称|到庭|不服|立案|审理|判决|裁定")
_CASE_NUMBER = re.compile(r"[（(〔\[]\d{4}[）)〕\]][^\s，,。；;：:（()）]{2,30}?号")
_CLAIMS = re.compile(
    r"(?:诉讼请求|上诉请求|起诉请求|再审请求|反诉请求|申请请求|复议请求|请求事项|诉请|请求判令|请求法院判令|请求本院判令|"
    r"申请事项|(?<=[\n。，,；;])请求|(?<=检察院)指控|公诉机关指控)"
    r"(?:为|是|如下)?[：:]"
)
# A line that opens another part of the document, list-numbered or not ("二、议定事项", "事实和理由：").
_SECTION_WORD = re.compile(
    r"(?:[一二三四五六七八九十]{1,3}[、．]|[（(][一二三四五六七八九十\d]{1,3}[）)]|\d{1,2}[、．.])?[ \t　]*"
    r"(?:会议)?(?:议定事项|决定事项|决议事项|议题|议程|待办事项|任务分工|工作安排|参会人员|出席|列席|其他事项|事实(?:和|与|及)理由)"
    r"[^\n]{0,12}(?:\n|$)"
)
_CLAIMS_END = re.compile(r"事实(?:和|与|及)理由|事实、理由")
_FACTS = re.compile(
    r"(?:^|(?<=[\n。；;]))[ \t　]*(?:经审理查明|本院经审理(?:认定|查明)|本院(?:二审|再审)?(?:审理)?查明|经审查查明|本院经审查认定|"
    r"一审法院(?:经审理)?(?:认定|查明)(?:事实)?|原审法院(?:经审理)?(?:认定|查明)(?:事实)?|本院认定(?:事实)?如下|"
    r"本院对(?:本案)?事实(?:作如下)?认定如下|本院确认(?:如下)?(?:案件)?事实|审理查明|另查明|再查明)(?:的?(?:案件)?事实)?(?:如下)?[：:，,]",
    re.M,
)
# The first instance's reasoning in a second-instance judgment: it ends the facts, it is not this court's view.
_OTHER_REASONING = re.compile(r"(?:一审|原审)法院(?:经审理|经审查)?认为")
_REASONING = re.compile(r"本院(?:经审理|经审查|再审|二审)?认为")
# "判决如下" opens the operative part wherever it stands; a bare "判决：" / "裁定：" does only after the court's
# reasoning (before it, it is the first instance's judgment quoted, or a party's words).
_DECISION = re.compile(r"(?:判决|裁定|决定)如下[：:]?|达成(?:如下)?(?:调解)?协议[：:]|调解协议如下[：:]?")
_DECISION_BARE = re.compile(r"(?:判决|裁定)[：:]")
_DECISION_END = re.compile(
    r"如不服本|审\s*判\s*长|代理审判员|审\s*判\s*员|人民陪审员|书\s*记\s*员|法官助理|"
    r"本件与原本核对无异|附[：:]?\s*(?:本判决|相关|本案)?(?:适用的)?法律|"
    r"^[ \t　]*[二〇○零][〇○零一二三四五六七八九]{3}年",
    re.M,
)
# The notice on late payment that follows a money judgment: boilerplate between the items and the costs.
_DECISION_SKIP = re.compile(r"如果未按|如未按|如当事人未按|如义务人未按")
_LEGAL_BASIS = re.compile(r"(?:依照|依据|根据)[^。]{0,80}《")


def extract_court(text: str, file: str, *, max_items: int = 6) -> CourtSummary:
    reasoning_at = list(_REASONING.finditer(text))
    after = reasoning_at[0].start() if reasoning_at else len(text)
    # The last decision cue is the court's own: a second-instance judgment quotes the first instance's first.
    decision_at = (list(_DECISION.finditer(text, after)) or list(_DECISION_BARE.finditer(text, after))
                   or list(_DECISION.finditer(text)))
    decision = decision_at[-1] if decision_at else None
    claims_at = list(_CLAIMS.finditer(text, 0, reasoning_at[0].start() if reasoning_at else len(text)))
    facts_at = list(_FACTS.finditer(text))
    cues = [m.start() for m in claims_at + facts_at + reasoning_at] + ([decision.start()] if decision else [])
    head_end = min(cues) if cues else 0
    summary = CourtSummary(file=file, mode="extractive", language=language(text))

    number = _CASE_NUMBER.search(text, 0, head_end or min(len(text), 400))
    if number:
        summary.case_number = Item(text=number.group(), citations=[_cite(text, file, number.start(), number.end())])

    last_party = None
    for m in _PARTY.finditer(text, 0, head_end):
        name = m.group("name").strip()
        sentence = text[m.start("role"):_stop_at(text, m.start("role"), "。\n")]
        if _NOT_A_NAME.search(name) or _CASE_SENTENCE.search(sentence):
            continue
        role = m.group("role") + (m.group("alias") or "")
        agent = m.group("role") in _AGENT_ROLES
        if agent and last_party is None:
            continue  # an agent of no party named yet is a line of some other kind
        line_end = text.find("\n", m.end())
        span = _trim(text, m.start("role"), line_end if line_end != -1 else len(text))
        summary.parties.append(Party(text=text[span[0]:span[1]], role=role, name=name,
                                     represents=last_party if agent else None,
                                     citations=[_cite(text, file, m.start("role"), m.end("name"))]))
        if not agent:
            last_party = name

    for m in claims_at:
        for s, e in _claim_spans(text, m.end()):
            summary.claims.append(Item(text=text[s:e], citations=[_cite(text, file, s, e)]))

    # Facts run from the first facts cue to the reasoning (or the decision); reasoning to the decision.
    stops = sorted({m.start() for m in reasoning_at} | {m.start() for m in _OTHER_REASONING.finditer(text)}
                   | ({decision.start()} if decision else set()))
    if facts_at:
        start = facts_at[0].start()
        end = next((p for p in stops if p > start), len(text))
        summary.facts = _central(text, file, start, end, max_items)
    if reasoning_at:
        start = next((m.start() for m in reasoning_at if not decision or m.start() < decision.start()), reasoning_at[0].start())
        end = decision.start() if decision and decision.start() > start else _paragraph_end(text, start)
        summary.reasoning = _central(text, file, start, end, max_items)
        basis = list(_LEGAL_BASIS.finditer(text, start, end))
        if basis:  # the law applied: the sentence that names it, always kept
            span = _sentence_at(text, basis[-1].start(), end)
            if span and not any(c.start <= span[0] < c.end for item in summary.reasoning for c in item.citations):
                summary.reasoning.append(Item(text=text[span[0]:span[1]], citations=[_cite(text, file, *span)]))
    if decision:
        stop = _DECISION_END.search(text, decision.end())
        for s, e in _list_items(text, decision.end(), stop.start() if stop else len(text)):
            if _DECISION_SKIP.match(text, s):
                continue
            summary.decision.append(Item(text=text[s:e], citations=[_cite(text, file, s, e)]))
    return summary


def _paragraph_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end


def _sentence_at(text: str, pos: int, limit: int) -> tuple[int, int] | None:
    """The sentence from ``pos`` to its full stop (or ``limit``), including a colon-ended lead-in."""
    m = re.compile(r"[。！？\n]").search(text, pos, limit)
    return _trim(text, pos, m.end() if m and text[m.start()] != "\n" else (m.start() if m else limit))


def _list_end(text: str, start: int) -> int:
    """Where the list introduced by a cue ending at ``start`` ends: the rest of the cue's line (or, when the cue
    ends its line, the next paragraph), then every following paragraph that is a list item, blank lines
    between them skipped, up to a paragraph that is not one or that heads another section."""
    end = _paragraph_end(text, start)
    rest = _trim(text, start, end)
    pos = end + 1
    while pos < len(text):
        nxt = _paragraph_end(text, pos)
        line = _trim(text, pos, nxt)
        if line is None:
            pos = nxt + 1  # a blank line between the cue and its list, or between items
            continue
        if _SECTION_WORD.match(text, line[0]) or not (rest is None or _ENUM.match(text, line[0])):
            break
        end, rest, pos = nxt, rest or line, nxt + 1
    return end


def _claim_spans(text: str, start: int) -> list[tuple[int, int]]:
    """The claims after a claims cue: the rest of its paragraph, and the list lines right after it, up to
    the statement of facts and reasons."""
    end = _list_end(text, start)
    stop = _CLAIMS_END.search(text, start, end)
    end = stop.start() if stop else end
    for full in re.finditer("。", text[start:end]):  # a run-on paragraph: the claims end with their sentence
        after = start + full.end()
        if not _ENUM.match(text[after:end].lstrip()):
            end = after
            break
    return _list_items(text, start, end)


def _central(text: str, file: str, s: int, e: int, k: int) -> list[Item]:
    """The section's opening sentence (the one its cue opens: 经审理查明，… / 本院认为，…), then the k - 1 most
    central of the others (the centroid summary chatfile uses), in document order."""
    sentences = [sp for sp in (_trim(text, a, b) for a, b in split_sentences(text[s:e], s)) if sp]
    if not sentences:
        return []
    first, rest = sentences[0], (sentences[1][0], e) if len(sentences) > 1 else None
    spans = [first]
    if rest and k > 1:
        # Sections of about 1/k of the text each propose two sentences: k to 2k candidates for k places.
        picked = extractive_summary(text[rest[0]:e], max_sentences=k - 1, section_chars=max(200, (e - rest[0]) // k))
        spans += [sp for sp in (_trim(text, rest[0] + p["start"], rest[0] + p["end"]) for p in picked) if sp]
    return [Item(text=text[a:b], citations=[_cite(text, file, a, b)]) for a, b in spans]


# -- meeting ----------------------------------------------------------------------------------------
# "出席：张某、李某", "参会人员：", "列席：", "主持人：", "记录：", "缺席：", "请假："
_ATTENDEE_CUE = re.compile(
    r"(?:^|(?<=[\n。；;]))" + _LEAD + r"(?P<cue>(?:出席|参会|参加|与会|到会)(?:会议)?(?:人员|人|领导|单位|同志)?|列席(?:会议)?(?:人员|单位)?|"
    r"主持(?:人)?|记录(?:人|员)?|缺席(?:人员)?|请假(?:人员)?)[ \t　]*[：:]",
    re.M,
)
_CHAIRED_BY = re.compile(r"由(?P<name>[^，,。；;、\s]{2,12}?)(?:同志)?主持")
_ATTENDEE_ROLE = {"出": "出席", "参": "出席", "与": "出席", "到": "出席", "列": "列席", "主": "主持", "记": "记录", "缺": "缺席", "请": "缺席"}
_NAME_SPLIT = re.compile(r"[、，,；;\s]+")
_AGENDA_CUE = re.compile(r"(?:^|(?<=\n))" + _LEAD + r"(?:会议)?(?:议题|议程|主要议题|审议事项|讨论事项)(?:如下)?[：:]", re.M)
# A heading that is an agenda item: "议题一：…", "一、关于…", "（二）审议《…》".
_AGENDA_HEADING = re.compile(
    r"(?:^|(?<=\n))" + _LEAD + rf"(?:(?:议题|议程)[{_NUM_ZH}\d]{{1,3}}[、：:．.]?|{_ENUM.pattern})[ \t　]*"
    r"(?P<what>(?:关于|审议|讨论|研究|听取|通报|部署)[^\n]{2,80})",
    re.M,
)
_DECISION_CUE = re.compile(
    r"(?:^|(?<=[\n。；;：:]))[ \t　]*(?:" + _ENUM.pattern + r")?[ \t　]*"
    r"(?:会议(?:决定|议定|同意|原则同意|审议通过|通过|明确|确定|批准|要求|强调)|经(?:研究|讨论|审议|会议研究)[，,]?(?:决定|同意|原则同意|明确|议定)|"
    r"(?:决定|议定)[：:])",
    re.M,
)
_DECISION_HEADING = re.compile(r"(?:^|(?<=\n))" + _LEAD + r"(?:会议)?(?:决定事项|决议事项|议定事项|决议|决定|议定|会议结论|结论)(?:如下)?[：:]", re.M)
_OWNER = re.compile(
    r"(?:责任人|负责人|责任部门|责任单位|牵头(?:部门|单位|人)|承办(?:人|部门|单位)|落实人|执行人)[ \t　]*[：:][ \t　]*(?P<who>[^，,。；;：:\n\t（(—–|｜]{1,30}?)(?=[ \t　]*(?:[，,。；;\n（(—–|｜]|完成|$|时限|截止))"
    r"|由(?!于)(?P<who2>[^，,。；;：:\n、]{2,20}?)(?:负责|牵头|落实|承办|跟进)"
)
_DATE = r"(?:\d{4}年)?\d{1,2}月\d{1,2}日|\d{4}年\d{1,2}月(?:底|末|中旬|上旬|下旬)?|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}月(?:底|末|中旬|上旬|下旬)|(?:本|下)(?:周[一二三四五六日末]?|月底?|季度末?)|年底|年内|月底"
_DUE = re.compile(
    r"(?:完成时限|完成时间|完成期限|时限|期限|截止(?:日期|时间)?|办结时间)[ \t　]*[：:][ \t　]*(?P<due>[^，,。；;\n]{1,24})"
    rf"|(?:于|在)?(?P<due2>{_DATE})(?:前|之前|以前)"
)


def extract_meeting(text: str, file: str) -> MeetingSummary:
    summary = MeetingSummary(file=file, mode="extractive", language=language(text))
    for m in _ATTENDEE_CUE.finditer(text):
        role = _ATTENDEE_ROLE[m.group("cue")[0]]
        end = min(_paragraph_end(text, m.end()), _stop_at(text, m.end(), "。"))
        pos = m.end()
        for part in _NAME_SPLIT.split(text[m.end():end]):
            at = text.index(part, pos) if part else pos
            pos = at + len(part)
            name = part.removesuffix("等").removesuffix("同志")
            if 1 < len(name) <= 30:
                summary.attendees.append(Attendee(text=name, name=name, role=role, citations=[_cite(text, file, at, at + len(name))]))
    if not any(a.role == "主持" for a in summary.attendees):
        m = _CHAIRED_BY.search(text)
        if m:
            s, e = m.span("name")
            summary.attendees.append(Attendee(text=text[s:e], name=text[s:e], role="主持", citations=[_cite(text, file, s, e)]))

    # Agenda: the list under an agenda cue, or headings that name an item ("议题一：关于…", "一、审议《…》").
    for m in _AGENDA_CUE.finditer(text):
        for s, e in _list_items(text, m.end(), _list_end(text, m.end()), by="paragraph"):
            summary.agenda.append(Item(text=text[s:e], citations=[_cite(text, file, s, e)]))
    if not summary.agenda:
        for m in _AGENDA_HEADING.finditer(text):
            span = _trim(text, m.start("what"), _paragraph_end(text, m.start("what")))
            if span:
                summary.agenda.append(Item(text=text[span[0]:span[1]], citations=[_cite(text, file, *span)]))

    # Decisions: the list under a decisions heading, and every sentence that states one (会议决定…, 经研究，同意…).
    spans: list[tuple[int, int]] = []
    for m in _DECISION_HEADING.finditer(text):
        spans += _list_items(text, m.end(), _list_end(text, m.end()), by="paragraph")
    for m in _DECISION_CUE.finditer(text):
        start = _ENUM.match(text, m.start() + len(m.group()) - len(m.group().lstrip(" \t　")))
        s = start.end() if start else m.start() + len(m.group()) - len(m.group().lstrip(" \t　"))
        span = _sentence_at(text, s, _paragraph_end(text, s))
        if span and not any(a <= span[0] < b or span[0] <= a < span[1] for a, b in spans):
            spans.append(span)
    for s, e in sorted(spans):
        summary.decisions.append(Item(text=text[s:e], citations=[_cite(text, file, s, e)]))

    # Actions: every line (or, in a long paragraph, sentence) that names an owner or a due date with a task.
    for s, e in _units(text):
        owner, due = _OWNER.search(text, s, e), _DUE.search(text, s, e)
        listed = bool(_ENUM.match(text, s))
        # A labelled owner (责任人：) makes an action; "由X负责" and a date do only together or in a list item:
        # prose says "由X负责…" of a standing arrangement, and a dated sentence is a schedule or a history.
        if not (owner and owner.group("who")) and not ((owner or due) and (listed or (owner and due))):
            continue
        task = _task(text, s, e, [m for m in (owner, due) if m])
        if not task:
            continue
        marker = _ENUM.match(text, s) or _ROW_LABEL.match(text, s)
        s = marker.end() if marker else s  # the citation is the action, not its list number or row label
        summary.actions.append(Action(
            text=text[s:e], task=task,
            owner=(owner.group("who") or owner.group("who2")).strip() if owner else None,
            due=(due.group("due") or due.group("due2")).strip() if due else None,
            citations=[_cite(text, file, s, e)],
        ))
    return summary


def _stop_at(text: str, pos: int, chars: str) -> int:
    found = [i for i in (text.find(c, pos) for c in chars) if i != -1]
    return min(found) if found else len(text)


def _units(text: str) -> list[tuple[int, int]]:
    """Lines; a line of several sentences (over 120 characters) is its sentences."""
    out = []
    for s, e in _paragraphs(text, 0, len(text)):
        if e - s > 120:
            out += [sp for sp in (_trim(text, a, b) for a, b in split_sentences(text[s:e], s)) if sp]
        else:
            out.append((s, e))
    return out


# A table row as the readers write one ("【表1·第2行】序号：1，工作任务：…，责任人：…，完成时限：…。", see
# domainlm.data.tables), and the cells of such a row that are not the task: its number, the column label.
_ROW_LABEL = re.compile(r"【[^【】\n]{1,100}·(?:第\d+行|row \d+)】")
_ROW_CELLS = re.compile(r"(?:序号|编号)[：:]\s*\d+[，,]?|(?:工作|具体)?(?:任务|事项|内容|措施)(?:名称|内容)?[：:]")


def _task(text: str, s: int, e: int, found: list[re.Match]) -> str:
    """The unit's text without its list marker or row label and its owner/due clauses."""
    label = _ROW_LABEL.match(text, s)
    pieces, pos = [], label.end() if label else s
    for m in sorted(found, key=lambda m: m.start()):
        pieces.append(text[pos:m.start()])
        pos = max(pos, m.end())
    pieces.append(text[pos:e])
    task = _ENUM.sub("", "".join(pieces), count=1) if _ENUM.match(text, s) else "".join(pieces)
    if label:
        task = _ROW_CELLS.sub("", task)
    task = re.sub(r"[ \t　]*[—–\-|｜]{1,3}[ \t　]*", " ", task)
    task = re.sub(r"[，,；;]\s*(?=[，,；;])", "", task)  # the clause left between two removed ones
    return task.strip(_TRIM + "。（）() ")


def extract_structure(text: str, structure: str, file: str) -> StructuredSummary:
    """The summary by document structure alone (no model)."""
    return extract_court(text, file) if structure == "court" else extract_meeting(text, file)


# ---------------------------------------------------------------------------------------------------
# With a model: JSON to a schema, every quote checked
# ---------------------------------------------------------------------------------------------------
# What the model writes. Every field is required and nothing else is allowed, so that a grammar built from
# the schema leaves the model no freedom but the values (an optional field would let it write any key).
class _Draft(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftItem(_Draft):
    text: str = Field(description="The item in a sentence.")
    quote: str = Field(description="A span copied verbatim from the document that states the item.")


class DraftParty(_Draft):
    role: str
    name: str
    represents: str | None
    quote: str


class DraftAttendee(_Draft):
    name: str
    role: str
    quote: str


class DraftAction(_Draft):
    task: str
    owner: str | None
    due: str | None
    quote: str


class CourtDraft(_Draft):
    parties: list[DraftParty]
    claims: list[DraftItem]
    facts: list[DraftItem]
    reasoning: list[DraftItem]
    decision: list[DraftItem]


class MeetingDraft(_Draft):
    attendees: list[DraftAttendee]
    agenda: list[DraftItem]
    decisions: list[DraftItem]
    actions: list[DraftAction]


DRAFTS: dict[str, type[BaseModel]] = {"court": CourtDraft, "meeting": MeetingDraft}
_PROMPTS = {
    "court": (
        "下面是一份裁判文书（判决书或裁定书）的一部分。请只依据这部分原文，抽取：parties（当事人：role 诉讼地位，如原告、被告、"
        "上诉人；name 名称；代理人填 represents），claims（诉讼请求或上诉请求），facts（法院查明的事实），reasoning（本院认为的"
        "理由），decision（判决或裁定主文各项）。没有的字段给空列表。"
    ),
    "meeting": (
        "下面是一份会议纪要的一部分。请只依据这部分原文，抽取：attendees（出席、列席、主持、记录人员：name 姓名，role 其一），"
        "agenda（议题），decisions（会议决定、议定事项），actions（待办事项：task 任务，owner 责任人，due 完成时限；原文没写的填 null）。"
        "没有的字段给空列表。"
    ),
}
_SHAPES = {
    "court": '{"parties": [{"role": "原告", "name": "…", "represents": null, "quote": "…"}], "claims": [{"text": "…", '
             '"quote": "…"}], "facts": […], "reasoning": […], "decision": […]}',
    "meeting": '{"attendees": [{"name": "…", "role": "出席", "quote": "…"}], "agenda": [{"text": "…", "quote": "…"}], '
               '"decisions": […], "actions": [{"task": "…", "owner": null, "due": null, "quote": "…"}]}',
}
_QUOTE_RULE = "每一项的 quote 必须从原文逐字复制（一字不改，不加省略号），是写明该项的那一句或一段。只输出符合给定 JSON Schema 的 JSON。"
_MIN_QUOTE = 4  # a quote of a character or two is found anywhere and proves nothing
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def model_structure(text: str, structure: str, file: str, model, *, window_chars: int = 3000,
                    max_new_tokens: int = 1024) -> StructuredSummary:
    """Ask the model for each window's items (JSON to the draft schema), keep those whose quote is in the
    source; the rest go to ``dropped`` with the reason."""
    draft_model = DRAFTS[structure]
    schema = draft_model.model_json_schema()
    summary = (CourtSummary if structure == "court" else MeetingSummary)(file=file, mode="model", language=language(text))
    seen: set[tuple] = set()
    windows = chunk_document("doc", text, chunk_chars=window_chars)
    conversations = [[{"role": "user", "content": f"{_PROMPTS[structure]}{_QUOTE_RULE}\n格式：{_SHAPES[structure]}\n\n原文：\n{w.text}"}]
                     for w in windows]
    answers = ask_json(model, conversations, schema, max_new_tokens=max_new_tokens)
    for chunk, raw in zip(windows, answers, strict=True):
        value = extract_json(raw)
        if not isinstance(value, dict):
            summary.dropped.append(Dropped(field="*", item={"output": raw[:200]}, reason="the model's output is not a JSON object"))
            continue
        for name in FIELDS[structure]:
            entries = value.get(name) or []
            for entry in entries if isinstance(entries, list) else [entries]:
                kept, reason = _verify(name, entry, text, file, (chunk.start, chunk.end))
                if kept is None:
                    summary.dropped.append(Dropped(field=name, item=entry if isinstance(entry, dict) else {"value": entry}, reason=reason))
                    continue
                c = kept.citations[0]
                key = (name, c.start, c.end, kept.text)
                if key not in seen:  # windows overlap nothing, but a model may repeat itself
                    seen.add(key)
                    getattr(summary, name).append(kept)
    for name in FIELDS[structure]:
        getattr(summary, name).sort(key=lambda item: item.citations[0].start)
    return summary


_DRAFT_OF = {"parties": DraftParty, "attendees": DraftAttendee, "actions": DraftAction}


def _verify(name: str, entry, text: str, file: str, window: tuple[int, int]) -> tuple[Item | None, str]:
    """The checked item for one model entry, or (None, why it is dropped)."""
    kind = _DRAFT_OF.get(name, DraftItem)
    if isinstance(entry, dict):  # lenient on what a model without a grammar adds or leaves out; not on the quote
        entry = {key: entry.get(key) for key in kind.model_fields}
    try:
        draft = kind.model_validate(entry)
    except ValidationError as exc:
        return None, f"does not follow the schema ({exc.errors()[0]['msg']})"
    if len(_squash(draft.quote)) < _MIN_QUOTE:
        return None, f"its quote is shorter than {_MIN_QUOTE} characters"
    span = locate(text, draft.quote, window)
    if span is None:
        return None, "its quote is not in the file"
    cited = text[span[0]:span[1]]
    citation = _cite(text, file, *span)
    # What the item asserts beyond the quote must be in the quote: names, owners, dates, numbers.
    must = {"parties": ("name",), "attendees": ("name",), "actions": ("owner", "due")}.get(name, ())
    for key in must:
        value = getattr(draft, key)
        if value and _squash(value) not in _squash(cited):
            return None, f"its {key} '{value}' is not in the quoted span"
    said = draft.task if name == "actions" else getattr(draft, "text", "")
    missing = [n for n in _NUMBER.findall(said or "") if n not in cited]
    if missing:
        return None, f"states {missing[0]}, which the quoted span does not"
    if name == "parties":
        return Party(text=f"{draft.role}：{draft.name}", role=draft.role, name=draft.name, represents=draft.represents,
                     citations=[citation]), ""
    if name == "attendees":
        return Attendee(text=draft.name, name=draft.name, role=draft.role, citations=[citation]), ""
    if name == "actions":
        return Action(text=cited, task=draft.task, owner=draft.owner, due=draft.due, citations=[citation]), ""
    return Item(text=draft.text or cited, citations=[citation]), ""


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def locate(text: str, quote: str, window: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Where ``quote`` stands in ``text`` verbatim (inside ``window`` first), allowing only whitespace to
    differ (a model drops line breaks); None when it does not, or when it is too short to mean anything."""
    quote = (quote or "").strip()
    if len(_squash(quote)) < _MIN_QUOTE:
        return None
    ranges = ([window] if window else []) + [(0, len(text))]
    for s, e in ranges:
        at = text.find(quote, s, e)
        if at != -1:
            return at, at + len(quote)
    pattern = re.compile(r"\s*".join(re.escape(ch) for ch in _squash(quote)))
    for s, e in ranges:
        m = pattern.search(text, s, e)
        if m:
            return m.span()
    return None


def ask_json(model, conversations: list[list[dict]], schema: dict, *, max_new_tokens: int = 1024) -> list[str]:
    """The model's answer to each conversation, held to ``schema``.

    A local transformers model decodes under the schema's grammar (the server's constrained decoding, so the
    answer parses even from a small model); other backends get ``response_format`` (vLLM, llama.cpp and
    OpenAI-compatible servers constrain to it themselves) and their answer is parsed and validated after."""
    response_format = {"type": "json_schema", "json_schema": {"name": "structured_summary", "schema": schema}}
    if all(hasattr(model, a) for a in ("tokenizer", "render_chat", "stop_ids")):
        try:
            from domainlm.serve.constrained import constraint_for
            from domainlm.serve.generation import GenParams, ServedModel
        except ImportError:  # the serve extra is not installed: parse and validate after
            pass
        else:
            # One served model for all windows: the grammar's view of the vocabulary is built once.
            served = ServedModel("chatfile", model, max_batch=1)
            try:
                params = GenParams(max_new_tokens=max_new_tokens, response_format=response_format,
                                   constraint=constraint_for(response_format, None, None))
                return [served.complete(messages, params) for messages in conversations]
            finally:
                served.close()
    return model.chat(conversations, max_new_tokens=max_new_tokens, response_format=response_format)


# ---------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------
_HEADINGS = {
    "parties": "当事人", "claims": "诉讼请求", "facts": "查明事实", "reasoning": "本院认为", "decision": "裁判结果",
    "attendees": "参会人员", "agenda": "议题", "decisions": "决定事项", "actions": "待办事项",
}


def cite_label(item: Item) -> str:
    return " ".join(f"[§ {c.start}–{c.end}]" for c in item.citations)


def to_markdown(summary: StructuredSummary) -> str:
    """The summary for people: one section per field, each item followed by its source span."""
    title = "裁判文书摘要" if summary.structure == "court" else "会议纪要摘要"
    lines = [f"# {title}：{Path(summary.file).name}", ""]
    number = getattr(summary, "case_number", None)
    if number is not None:
        lines += [f"案号：{number.text} {cite_label(number)}", ""]
    for name in FIELDS[summary.structure]:
        items = getattr(summary, name)
        lines.append(f"## {_HEADINGS[name]}")
        if not items:
            lines.append("（原文未见）")
        for i, item in enumerate(items, 1):
            lines.append(f"{i}. {_render(name, item)} {cite_label(item)}")
        lines.append("")
    if summary.dropped:
        lines.append(f"> 未采用模型输出 {len(summary.dropped)} 项（引文在原文中找不到或与原文不符），见 --json 的 dropped。")
    return "\n".join(lines).rstrip() + "\n"


def _render(name: str, item: Item) -> str:
    if isinstance(item, Party):
        who = f"{item.role}：{item.name}"
        return f"{who}（{item.represents}）" if item.represents else who
    if isinstance(item, Attendee):
        return f"{item.role}：{item.name}"
    if isinstance(item, Action):
        extra = "；".join(x for x in (f"责任人：{item.owner}" if item.owner else "", f"完成时限：{item.due}" if item.due else "") if x)
        return f"{item.task}（{extra}）" if extra else item.task
    return item.text

