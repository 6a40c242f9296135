"""Answer extraction from free model output (Chinese and English).

Popular harnesses take the first capital letter, or one regex, and so mis-read outputs like
"答案不是A，而是C", "A股市场……选B", or "A and B are wrong, so C". No library extracts answers
from free Chinese text, so this module is hand-written: a short cascade of rules, each with the
case it exists for. It is measured against the labelled adversarial set in
``tests/evals/data/adversarial_extraction.jsonl``.

Every function returns ``None`` when the output cannot be parsed; the scorers count that as
"unparseable" (and as wrong). JSON and tool calls are read by ``domainlm.parsing``, the parser the
server answers with, so the eval measures what a served model's clients get.
"""

from __future__ import annotations

import re
import unicodedata

from domainlm.evals.normalize import normalize_text
from domainlm.parsing import extract_json
from domainlm.prompts import LETTERS

# ----------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------

# A letter standing alone: not part of an ASCII word or number, and not a Chinese finance term
# like "A股" (A-shares), "B轮" (series-B round), "A类份额", "AAA级".
_NOT_OPTION_AFTER = "股轮类级档座栋区型值端份"
_L = rf"(?<![A-Za-z0-9])[A-H](?![A-Za-z0-9{_NOT_OPTION_AFTER}])"
_SEP = r"\s*(?:、|,|，|/|&|\+|和|与|及|以及|\band\b)\s*"
# "AC" written together is two answers; only read that way right after an answer cue.
_RUN = r"(?<![A-Za-z0-9])[A-H]{2,5}(?![A-Za-z0-9])"
_GROUP = rf"((?:{_L})(?:(?:{_SEP}|\s*)(?:{_L}))*)"
_CUE_GROUP = rf"((?:{_L}|{_RUN})(?:(?:{_SEP}|\s*)(?:{_L}))*)"
_OPT = r"(?:选项|option\s*|choice\s*)?"
_COLON = r"\s*[:：=]?\s*[\(（\[【]?\s*"

# Cues that introduce the answer. Final cues ("故选", "final answer") outrank the others; within a
# rank the last statement wins, because models revise themselves ("我先想到A，但答案是C").
_FINAL_CUES = [
    r"最终(?:的)?(?:答案|选择|结论)(?:应该|应当|应|就)?(?:是|为|选)?",
    r"(?:综上所述|综上|因此|所以|故而|故|因而|由此可见|总之)[,，]?\s*(?:本题)?(?:正确)?(?:答案|应)?(?:应该|应当|应|就)?(?:是|为|选择|选)",
    r"\bfinal answer\s*(?:is|would be|:)?",
    r"\b(?:therefore|thus|so|hence),?\s*(?:the\s+)?(?:correct\s+|right\s+)?(?:answer|option|choice)\s*(?:is|would be|should be)",
]
_CUES = [
    r"(?:正确|最佳|标准|参考|本题)?答案(?:应该|应当|应|就|只能)?(?:是|为|选|选择)?(?:选项)?",
    r"[\[【]正确答案[\]】]",
    r"(?:应该|应当|应|我|我会|我们|则|可|只能|本题)?选(?:择)?(?:项)?",
    r"(?:而|应该|应当|应|其实|实际上)是",
    r"(?:的|者)(?:选项|答案|一项|项|说法|表述)?(?:是|为|有)",
    r"\b(?:the\s+)?(?:correct|right|best|true)?\s*(?:answer|option|choice)\s*(?:is|would be|should be|must be|:)",
    r"\bI\s+(?:would\s+|will\s+|'d\s+)?(?:choose|pick|select|go with)",
    r"\b(?:correct|right)\s+(?:answer|option|choice)s?\s+(?:are|is)",
]
_FINAL_RE = re.compile(rf"(?:{'|'.join(_FINAL_CUES)}){_COLON}{_OPT}{_CUE_GROUP}", re.IGNORECASE)
_CUE_RE = re.compile(rf"(?:{'|'.join(_CUES)}){_COLON}{_OPT}{_CUE_GROUP}", re.IGNORECASE)

# Negation around a letter: "不是A", "排除A", "not A" before it; "A错误", "A is wrong" after it.
_NEG_BEFORE = re.compile(
    r"(?:不是|不选|排除|并非|而非|不应选|不能选|不可能是|\bnot\s+(?:option\s+)?|\bexclude\s+|\brule out\s+|\beliminate\s+)\s*$",
    re.IGNORECASE,
)
_NEG_AFTER = re.compile(
    r"^\s*(?:选项|项|的说法|的表述|option|[两二三四五]个?(?:选项|项))?\s*[:：,，]?\s*(?:是|也|都|均|显然|明显|肯定|本身)*\s*"
    r"(?:错误|错的|错|不对|不正确|不符合|有误|可以排除|排除|不选|不是正确|不成立|不合理|"
    r"(?:is|are)\s+(?:wrong|incorrect|false|not\s+(?:correct|right|the answer))|can be (?:eliminated|ruled out)|"
    r"(?:wrong|incorrect|false)\b)",
    re.IGNORECASE,
)
_POS_AFTER = re.compile(
    r"^\s*(?:选项|项|option)?\s*[:：,，]?\s*(?:是|才是|为)?\s*(?:正确|对的|对|符合题意|当选|为正确答案|正确答案|"
    r"(?:is|are)\s+(?:correct|right|true|the (?:correct |right |best )?(?:answer|choice|option)))",
    re.IGNORECASE,
)
_LETTER_RE = re.compile(_L)
_A_VERB = re.compile(r"\s+(?:is|was|are|seems|should|would|looks|matches|fits|must|can't|cannot)\b")
_HEDGE = re.compile(r"可能|或者|也许|不确定|难以确定|\beither\b|\bmaybe\b|\bperhaps\b|\bnot sure\b", re.IGNORECASE)
_ORDINAL = {"一": "A", "二": "B", "三": "C", "四": "D", "五": "E", "六": "F", "1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}
_ORDINAL_RE = re.compile(r"第([一二三四五六1-6])(?:个)?(?:选项|项)")


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("**", "").replace("__", "")
    # Lower-case letters in unmistakable option positions: "(b)", "option c", "选项d", "答案是b。".
    text = re.sub(r"(?<=[\(（])([a-h])(?=[\)）])", lambda m: m.group(1).upper(), text)
    text = re.sub(r"(?i)(?<=option )([a-h])\b", lambda m: m.group(1).upper(), text)
    text = re.sub(r"(?<=[选项是为:：])\s*([a-h])(?![A-Za-z])", lambda m: m.group(1).upper(), text)
    return _ORDINAL_RE.sub(lambda m: _ORDINAL[m.group(1)], text)


def _negated(text: str, start: int, end: int) -> bool:
    return bool(_NEG_BEFORE.search(text[max(0, start - 12) : start]) or _NEG_AFTER.match(text[end : end + 24]))


def _group_letters(text: str, match: re.Match, choices: list[str] | None = None) -> list[str]:
    """Letters of a captured group, minus ones negated right after ("答案是A，B选项错误")."""
    letters = []
    base = match.start(1)
    for m in re.finditer(r"[A-H]", match.group(1)):
        end = base + m.end()
        if _NEG_AFTER.match(text[end : end + 24]) and not _restates_option(text[end:], m.group(0), choices):
            continue
        letters.append(m.group(0))
    return letters


def _valid(letters: list[str], n_options: int) -> str | None:
    allowed = set(LETTERS[:n_options])
    picked = sorted({x for x in letters if x in allowed})
    return "".join(picked) or None


def _by_option_text(text: str, choices: list[str]) -> str | None:
    """No letter anywhere: the answer may be the option's text ("答案是活期存款")."""
    norm = normalize_text(text)
    if not norm:
        return None
    options = [(LETTERS[i], normalize_text(c)) for i, c in enumerate(choices) if c and normalize_text(c)]
    for letter, opt in options:
        if norm == opt:
            return letter
    found = []
    for letter, opt in options:
        pos = norm.find(opt)
        if pos < 0:
            continue
        if re.search(r"(?:不是|并非|而非|排除|不选|not)\s*$", norm[max(0, pos - 6) : pos]):
            continue
        found.append((letter, opt))
    # Drop options that are only matched as part of a longer matched option ("10%" inside "10%以上").
    found = [(letter, o) for letter, o in found if not any(o != o2 and o in o2 for _, o2 in found)]
    if len(found) == 1:
        return found[0][0]
    return None


def _restates_option(rest: str, letter: str, choices: list[str] | None) -> bool:
    """"C：都不正确" restates option C whose text is "都不正确": its words are not a verdict on C."""
    if not choices or len(letter) != 1:
        return False
    option = normalize_text(choices[LETTERS.index(letter)])
    return bool(option) and normalize_text(rest).startswith(option)


def extract_choice(output: str, n_options: int = 4, choices: list[str] | None = None) -> str | None:
    """The option letter(s) a free-text answer chooses, sorted ("B", "AC"), or None if unparseable."""
    if not output or not output.strip():
        return None
    if choices:
        n_options = max(n_options, len(choices))
    n_options = min(n_options, len(LETTERS))
    text = _clean(output)

    # 1. Explicit answer statements: last final cue, else last plain cue.
    for regex in (_FINAL_RE, _CUE_RE):
        matches = list(regex.finditer(text))
        for match in reversed(matches):
            picked = _valid(_group_letters(text, match, choices), n_options)
            if picked:
                return picked

    # 2. The output starts with the answer: "B", "B.", "(B) 活期存款", "B、D".
    lead = re.match(rf"^\s*[\(（\[【]?\s*{_GROUP}", text)
    if lead:
        picked = _valid(_group_letters(text, lead, choices), n_options)
        # "A、B、C、D都有可能" names every option: that is no answer, fall through.
        if picked and len(picked) < n_options and (
            not _negated(text, lead.start(1), lead.end(1)) or _restates_option(text[lead.end(1) :], picked, choices)
        ):
            return picked

    # 3. Letters with a verdict: "B正确", "C is correct" beat plain mentions; negated ones are out.
    mentions, positive, negative = [], [], set()
    for m in _LETTER_RE.finditer(text):
        letter = m.group(0)
        if letter not in LETTERS[:n_options]:
            continue
        # English article "A" ("A bank deposit is ...") is not an option; "A is correct" is.
        if letter == "A" and re.match(r"\s+[a-z]", text[m.end() : m.end() + 2]) and not _A_VERB.match(text[m.end() :]):
            continue
        if _negated(text, m.start(), m.end()):
            negative.add(letter)
        elif _POS_AFTER.match(text[m.end() : m.end() + 24]):
            positive.append(letter)
        else:
            mentions.append(letter)
    # Negations can cover a group: "A和B都不对", "排除B、C和D" negate every letter in it.
    for m in re.finditer(rf"{_GROUP}", text):
        letters = _LETTER_RE.findall(m.group(1))
        if len(letters) > 1 and _negated(text, m.start(1), m.end(1)):
            negative.update(letters)
            mentions = [x for x in mentions if x not in letters]
            positive = [x for x in positive if x not in letters]
    if positive:
        return _valid([x for x in positive if x not in negative], n_options)
    rest = sorted({x for x in mentions if x not in negative})
    # Hedging between several letters ("可能是A也可能是B") is no answer.
    if len(rest) > 1 and _HEDGE.search(text):
        return None
    if rest and len(rest) < n_options:
        return _valid(rest, n_options)
    # Elimination: every option but one ruled out ("A、B、C都错，") and nothing else said.
    if not rest and len(negative) == n_options - 1:
        return "".join(x for x in LETTERS[:n_options] if x not in negative)
    if rest or negative:
        return None

    # 4. No letters at all: match the option text.
    if choices:
        return _by_option_text(text, choices)
    return None


# ----------------------------------------------------------------------------------------------
# Yes / no judgements (Fin-Eva 安全合规: gold "是" / "否")
# ----------------------------------------------------------------------------------------------

_YES, _NO = "是", "否"
_JUDGE_EXPLICIT = re.compile(
    r"(?:答案|结论|判断|回答)(?:应该|应|就)?(?:是|为)?\s*[:：]?\s*[\"“「]?"
    r"(不是|不对|不正确|不符合|不合规|错误|否|错|是|对|正确|符合|合规|yes|no|true|false)",
    re.IGNORECASE,
)
# Order matters: at one position the longer phrase wins ("不正确" before "正确").
_VERDICT_WORDS = [
    ("不正确", _NO), ("不对", _NO), ("不符合", _NO), ("不合规", _NO), ("不成立", _NO), ("不属实", _NO),
    ("不准确", _NO), ("不够准确", _NO), ("错误", _NO), ("有误", _NO), ("错的", _NO), ("incorrect", _NO), ("false", _NO),
    ("not true", _NO), ("not correct", _NO), ("wrong", _NO),
    ("正确", _YES), ("对的", _YES), ("符合", _YES), ("合规", _YES), ("成立", _YES), ("属实", _YES),
    ("准确", _YES), ("correct", _YES), ("true", _YES),
]
_LEAD = re.compile(r"^\s*[\"“「]?(不是|不对|不|否|错|no\b|是|对|yes\b)", re.IGNORECASE)
_LEAD_MAP = {"不是": _NO, "不对": _NO, "不": _NO, "否": _NO, "错": _NO, "no": _NO, "是": _YES, "对": _YES, "yes": _YES}
_NEGATED_VERDICT = re.compile(r"(?:并非|并不|不是|not)\s*$", re.IGNORECASE)


def _map_judgement(word: str) -> str:
    word = word.lower()
    if word in ("是", "对", "正确", "符合", "合规", "yes", "true"):
        return _YES
    return _NO


def extract_yes_no(output: str) -> str | None:
    """"是" or "否" from a judgement answer, or None.

    Order: an explicit "答案：否"; then a leading verdict ("是的，…", "不，…"); then the first verdict
    word anywhere ("这个说法是错误的"); a bare copula "是" inside a sentence is not a verdict.
    """
    if not output or not output.strip():
        return None
    text = unicodedata.normalize("NFKC", output).replace("**", "").strip()
    explicit = list(_JUDGE_EXPLICIT.finditer(text))
    if explicit:
        return _map_judgement(explicit[-1].group(1))
    lead = _LEAD.match(text)
    if lead:
        word = lead.group(1).lower()
        # "是否…" and "不少…" are not verdicts; "是的"/"是。" are.
        following = text[lead.end() : lead.end() + 1]
        if not (word == "是" and following in ("否", "不")) and not (word == "不" and following not in "，,。.！!、 是对"):
            return _LEAD_MAP[word]
    lowered = text.lower()
    best: tuple[int, str] | None = None
    for word, verdict in _VERDICT_WORDS:
        for m in re.finditer(re.escape(word), lowered):
            if word.isascii() and re.match(r"[a-z]", lowered[m.end() : m.end() + 1]):
                continue
            # "不够准确" is not "准确"; "是否合规" asks, it does not judge.
            if verdict == _YES and any(
                lowered[max(0, m.start() - len(neg)) : m.start()] == neg for neg in ("不", "in", "不够", "是否")
            ):
                continue
            value = verdict
            if _NEGATED_VERDICT.search(lowered[max(0, m.start() - 4) : m.start()]):
                value = _NO if verdict == _YES else _YES
            if best is None or m.start() < best[0]:
                best = (m.start(), value)
            break
    if best:
        return best[1]
    if re.search(r"不是|并非|没有|不存在|\bno\b|\bnot\b", lowered):
        return _NO
    if re.search(r"是的|确实|\byes\b", lowered):
        return _YES
    return None


# ----------------------------------------------------------------------------------------------
# Refusal ("I cannot answer from the documents")
# ----------------------------------------------------------------------------------------------

_REFUSAL = re.compile(
    r"无法(?:回答|作答|确定|判断|得知|获知|确认|回复)|"
    r"(?:无法|不能)(?:提供|给出|找到|查到)(?:相关|该|此|这|具体|准确|确切|您|你|明确)*(?:的)?(?:信息|答案|资料|数据|内容|问题|回答)|"
    r"不能(?:回答|确定|判断|确认)|"
    r"(?:我|本助手|助手)?(?:并)?不(?:知道|清楚|确定)(?:这|该|此|答案|具体|相关|。|$|，)|"
    r"(?:没有|缺乏|缺少|暂无|尚无|未能?(?:找到|查到|检索到|获得))(?:足够的?|相关的?|具体的?|有关的?|这方面的?|明确的?)*"
    r"(?:信息|资料|数据|记载|记录|依据|说明|内容)|"
    r"(?:文档|资料|知识库|材料|上下文|文中|原文|提供的(?:内容|信息))(?:中|里)?(?:并)?(?:没有|未|没)(?:有)?(?:提及|提到|涉及|说明|包含|记载|给出)|"
    r"回答不了|答不了|(?:文档|资料|知识库|材料)(?:里|中)?(?:都)?找不到|(?:文档|资料|知识库|材料)(?:里|中)?(?:并)?不存在|"
    r"未(?:提及|提到|说明|涉及)(?:相关|该|此|这)|超出(?:了)?(?:我的|知识库的?|文档的?)?(?:知识)?范围|"
    r"\bI(?:'m|\s+am)?\s+(?:do not|don't|cannot|can't|unable to|not able to)\s+(?:know|answer|find|determine|say|confirm|provide)|"
    r"\b(?:cannot|can't|unable to)\s+(?:be\s+)?(?:answer|determine|find|confirm)|"
    r"\b(?:no|not enough|insufficient)\s+(?:relevant\s+|such\s+|specific\s+)?(?:information|data|details|context)\b|"
    r"\b(?:isn't|is not|aren't|are not)\s+enough\s+(?:information|data|details|context)\b|"
    r"\bnot\s+(?:mentioned|provided|stated|covered|specified|available)\b|"
    r"\b(?:does not|doesn't|do not|don't)\s+(?:mention|say|specify|contain|cover|provide)\b",
    re.IGNORECASE,
)
# "并非无法回答", "it is not that I cannot answer" — a refusal phrase that is itself denied.
_REFUSAL_DENIED = re.compile(r"(?:并非|不是|并不是|not that|isn't that)\s*$", re.IGNORECASE)


def is_refusal(output: str) -> bool:
    """Whether the output says that it cannot answer.

    An empty or whitespace output is no refusal: a refusal must say so. Otherwise a model that says
    nothing would be scored as perfectly cautious on every unanswerable question."""
    if not output or not output.strip():
        return False
    text = unicodedata.normalize("NFKC", output)
    for m in _REFUSAL.finditer(text):
        if _REFUSAL_DENIED.search(text[max(0, m.start() - 10) : m.start()]):
            continue
        return True
    return False


# ----------------------------------------------------------------------------------------------
# Entities, labels (JSON and tool calls: domainlm.parsing, shared with the server)
# ----------------------------------------------------------------------------------------------

_ENTITY_LINE = re.compile(r"^\s*[-*]?\s*([^:：\n]{1,20})\s*[:：]\s*(.+?)\s*$", re.MULTILINE)


def extract_entities(output: str) -> list[tuple[str, str]] | None:
    """(type, text) pairs from JSON (list of {type,text} or {type: [texts]}) or "类型：甲、乙" lines."""
    value = extract_json(output)
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict) and isinstance(value.get("entities"), list):
        value = value["entities"]
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and "text" in item and "type" in item:
                pairs.append((str(item["type"]), str(item["text"])))
        return pairs
    if isinstance(value, dict):
        for etype, texts in value.items():
            for text in texts if isinstance(texts, list) else [texts]:
                if isinstance(text, (str, int, float)) and str(text).strip():
                    pairs.append((str(etype), str(text)))
        return pairs
    lines = _ENTITY_LINE.findall(output or "")
    if not lines:
        if output and re.search(r"无实体|没有实体|\bnone\b|\bno entities\b|^\s*\[\s*\]\s*$", output, re.IGNORECASE):
            return []
        return None
    for etype, texts in lines:
        for text in re.split(r"[、,，;；]", texts):
            if text.strip() and text.strip() not in ("无", "none", "-"):
                pairs.append((etype.strip(), text.strip()))
    return pairs


def extract_label(output: str, labels: list[str]) -> str | None:
    """The one label an output names: exact match, else the single longest label mentioned."""
    norm = normalize_text(output or "")
    if not norm:
        return None
    by_norm = {normalize_text(label): label for label in labels}
    if norm in by_norm:
        return by_norm[norm]
    cue = re.search(r"(?:意图|类别|标签|intent|label|category)\s*(?:是|为|is)?\s*(.+)", norm)
    if cue:
        head = cue.group(1)
        for key in sorted(by_norm, key=len, reverse=True):
            if head.startswith(key):
                return by_norm[key]
    found = [key for key in by_norm if key and key in norm]
    found = [k for k in found if not any(k != k2 and k in k2 for k2 in found)]
    if len(found) == 1:
        return by_norm[found[0]]
    return None
