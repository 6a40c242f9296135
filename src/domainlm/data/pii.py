"""Chinese PII detection and redaction for regulated (bank, hospital, court) text.

Types, each with a typed placeholder (:data:`PLACEHOLDERS`):

- numbers checked by their structure: resident ID numbers (GB 11643 check character), bank cards (Luhn) and
  accounts (any 12-19 digits after 账号/账户), mobiles, landlines with an area code, e-mails, licence plates (ordinary
  and 8-character new-energy plates), court case numbers (（2023）京0105民初12345号);
- numbers recognised by the word before them (:data:`RECORD_LABELS`): admission, medical-record, policy,
  contract, passport... numbers (``record_no``);
- street and rural addresses (a house number, or an administrative chain after 住/住址/户籍地);
- person names (``name``): anchored by context only (a role before it, 患者/原告/持卡人/客户..., or a title
  after it, 先生/女士/医生...), using jieba's part-of-speech tagger (HMM on, so unseen names are found) in
  a small window to find where the name ends. A name found once is redacted everywhere in the text.
  Free-standing ``nr`` tokens are *not* taken: in public text they are mostly public figures and, often,
  place or company names mis-tagged; see :data:`DEFAULT_TYPES`;
- diagnoses next to a person (``medical``): the condition after 诊断为/确诊/患有... when the same sentence
  names or points at one person (a name, 该患者, 本人, 我, an age "56岁", "男，").

Names already masked by the source (张某, 李某某, 王X) are not personal data and are left alone.

jieba is imported lazily (only when a text holds a name anchor), so the serving router and the clean stage
pay its load time (2-4 s, once per process) only when needed; each clause is tagged once (an LRU cache).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from domainlm.data.edits import OpResult, replace_spans

PLACEHOLDERS = {
    "id_card": "[ID_CARD]",
    "mobile": "[MOBILE]",
    "landline": "[LANDLINE]",
    "bank_card": "[BANK_CARD]",
    "email": "[EMAIL]",
    "address": "[ADDRESS]",
    "plate": "[PLATE]",
    "case_no": "[CASE_NO]",
    "record_no": "[RECORD_NO]",
    "name": "[NAME]",
    "medical": "[MEDICAL]",
}

# What the default clean recipe redacts. Measured (benchmarks/pii.py, BENCHMARKS.md): every type below has
# precision 1.00 on the 297 labelled bank/hospital/court sentences, none of the hard negatives (company,
# place, product names, amounts, article numbers, hotlines, masked 张某) is taken; on LawBench's real court
# sentences 31 of 32 name spans overlap a real person's name (左腹 is the miss).
# Left out: ``case_no`` -- court case numbers are cited in public judgments and legal knowledge bases and
# name the case, not a person; redacting them breaks every citation. The serving router and the feedback
# store use every type. Names are kept in: on regulated documents they are what must go; on public
# encyclopedic text (CMRC 2018, 3.6 names per 10k characters, mostly public figures) a recipe can list
# ``types`` without "name".
DEFAULT_TYPES = (
    "id_card", "mobile", "landline", "bank_card", "email", "address", "plate", "record_no", "name", "medical",
)


@dataclass(frozen=True)
class PiiSpan:
    start: int
    end: int
    type: str
    text: str


_HAN = "\u4e00-\u9fff"
_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])"
)
# A mobile followed by a unit is a quantity (13800000000元), not a phone.
_MOBILE = re.compile(
    r"(?<![\d])(?:(?:\+|00)?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![\d]|\s?[元万亿股份笔次个件吨名人户])"
)
# Area code 0xx/0xxx and a 7-8 digit number starting 2-9, with a separator or in brackets (a bare run of
# 11-12 digits is as likely an account or order number); an extension may follow.
_LANDLINE = re.compile(
    r"(?<![\d-])(?:(?:\+86[\s-]?)?(?:[(（]0\d{2,3}[)）]\s?|0\d{2,3}[-－—\s])|\+86[\s-]?\d{2,3}[\s-])"
    r"[2-9]\d{2,3}[-\s]?\d{4}(?:\s?(?:转|-|ext\.?)\s?\d{1,5})?(?![\d])"
)
_LANDLINE_LABELLED = re.compile(r"(?:电话|座机|固话|传真|Tel|TEL|tel)[:：]?\s*(0\d{9,11})(?!\d)")
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){15,18}\d(?![\d])")
# Account numbers follow no check digit (card numbers do, and are found by Luhn): any 12-19 digits after 账号.
_ACCOUNT_LABELLED = re.compile(r"(?:账号|帐号|账户|帐户)(?:号码|号)?[:：为是]?\s*((?:\d[ -]?){11,18}\d)(?![\d])")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_LETTERS = "A-HJ-NP-Z"  # no I, no O
_PLATE = re.compile(
    rf"(?<![0-9A-Za-z])[{_PROVINCES}][{_PLATE_LETTERS}][·•\s]?"
    rf"(?:[DF][{_PLATE_LETTERS}0-9]\d{{4}}|\d{{5}}[DF]|[{_PLATE_LETTERS}0-9]{{5}})[挂学警港澳]?(?![0-9A-Za-z])"
)
_CASE_NO = re.compile(
    rf"[（(〔]\s*(?:19|20)\d{{2}}\s*[)）〕]\s*[{_HAN}]{{1,6}}\d{{0,6}}[{_HAN}]{{1,4}}\d{{1,7}}号(?:之[一二三四五六七八九十\d]+)?"
)
RECORD_LABELS = (
    "住院号", "住院号码", "病案号", "病历号", "门诊号", "就诊号", "就诊卡号", "医保卡号", "社保卡号", "医保号",
    "病理号", "检验号", "影像号", "保单号", "保单号码", "投保单号", "保险单号", "理赔号", "报案号", "合同编号",
    "合同号", "借款合同号", "协议编号", "借据号", "客户号", "客户编号", "护照号", "护照号码", "档案号",
    "执业证号", "营业执照号", "登记号",
)
_RECORD = re.compile(
    "(?:" + "|".join(sorted(map(re.escape, RECORD_LABELS), key=len, reverse=True)) + r")[:：]?\s*(?:为|是)?\s*"
    rf"((?:[（(〔](?:19|20)\d{{2}}[)）〕])?[{_HAN}A-Za-z]{{0,8}}?[A-Za-z0-9][A-Za-z0-9\-/]*\d{{3,}}[A-Za-z0-9\-/]*号?)"
)
# Province/city/district (optional) + road/street + number, optional building/room; simplified or
# traditional script (区/區, 号/號, 栋/棟, 楼/樓...).
_ADDRESS_ZH = re.compile(
    rf"(?:[{_HAN}]{{2,6}}(?:省|自治区|自治區))?(?:[{_HAN}]{{2,6}}市)?(?:[{_HAN}]{{2,6}}(?:区|區|县|縣))?"
    rf"[{_HAN}\d]{{1,12}}(?:路|街|大道|道|巷|弄|胡同)(?:[{_HAN}\d]{{0,6}}(?:段|巷|弄))?\d+(?:-\d+)?[号號]"
    rf"(?:[{_HAN}\d]{{0,8}}?\d+(?:号楼|號樓|栋|棟|幢|座|楼|樓)(?:\d+[单單]元)?(?:\d+(?:层|層|楼|樓))?(?:\d+室?)?"
    rf"|\d+[单單]元(?:\d+室?)?|\d+室)?"
)
_ADDRESS_EN = re.compile(
    r"\b\d{1,5}(?:\s[A-Z][a-z]+){1,4}\s(?:Street|St\.|Road|Rd\.|Avenue|Ave\.|Boulevard|Blvd\.|Lane|Ln\.|Drive|Dr\.|Way|Court|Ct\.)"
    r"(?:,?\s(?:Apt|Suite|Unit|Room|Flat)\.?\s?\w+)?"
)
# Court and bank documents: "住河南省周口市郸城县某镇某村3组" has no house number; the label marks it.
_ADDRESS_LABELLED = re.compile(
    rf"(?:(?:现|家|户籍|经常|暂)?住(?:址|所地|所)?|户籍(?:所在)?地|居住(?:地|于|在)|家在|通讯地址|联系地址|收货地址)[:：]?"
    rf"([{_HAN}\d\-]{{4,40}}?)(?=[，。；,;、（(\s]|$)"
)
_ADMIN = re.compile(r"省|自治区|市|区|县|旗|镇|乡|村|街道|路|街|巷|号|组|小区|社区|栋|幢|单元|室|苑|花园|弄")
# A bare 住 is a label only at a clause start (", 住山东省..."), not in 住院 / 记住 / 入住.
_ADDRESS_LABEL_START = re.compile(r"(?:^|(?<=[，,；;：:\s。]))(?:现|家)?住(?![院宿房持手])")

# Words that introduce an address; the Han-character prefix of the pattern can swallow them.
_ADDRESS_LABEL = re.compile(
    r"(?:通讯|联系|家庭|居住|收货|邮寄)?(?:住址|地址|住在|家住|我家在|家在|居住在|位于|寄往|寄到|迁至|搬到)[:：]?"
)

# A mobile-shaped number after a code's label is that code (交易码13800138000).
_NOT_PHONE_CONTEXT = re.compile(
    r"(?:交易|验证|邀请|代|识别|条形|订单|流水|批|编)码[:：为是]?$|(?:编号|单号|流水号|批号|序列号)[:：为是]?$"
)
_BUSINESS = re.compile(
    r"(本院|我院|本行|我行|本所|本公司|支行|分行|网点|網點|营业部|營業部|营业厅|營業廳|公司|新址|办公|辦公|门店|門店|总部|總部|法院|医院|学校|大学|"
    r"中心|(?i:branch|office|headquarters))"
)

# -- names ------------------------------------------------------------------------------------------
SURNAMES_2 = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "司徒", "夏侯", "尉迟", "公孙", "长孙",
              "宇文", "轩辕", "端木", "南宫", "独孤", "申屠", "澹台", "呼延", "万俟", "单于", "闻人", "西门")
# The ~250 most common single-character surnames, less a few that are mostly ordinary words (家, 本, 满).
SURNAMES_1 = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施"
    "文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷"
    "盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷"
    "晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠"
    "荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄"
    "平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇"
    "公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由傅阎萧"
) - set("家本满")
# Roles that introduce a person in bank, hospital and court text; a name follows (after an optional colon).
NAME_LABELS = (
    "患者", "病人", "患儿", "姓名", "当事人", "被告人", "被告", "原告", "申请人", "被申请人", "申请执行人", "被执行人",
    "上诉人", "被上诉人", "第三人", "证人", "被害人", "犯罪嫌疑人", "罪犯", "客户", "持卡人", "户名", "开户人",
    "账户名",
    "投保人", "被保险人", "受益人", "借款人", "出借人", "贷款人", "担保人", "保证人", "法定代表人", "负责人",
    "委托代理人", "委托诉讼代理人", "代理人", "辩护人", "经办人", "联系人", "收款人", "付款人", "主治医师",
    "主治医生", "主管医生", "主任医师", "审判长", "审判员", "人民陪审员", "书记员", "法官助理", "检察员", "公诉人",
    "家属", "监护人", "配偶", "丈夫", "妻子", "之子", "之女", "母亲", "父亲", "我妈妈", "我爸爸", "我妈", "我爸",
    "儿子", "女儿", "老公", "老婆", "爷爷", "奶奶", "外婆", "外公", "同事", "客户经理", "理财经理", "我叫", "名叫",
    "本人", "签名", "签字", "医师", "护士", "记录人", "复核人", "授权人", "被授权人", "收件人", "寄件人",
    "爸爸", "妈妈", "医生", "律师", "法官", "执行法官", "行长", "院长", "庭长", "科长", "主任", "经理",
)
NAME_TITLES = ("先生", "女士", "小姐", "同志", "老师", "医生", "大夫", "律师", "法官", "经理", "主任", "护士",
               "教授", "阿姨", "师傅", "太太", "老人", "大爷", "大妈", "同学")
_NAME_LABEL = re.compile(
    "(?:" + "|".join(sorted(map(re.escape, NAME_LABELS), key=len, reverse=True)) + r")(?:[:：]\s*|\s)?"
)
_NAME_TITLE = re.compile("|".join(map(re.escape, NAME_TITLES)))
# Names the source already masked: 张某, 王X, and the 甲/乙/丙 courts give to parties of one surname.
_MASKED = re.compile(r"某|[XxＸ×*＊○〇]")
_MASKED_ORDINAL = re.compile(r".[甲乙丙丁戊]")
_CLAUSE_END = re.compile(r"[，。；;,、：:！？!?\n\s（）()“”\"]")
_TITLE_NOT_PERSON = re.compile(r"事务所|办公室|工作站|协会|[所院站室处科部会]")
# "林建华，男，72岁": a record's head names the person before sex and age.
_NAME_HEADER = re.compile(rf"(?:^|(?<=[。；;\n：:]))\s*([{_HAN}]{{2,4}})(?=[，,]\s*[男女][，,、])")
# jieba tags that make a lone surname character a function word here (申请人向本院: 向/p): prepositions, conjunctions,
# particles, pronouns, adverbs, verbs...
_FUNCTION_FLAGS = ("p", "c", "u", "r", "d", "v", "uj", "ul", "ud", "y", "e", "o", "f", "t")
_NOT_GIVEN = set("的了在是和与及或因于向到对为把被将从由系男女称说等均已又也都曾经诉之所随跟让给并而则就仍还再才便即")

# -- diagnoses --------------------------------------------------------------------------------------
_DIAGNOSIS = re.compile(
    rf"(?:(?:初步|入院|出院|临床|病理|最终|门诊)?诊断(?:结果)?(?:为|是|：|:)|被?确诊(?:为|患有|患)?|患有|罹患|查出)\s*"
    rf"(?:\d[.、．]\s*)?([{_HAN}A-Za-z0-9αβⅠⅡⅢⅣ\-]{{2,24}}?)(?=[，。；;,、！？!?\n（(]|并|后|，|入院|住院|治疗|多年|\d+年|$)"
)
# Something in the sentence that points at one person.
_PERSON_CUE = re.compile(
    r"该(?:患者|病人|患儿|客户|员工)|患者本人|本人|我(?!们|国|院|科|行|司)|(?<![其他她])[他她](?!们|人)|\d{1,3}岁|[男女]性?[，,]"
)
_SENTENCE_END = re.compile(r"[。！？!?\n]")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_id_card(number: str) -> bool:
    """PRC resident ID (GB 11643): 17 digits, a real birth date, ISO 7064 MOD 11-2 check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_DIGITS = re.compile(r"\d{3}")  # every number PII type has a run of 3+ digits
_HOUSE_NUMBER = re.compile(r"\d+(?:-\d+)?[号號]")


def _addresses(text: str):
    """Address matches. The Chinese pattern is only tried in a window before each house number ("29号"):
    running it at every Han character is slow (its optional prefixes backtrack)."""
    seen_end = -1
    for number in _HOUSE_NUMBER.finditer(text):
        lo = max(0, number.start() - 48)
        for m in _ADDRESS_ZH.finditer(text, max(lo, seen_end), min(len(text), number.end() + 24)):
            if m.start() <= number.start() < m.end():
                seen_end = m.end()
                yield m.start(), m.end()
                break
    for m in _ADDRESS_EN.finditer(text):
        yield m.start(), m.end()


_PROVINCE_NAMES = re.compile(
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|"
    "贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)


def _address_start(text: str, start: int, end: int) -> int:
    """Where an address really starts: the Han prefix of the pattern can swallow the words before it
    ("为浙江省...", "住河北省..."); a province name near the front marks the start."""
    province = _PROVINCE_NAMES.search(text, start, min(end, start + 6))
    if province:
        return province.start()
    while start < end and text[start] in "住为在于是至往到":
        start += 1
    return start


def _labelled_addresses(text: str):
    """Addresses after a residence label ("住山东省济南市历下区..."), house number or not: at least two
    administrative units (省, 市, 县, 镇, 村, 组...) up to the next punctuation."""
    for m in _ADDRESS_LABELLED.finditer(text):
        label = text[m.start() : m.start(1)]
        if label.lstrip("现家").startswith("住") and label.rstrip(":：") in ("住", "现住", "家住"):
            if not _ADDRESS_LABEL_START.match(text, m.start()) and label.rstrip(":：") != "家住":
                continue
        value = m.group(1)
        if len({u.group() for u in _ADMIN.finditer(value)}) >= 2:
            yield m.start(1), m.end(1)


def _clause(text: str, pos: int) -> tuple[int, str]:
    """The clause around ``pos`` (up to 30 characters either side, cut at punctuation): jieba tags names
    better in context than in a bare window."""
    lo = max([m.end() for m in _CLAUSE_END.finditer(text, max(0, pos - 30), pos)] or [max(0, pos - 30)])
    nxt = _CLAUSE_END.search(text, pos, pos + 30)
    return lo, text[lo : nxt.start() if nxt else min(len(text), pos + 30)]


def _tokens(text: str, pos: int) -> list[tuple[int, int, str, str]]:
    """jieba's ``(start, end, word, flag)`` over the clause around ``pos``, in ``text``'s offsets (HMM on:
    unseen names are only found by the HMM)."""
    lo, clause = _clause(text, pos)
    out = []
    for word, flag in _tag(clause):
        out.append((lo, lo + len(word), word, flag))
        lo += len(word)
    return out


@lru_cache(maxsize=4096)
def _tag(clause: str) -> tuple[tuple[str, str], ...]:
    """Tagged once per clause: a clause with a role and a title, or one repeated across documents (form
    headers: 患者姓名, 持卡人), is not tagged again."""
    return tuple((pair.word, pair.flag) for pair in _tagger().cut(clause))


@lru_cache(maxsize=1)
def _tagger():
    """jieba's tagger over a dictionary of its own, as synth.pos makes it (importing domainlm.synth would
    pull in the KB and models): the global dictionary gains a KB's terms when Milvus Lite runs in-process."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(60)  # no "Building prefix dict" lines on stderr
    tagger = jieba.posseg.POSTokenizer(jieba.Tokenizer())
    tagger.tokenizer.check_initialized()
    return tagger


def _word_freq(word: str) -> int:
    """How often jieba's dictionary has seen ``word`` (0 for a word it does not know)."""
    return _tagger().tokenizer.FREQ.get(word) or 0


def _surname_len(text: str, pos: int) -> int:
    if text[pos : pos + 2] in SURNAMES_2:
        return 2
    return 1 if text[pos : pos + 1] in SURNAMES_1 else 0


def _han(ch: str) -> bool:
    return len(ch) == 1 and "\u4e00" <= ch <= "\u9fff"


def _surname_here(tokens: list[tuple[int, int, str, str]], pos: int) -> bool:
    """Whether the surname character at ``pos`` is used as one in this clause: not a preposition, verb or
    conjunction of its own (申请人向本院, 秘书长和国际法官) unless jieba tags what follows as a name (何 + 俊杰),
    and not the start of a place, organisation or common word (郑州市, 客户信息, 商业秘密)."""
    first = next((t for t in tokens if t[0] == pos), None)
    after = next((t for t in tokens if t[0] == pos + 1), None)
    if first is None:
        return any(t[0] < pos < t[1] and t[3].startswith("nr") for t in tokens)
    word, flag = first[2], first[3]
    if len(word) == 1:  # jieba often tags a lone surname q (张先生): only function words are ruled out
        return flag not in _FUNCTION_FLAGS or bool(after and after[3].startswith("nr"))
    # jieba tags common words nr in context (当事人陈述 -> 陈述/nr): a frequent dictionary word is no name.
    if len(word) > 4 or _word_freq(word) >= 200:
        return False
    if flag.startswith("nr"):
        return True
    return flag in ("n", "ng") and _word_freq(word) == 0  # not in the dictionary: a word jieba's HMM made up


def _cuts_a_word(tokens: list[tuple[int, int, str, str]], start: int, end: int) -> bool:
    """A name never ends inside a word: 赵菊外|出, 商业秘|密 (names jieba tags ``nr`` excepted)."""
    return any(t[0] >= start and t[0] < end < t[1] and not t[3].startswith("nr") for t in tokens)


def _name_after(text: str, pos: int) -> tuple[int, int] | None:
    """The person's name starting at ``pos`` (just after a role such as 患者 or 原告): surname, then a
    one- or two-character given name. Two characters unless the second is a function word (魏强于...),
    or starts a word jieba sees in the clause (秦朗评估), or the third is not a word's end."""
    n = _surname_len(text, pos)
    if not n:
        return None
    g = pos + n
    c1, c2, c3 = text[g : g + 1], text[g + 1 : g + 2], text[g + 2 : g + 3]
    if not _han(c1) or c1 in _NOT_GIVEN or _NAME_TITLE.match(text, g):
        return None
    tokens = _tokens(text, pos)
    if n == 1 and not _surname_here(tokens, pos):
        return None
    if not _han(c2) or c2 in _NOT_GIVEN or _NAME_TITLE.match(text, g + 1):
        ends = [g + 1]
    elif not _han(c3) or c3 in _NOT_GIVEN or _NAME_TITLE.match(text, g + 2):
        ends = [g + 2, g + 1]
    elif any(t[0] == g + 1 and t[1] - t[0] >= 2 for t in tokens):
        ends = [g + 1]
    else:
        ends = [g + 2, g + 1]
    # A function word right after the name explains the boundary even when jieba glued it on (魏强|于 -> 强于).
    end = next((e for e in ends if text[e : e + 1] in _NOT_GIVEN or not _cuts_a_word(tokens, pos, e)), None)
    return (pos, end) if end else None


def _name_before(text: str, pos: int) -> tuple[int, int] | None:
    """The name ending at ``pos`` (just before a title such as 先生 or 医生): the longest surname-led run
    of up to three characters (four with a two-character surname) that starts where a jieba token starts."""
    title = _NAME_TITLE.match(text, pos)
    if _TITLE_NOT_PERSON.match(text, title.end()):  # 律师事务所, 医生办公室
        return None
    tokens = _tokens(text, pos)
    starts = {t[0] for t in tokens}
    for k in range(max(0, pos - 4), pos):
        name = text[k:pos]
        n = _surname_len(text, k)
        if not n or len(name) > n + 2 or not all(_han(c) for c in name) or any(c in _NOT_GIVEN for c in name[n:]):
            continue
        covering = [t for t in tokens if t[0] < pos and t[1] > k]
        if k not in starts and not any(t[0] < k < t[1] and t[3].startswith("nr") for t in covering):
            continue
        if n == 1 and k in starts and not _surname_here(tokens, k):
            continue
        # One dictionary word that is not a name (全科医生, 班主任): no person here.
        if len(covering) == 1 and not covering[0][3].startswith("nr") and covering[0][1] - covering[0][0] >= 2:
            continue
        if pos not in starts and not any(t[0] <= k and t[1] > pos and t[3].startswith("nr") for t in tokens):
            continue
        return k, pos
    return None


def _masked(text: str, start: int, end: int) -> bool:
    """张某, 李某某, 王X (the character after the name counts: 张 + 某), 彭甲."""
    return bool(_MASKED.search(text, start, end + 1)) or bool(_MASKED_ORDINAL.fullmatch(text, start, end))


def _names(text: str) -> list[tuple[int, int]]:
    """Names anchored by a role before them or a title after them, then every other occurrence."""
    found: dict[str, None] = {}
    for m in _NAME_LABEL.finditer(text):
        hit = _name_after(text, m.end())
        if hit and not _masked(text, *hit):
            found[text[hit[0] : hit[1]]] = None
    for m in _NAME_HEADER.finditer(text):  # "林建华，男，72岁" at the head of a record
        if _surname_len(text, m.start(1)) and not _masked(text, m.start(1), m.end(1)):
            found[m.group(1)] = None
    for m in _NAME_TITLE.finditer(text):
        hit = _name_before(text, m.start())
        if hit and not _masked(text, *hit):
            found[text[hit[0] : hit[1]]] = None
    positions: list[tuple[int, int]] = []
    for name in sorted(found, key=len, reverse=True):
        start = text.find(name)
        while start != -1:
            end = start + len(name)
            # A surname alone (张 from 张先生) is a name only where a title follows it.
            if len(name) > 1 or _NAME_TITLE.match(text, end):
                positions.append((start, end))
            start = text.find(name, end)
    return positions


def _diagnoses(text: str, person_at) -> list[tuple[int, int]]:
    """Conditions after a diagnosis phrase, where the sentence points at one person (``person_at(lo, hi)``
    says whether a name lies in ``[lo, hi)``)."""
    spans = []
    for m in _DIAGNOSIS.finditer(text):
        lo = max([e.end() for e in _SENTENCE_END.finditer(text, 0, m.start())] or [0])
        nxt = _SENTENCE_END.search(text, m.end())
        hi = nxt.start() if nxt else len(text)
        if person_at(lo, hi) or _PERSON_CUE.search(text, lo, hi):
            spans.append((m.start(1), m.end(1)))
    return spans


def find_pii(text: str, types: tuple[str, ...] = tuple(PLACEHOLDERS)) -> list[PiiSpan]:
    """Every PII span in ``text``, sorted by position, non-overlapping.

    Earlier detectors win an overlap: the checked numbers first (an ID is not also a card), numbers with a
    context label before bare ones, names and diagnoses last.
    """
    found: list[PiiSpan] = []
    wanted = set(types)

    def add(start: int, end: int, kind: str) -> None:
        if kind in wanted and end > start and not any(s.start < end and start < s.end for s in found):
            found.append(PiiSpan(start, end, kind, text[start:end]))

    has_digits = _DIGITS.search(text) is not None
    if has_digits:
        for m in _ID_CARD.finditer(text):
            if valid_id_card(m.group()):
                add(m.start(), m.end(), "id_card")
    if "@" in text:
        for m in _EMAIL.finditer(text):
            add(m.start(), m.end(), "email")
    if has_digits:
        for m in _CASE_NO.finditer(text):
            add(m.start(), m.end(), "case_no")
        for m in _RECORD.finditer(text):
            add(m.start(1), m.end(1), "record_no")
        for m in _ACCOUNT_LABELLED.finditer(text):
            add(m.start(1), m.end(1), "bank_card")
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 16 <= len(digits) <= 19 and luhn_ok(digits) and not valid_id_card(digits):
                add(m.start(), m.end(), "bank_card")
        for m in _MOBILE.finditer(text):
            if not _NOT_PHONE_CONTEXT.search(text[max(0, m.start() - 8) : m.start()]):
                add(m.start(), m.end(), "mobile")
        # A branch's, court's or hospital's own number is public business information.
        landlines = [(m.start(), m.end()) for m in _LANDLINE.finditer(text)]
        landlines += [(m.start(1), m.end(1)) for m in _LANDLINE_LABELLED.finditer(text)]
        for start, end in landlines:
            if not _BUSINESS.search(text[max(0, start - 40) : start]):
                add(start, end, "landline")
    for m in _PLATE.finditer(text):
        if sum(c.isdigit() for c in m.group()) >= 3:
            add(m.start(), m.end(), "plate")
    if "address" in wanted:
        for start, end in _addresses(text):
            # The Han-character prefix can swallow the label before the address ("住址上海市...").
            labels = list(_ADDRESS_LABEL.finditer(text, start, end))
            start = _address_start(text, labels[-1].end() if labels else start, end)
            # A branch's, company's, court's or hospital's address is public, not personal data.
            if _BUSINESS.search(text[max(0, start - 12) : start]):
                continue
            add(start, end, "address")
        for start, end in _labelled_addresses(text):
            if not _BUSINESS.search(text[max(0, start - 12) : start]):
                add(start, end, "address")
    names = _names(text) if wanted & {"name", "medical"} else []
    for start, end in names:
        add(start, end, "name")
    if "medical" in wanted:
        for start, end in _diagnoses(text, lambda lo, hi: any(lo <= s < hi for s, _ in names)):
            add(start, end, "medical")
    return sorted(found, key=lambda s: s.start)


def redact_pii(text: str, types: tuple[str, ...] = tuple(PLACEHOLDERS)) -> OpResult:
    """Replace every PII span with its typed placeholder (``[MOBILE]``, ``[NAME]``...)."""
    spans = [(s.start, s.end, PLACEHOLDERS[s.type], s.type) for s in find_pii(text, types)]
    result = replace_spans(text, spans)
    if spans:
        result.meta = {"pii": {t: sum(1 for s in spans if s[3] == t) for t in types if any(s[3] == t for s in spans)}}
    return result


def redact_texts(texts: list[str], types: tuple[str, ...] = tuple(PLACEHOLDERS)) -> list[str]:
    """Redact the texts of one conversation together: a name anchored in one of them ("患者王建国") is
    also redacted where another mentions it bare ("王建国的检查结果"), e.g. in a later turn or the answer."""
    found = [find_pii(t, types) for t in texts]
    names = {s.text for spans in found for s in spans if s.type == "name" and len(s.text) > 1}
    out = []
    for text, spans in zip(texts, found, strict=True):
        taken = [(s.start, s.end, PLACEHOLDERS[s.type], s.type) for s in spans]
        for name in sorted(names, key=len, reverse=True):
            start = text.find(name)
            while start != -1:
                end = start + len(name)
                if not any(s < end and start < e for s, e, _, _ in taken):
                    taken.append((start, end, PLACEHOLDERS["name"], "name"))
                start = text.find(name, end)
        out.append(replace_spans(text, sorted(taken)).text)
    return out
