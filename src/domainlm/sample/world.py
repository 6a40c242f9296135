"""The fictional bank "Harbor Bank / 海港银行": products, services and branches with concrete attributes.

Everything here is drawn from one ``random.Random(seed)``; the tables below are the vocabulary of the
domain (attribute names, value pools, sentence templates in Chinese and English). Values within one
attribute are drawn without replacement while the pool lasts, so answers stay distinctive (a rate of
3.35%, a fee of 15元) and can be checked by substring.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------------
# Value formatting, per language. Within one attribute no value is a substring of another (a test checks),
# so scoring an answer by substring cannot confuse 5元 with 15元.
# --------------------------------------------------------------------------------------------------


def _pct(x: float, lang: str) -> str:
    return f"{x:.2f}%"


def _yuan(n: int, lang: str) -> str:
    if lang == "en":  # "CNY 50.00": the cents anchor the end, so "CNY 50" never matches inside "CNY 500"
        return f"CNY {n:,}.00"
    return f"{n // 10000}万元" if n >= 10000 and n % 10000 == 0 else f"{n}元"


def _months(n: int, lang: str) -> str:
    if lang == "en":
        if n % 12 == 0:
            return "1 year" if n == 12 else f"{n // 12} years"
        return f"{n} months"
    return f"{n // 12}年" if n % 12 == 0 else f"{n}个月"


def _years(n: int, lang: str) -> str:
    return ("1 year" if n == 1 else f"{n} years") if lang == "en" else f"{n}年"


def _days(n: int, lang: str) -> str:
    return f"{n} days" if lang == "en" else f"{n}天"


def _workdays(n: int, lang: str) -> str:
    return (f"{n} business day" + ("s" if n > 1 else "")) if lang == "en" else f"{n}个工作日"


def _age_range(pair: tuple[int, int], lang: str) -> str:
    return f"{pair[0]} to {pair[1]} years old" if lang == "en" else f"{pair[0]}至{pair[1]}周岁"


def _min_age(n: int, lang: str) -> str:
    return f"individual customers aged {n} or over" if lang == "en" else f"年满{n}周岁的个人客户"


def _purchases(n: int, lang: str) -> str:
    return f"{n} card purchases a year" if lang == "en" else f"每年刷卡满{n}次"


def _plain(x: str, lang: str) -> str:
    return x


def _bilingual(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "en" else pair[0]


_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")


def _date(md: tuple[int, int], lang: str) -> str:
    return f"{_MONTHS_EN[md[0] - 1]} {md[1]}, 2025" if lang == "en" else f"2025年{md[0]}月{md[1]}日"


def _hours(hm: tuple[int, int], lang: str) -> str:
    return f"{hm[0]}:00 to {hm[1]}:30" if lang == "en" else f"{hm[0]}:00至{hm[1]}:30"


def _steps(lo: float, hi: float, step: float) -> list[float]:
    n = round((hi - lo) / step)
    return [round(lo + i * step, 2) for i in range(n + 1)]


@dataclass(frozen=True)
class AttrSpec:
    """One attribute: its labels, how to ask about it, its value pool and the sentences that state it."""

    key: str
    zh: str  # label as written in Chinese documents and questions
    en: str
    pool: list
    fmt: Callable
    zh_templates: tuple[str, ...]
    en_templates: tuple[str, ...]
    zh_q: str = "多少"  # question word: 多少 for numbers, 什么 for descriptions

    def label(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh

    def format(self, raw, lang: str) -> str:
        return self.fmt(raw, lang)

    def templates(self, lang: str) -> tuple[str, ...]:
        return self.en_templates if lang == "en" else self.zh_templates


_YUAN_SMALL = [50, 100, 200, 300, 500, 800, 1000, 2000, 3000, 5000, 10000, 20000, 30000, 50000, 100000, 200000]

PRODUCT_ATTRS: dict[str, list[AttrSpec]] = {
    "deposit": [
        AttrSpec("annual_rate", "年利率", "annual interest rate", _steps(1.55, 3.95, 0.05), _pct,
                 ("{name}的年利率为{v}。", "本产品年利率为{v}，到期一次性还本付息。"),
                 ("The annual interest rate of {name} is {v}.",
                  "This product pays an annual interest rate of {v}, with principal and interest paid at maturity.")),
        AttrSpec("term", "存期", "term", [3, 6, 12, 24, 36, 60], _months,
                 ("{name}的存期为{v}。", "本产品存期为{v}，到期自动转存。"),
                 ("The term of {name} is {v}.", "Deposits run for a term of {v} and renew automatically."),
                 zh_q="多久"),
        AttrSpec("min_amount", "起存金额", "minimum deposit", _YUAN_SMALL, _yuan,
                 ("{name}的起存金额为{v}。", "本产品起存金额为{v}，超出部分按元递增。"),
                 ("The minimum deposit for {name} is {v}.", "You can open this deposit with a minimum deposit of {v}.")),
        AttrSpec("early_rate", "提前支取利率", "early withdrawal rate", _steps(0.10, 0.45, 0.05), _pct,
                 ("如提前支取，按提前支取利率{v}计息。", "{name}的提前支取利率为{v}。"),
                 ("Early withdrawals earn an early withdrawal rate of {v}.",
                  "The early withdrawal rate of {name} is {v}.")),
        AttrSpec("eligibility", "适用对象", "eligibility", [16, 18, 20, 22], _min_age,
                 ("{name}的适用对象为{v}。",), ("Eligibility for {name}: {v}.",), zh_q="什么"),
    ],
    "loan": [
        AttrSpec("annual_rate", "年利率", "annual interest rate", _steps(3.45, 9.95, 0.05), _pct,
                 ("{name}的年利率为{v}。", "本贷款年利率为{v}，按等额本息方式还款。"),
                 ("The annual interest rate of {name} is {v}.",
                  "This loan carries an annual interest rate of {v}, repaid in equal monthly instalments.")),
        AttrSpec("max_amount", "最高额度", "maximum amount",
                 [50000, 100000, 200000, 300000, 500000, 800000, 1000000, 2000000, 3000000, 5000000],
                 _yuan, ("{name}的最高额度为{v}。", "单户贷款最高额度为{v}。"),
                 ("The maximum amount of {name} is {v}.", "Each borrower may receive up to a maximum amount of {v}.")),
        AttrSpec("max_term", "最长期限", "maximum term", [12, 24, 36, 60, 120, 240, 360], _months,
                 ("{name}的最长期限为{v}。",), ("The maximum term of {name} is {v}.",), zh_q="多久"),
        AttrSpec("handling_fee", "手续费", "handling fee", [50, 88, 100, 120, 200, 300, 500, 600], _yuan,
                 ("{name}每笔收取手续费{v}。", "发放贷款时一次性收取手续费{v}。"),
                 ("{name} charges a handling fee of {v} per loan.",
                  "A one-off handling fee of {v} is charged when the loan is paid out.")),
        AttrSpec("age_range", "申请年龄", "applicant age", [(22, 55), (18, 60), (20, 65), (25, 60), (18, 55)],
                 _age_range, ("{name}的申请年龄为{v}。",), ("The applicant age for {name} is {v}.",), zh_q="什么"),
    ],
    "card": [
        AttrSpec("annual_fee", "年费", "annual fee",
                 [88, 99, 120, 168, 260, 280, 360, 480, 580, 680, 880, 1200, 1800, 2000, 3600], _yuan,
                 ("{name}的年费为{v}。", "本卡主卡年费为{v}。"),
                 ("The annual fee of {name} is {v}.", "The primary card has an annual fee of {v}.")),
        AttrSpec("interest_free", "免息期", "interest-free period", [20, 25, 30, 45, 50, 51, 52, 55, 56, 60], _days,
                 ("{name}的最长免息期为{v}。",), ("{name} offers an interest-free period of up to {v}.",), zh_q="多久"),
        AttrSpec("credit_limit", "最高信用额度", "maximum credit limit",
                 [10000, 20000, 30000, 50000, 80000, 100000, 160000, 200000, 300000, 500000], _yuan,
                 ("{name}的最高信用额度为{v}。",), ("The maximum credit limit of {name} is {v}.",)),
        AttrSpec("cash_fee", "取现手续费率", "cash advance fee rate", _steps(0.50, 3.00, 0.10), _pct,
                 ("{name}的取现手续费率为{v}。",), ("The cash advance fee rate of {name} is {v}.",)),
        AttrSpec("fee_waiver", "免年费条件", "annual fee waiver", [3, 5, 6, 8, 10, 12, 20, 24], _purchases,
                 ("{name}的免年费条件为{v}。",), ("Annual fee waiver for {name}: {v}.",), zh_q="什么"),
    ],
    "wealth": [
        AttrSpec("benchmark", "业绩比较基准", "performance benchmark", _steps(2.10, 4.95, 0.05), _pct,
                 ("{name}的业绩比较基准为{v}。", "本产品业绩比较基准为{v}，不代表未来收益。"),
                 ("The performance benchmark of {name} is {v}.",
                  "The performance benchmark is {v} and does not guarantee future returns.")),
        AttrSpec("min_purchase", "起购金额", "minimum purchase", [1, 100, 1000, 10000, 50000, 100000, 300000, 1000000],
                 _yuan, ("{name}的起购金额为{v}。",), ("The minimum purchase of {name} is {v}.",)),
        AttrSpec("risk_level", "风险等级", "risk level", ["R1", "R2", "R3", "R4", "R5"], _plain,
                 ("{name}的风险等级为{v}。",), ("{name} has a risk level of {v}.",), zh_q="什么"),
        AttrSpec("mgmt_fee", "管理费率", "management fee rate", _steps(0.15, 1.50, 0.05), _pct,
                 ("{name}的管理费率为每年{v}。",), ("The management fee rate of {name} is {v} per year.",)),
        AttrSpec("redemption", "赎回到账时间", "redemption settlement time", [1, 2, 3, 5, 7], _workdays,
                 ("{name}的赎回到账时间为{v}。",), ("The redemption settlement time of {name} is {v}.",), zh_q="多久"),
    ],
    "insurance": [
        AttrSpec("premium", "年保费", "annual premium",
                 [96, 128, 168, 199, 268, 299, 368, 458, 588, 699, 888, 1280, 1680, 2380, 3600], _yuan,
                 ("{name}的年保费为{v}。", "本保险年保费为{v}，可按月缴纳。"),
                 ("The annual premium of {name} is {v}.", "This policy has an annual premium of {v}, payable monthly.")),
        AttrSpec("sum_insured", "保额", "sum insured",
                 [100000, 200000, 300000, 500000, 1000000, 2000000, 3000000, 6000000], _yuan,
                 ("{name}的保额为{v}。", "本保险最高保额为{v}。"),
                 ("The sum insured of {name} is {v}.", "This policy offers a sum insured of up to {v}.")),
        AttrSpec("waiting_period", "等待期", "waiting period", [30, 60, 90, 180], _days,
                 ("{name}的等待期为{v}。",), ("The waiting period of {name} is {v}.",), zh_q="多久"),
        AttrSpec("entry_age", "投保年龄", "entry age", [(0, 60), (18, 60), (18, 65), (28, 55), (30, 70)], _age_range,
                 ("{name}的投保年龄为{v}。",), ("The entry age of {name} is {v}.",), zh_q="什么"),
        AttrSpec("coverage_term", "保障期限", "coverage term", [1, 5, 10, 20, 30], _years,
                 ("{name}的保障期限为{v}。",), ("The coverage term of {name} is {v}.",), zh_q="多久"),
    ],
}

CATEGORY_NAMES = {
    "deposit": ("存款", "deposit"),
    "loan": ("贷款", "loan"),
    "card": ("信用卡", "credit card"),
    "wealth": ("理财与基金", "wealth management and funds"),
    "insurance": ("保险", "insurance"),
}

# Product names: 海港 + stem + suffix (Chinese) / Harbor + stem + suffix (English).
STEMS = [
    ("安盈", "SafeGain"), ("稳享", "SteadyJoy"), ("鑫悦", "GoldDelight"), ("乐存", "HappySave"), ("智选", "SmartPick"),
    ("惠民", "PeopleFirst"), ("福满", "FullFortune"), ("金穗", "GoldenEar"), ("优享", "PrimeJoy"), ("尊享", "Prestige"),
    ("恒利", "EverGain"), ("丰收", "Harvest"), ("星辰", "Starlight"), ("明珠", "Pearl"), ("锦程", "BrightPath"),
    ("瑞祥", "Auspice"), ("嘉和", "Concord"), ("汇通", "Unity"), ("盛世", "Prosperity"), ("如意", "Ruyi"),
    ("安康", "WellBeing"), ("康宁", "Serenity"), ("长青", "Evergreen"), ("启航", "SetSail"), ("远帆", "FarSail"),
    ("灯塔", "Lighthouse"), ("潮汐", "Tide"), ("珊瑚", "Coral"), ("蓝湾", "BlueBay"), ("海鸥", "Seagull"),
]
SUFFIXES = {
    "deposit": [("定期存款", "Time Deposit"), ("大额存单", "Certificate of Deposit"), ("通知存款", "Call Deposit"),
                ("整存整取", "Lump-Sum Deposit")],
    "loan": [("个人消费贷", "Personal Loan"), ("住房按揭贷款", "Mortgage"), ("经营贷", "Business Loan"),
             ("汽车贷款", "Car Loan")],
    "card": [("信用卡", "Credit Card"), ("白金信用卡", "Platinum Credit Card"), ("联名信用卡", "Co-branded Credit Card"),
             ("青春信用卡", "Youth Credit Card")],
    "wealth": [("理财计划", "Wealth Plan"), ("债券基金", "Bond Fund"), ("货币基金", "Money Market Fund"),
               ("混合基金", "Balanced Fund")],
    "insurance": [("医疗保险", "Medical Insurance"), ("意外险", "Accident Insurance"), ("重疾险", "Critical Illness Insurance"),
                  ("年金保险", "Annuity Insurance")],
}

# Bank-wide services, each with one attribute, stated in policies and FAQs.
SERVICE_ATTRS: list[tuple[str, str, AttrSpec]] = [
    ("跨行转账", "cross-bank transfers",
     AttrSpec("transfer_fee", "手续费", "fee", [1, 2, 3, 5, 8], _yuan,
              ("{name}手续费为每笔{v}。",), ("The fee for {name} is {v} per transaction.",))),
    ("跨行ATM取款", "cross-bank ATM withdrawals",
     AttrSpec("atm_fee", "取款手续费", "withdrawal fee", [2, 3, 4, 6], _yuan,
              ("{name}的取款手续费为每笔{v}。",), ("The withdrawal fee for {name} is {v} each.",))),
    ("手机银行转账", "mobile banking transfers",
     AttrSpec("daily_limit", "单日限额", "daily limit", [50000, 100000, 200000, 500000, 1000000], _yuan,
              ("{name}的单日限额为{v}。",), ("The daily limit for {name} is {v}.",))),
    ("借记卡挂失", "debit card loss reporting",
     AttrSpec("lost_card_fee", "挂失手续费", "loss reporting fee", [6, 10, 15, 20], _yuan,
              ("{name}的挂失手续费为{v}。",), ("The loss reporting fee for {name} is {v}.",))),
    ("补办借记卡", "debit card replacement",
     AttrSpec("replacement_fee", "工本费", "card fee", [8, 10, 12, 15, 20], _yuan,
              ("{name}的工本费为{v}。",), ("The card fee for {name} is {v}.",))),
    ("短信通知服务", "SMS alerts",
     AttrSpec("sms_fee", "月服务费", "monthly fee", [1, 2, 3], _yuan,
              ("{name}的月服务费为{v}。",), ("The monthly fee for {name} is {v}.",))),
    ("小额账户", "low-balance accounts",
     AttrSpec("low_balance_fee", "季度管理费", "quarterly fee", [3, 5, 6, 9], _yuan,
              ("{name}的季度管理费为{v}。",), ("The quarterly fee for {name} is {v}.",))),
    ("海港银行客服热线", "the Harbor Bank customer hotline",
     AttrSpec("hotline", "号码", "number", [f"400-818-{n}" for n in (2368, 5566, 6688, 7070, 8899, 9595)], _plain,
              ("{name}号码为{v}。",), ("The number of {name} is {v}.",), zh_q="什么")),
    ("客户资料", "customer records",
     AttrSpec("retention", "保存期限", "retention period", [3, 5, 10, 20], _years,
              ("{name}的保存期限为{v}。",), ("The retention period for {name} is {v}.",), zh_q="多久")),
]

CITIES = [
    ("深圳", "南山", "Shenzhen", "Nanshan"), ("广州", "天河", "Guangzhou", "Tianhe"), ("上海", "浦东", "Shanghai", "Pudong"),
    ("杭州", "西湖", "Hangzhou", "Xihu"), ("南京", "鼓楼", "Nanjing", "Gulou"), ("成都", "武侯", "Chengdu", "Wuhou"),
    ("武汉", "江汉", "Wuhan", "Jianghan"), ("厦门", "思明", "Xiamen", "Siming"), ("青岛", "市南", "Qingdao", "Shinan"),
    ("天津", "和平", "Tianjin", "Heping"), ("北京", "朝阳", "Beijing", "Chaoyang"), ("苏州", "姑苏", "Suzhou", "Gusu"),
    ("宁波", "鄞州", "Ningbo", "Yinzhou"), ("西安", "雁塔", "Xi'an", "Yanta"), ("重庆", "渝中", "Chongqing", "Yuzhong"),
    ("长沙", "岳麓", "Changsha", "Yuelu"), ("大连", "中山", "Dalian", "Zhongshan"), ("福州", "台江", "Fuzhou", "Taijiang"),
]
ROADS = [("海港路", "Haigang Road"), ("滨海大道", "Binhai Avenue"), ("人民路", "Renmin Road"), ("解放路", "Jiefang Road"),
         ("建设路", "Jianshe Road"), ("新华路", "Xinhua Road"), ("文化路", "Wenhua Road"), ("学府路", "Xuefu Road")]

BRANCH_ATTRS = [
    AttrSpec("new_address", "新址", "new address", [], _bilingual,
             ("{name}新址位于{v}。",), ("The new address of {name} is {v}.",), zh_q="哪里"),
    AttrSpec("business_hours", "营业时间", "business hours", [(8, 16), (8, 17), (9, 16), (9, 17), (9, 18), (10, 18)],
             _hours, ("{name}营业时间调整为{v}。",), ("The business hours of {name} are now {v}.",), zh_q="什么"),
    AttrSpec("opening_date", "新址启用日期", "opening date", [], _date,
             ("{name}新址启用日期为{v}。",), ("The opening date of {name} at the new address is {v}.",), zh_q="哪天"),
]

# Attributes that no document ever mentions: questions about them must be refused.
MISSING_ATTRS = {
    "deposit": [("外币兑换点差", "foreign exchange spread"), ("黄金回购价格", "gold buyback price")],
    "loan": [("提前还款违约金", "early repayment penalty"), ("抵押物评估费", "collateral appraisal charge")],
    "card": [("积分兑换比例", "reward points ratio"), ("境外消费返现比例", "overseas cashback ratio")],
    "wealth": [("业绩报酬计提比例", "performance fee ratio"), ("巨额赎回门槛", "large redemption threshold")],
    "insurance": [("保单贷款利率", "policy loan rate"), ("犹豫期退费比例", "cooling-off refund ratio")],
}


@dataclass
class Entity:
    """A product, a bank-wide service or a branch, with raw attribute values (formatted per language)."""

    id: str
    kind: str  # product | service | branch
    category: str  # deposit, loan, card, wealth, insurance, service, branch
    name_zh: str
    name_en: str
    lang: str  # language of the document that describes it (products); services/branches appear in several
    attrs: dict[str, object] = field(default_factory=dict)
    specs: dict[str, AttrSpec] = field(default_factory=dict)

    def name(self, lang: str) -> str:
        return self.name_en if lang == "en" else self.name_zh

    def value(self, key: str, lang: str) -> str:
        return self.specs[key].format(self.attrs[key], lang)


@dataclass
class World:
    products: list[Entity]
    services: list[Entity]
    branches: list[Entity]
    unused_names: list[tuple[str, str, str]]  # (category, zh, en) product names that exist nowhere


def _draw(rng: random.Random, pool: list, n: int) -> list:
    """n values from pool: without replacement while the pool lasts, then again from a fresh shuffle."""
    out: list = []
    while len(out) < n:
        batch = list(pool)
        rng.shuffle(batch)
        out.extend(batch[: n - len(out)])
    return out


def build_world(rng: random.Random, n_products: int, n_branches: int, en_share: float = 0.3) -> World:
    categories = list(PRODUCT_ATTRS)
    # Round-robin over categories so even a handful of products covers all five.
    per_cat = {c: 0 for c in categories}
    for i in range(n_products):
        per_cat[categories[i % len(categories)]] += 1
    products: list[Entity] = []
    unused: list[tuple[str, str, str]] = []
    for cat in categories:
        combos = [(s, x) for s in STEMS for x in SUFFIXES[cat]]
        rng.shuffle(combos)
        chosen, rest = combos[: per_cat[cat]], combos[per_cat[cat]:]
        unused.extend((cat, "海港" + s[0] + x[0], f"Harbor {s[1]} {x[1]}") for s, x in rest[:6])
        values = {spec.key: _draw(rng, spec.pool, len(chosen)) for spec in PRODUCT_ATTRS[cat]}
        for j, (stem, suffix) in enumerate(chosen):
            products.append(Entity(
                id="", kind="product", category=cat, name_zh="海港" + stem[0] + suffix[0],
                name_en=f"Harbor {stem[1]} {suffix[1]}", lang="en" if rng.random() < en_share else "zh",
                attrs={k: v[j] for k, v in values.items()}, specs={s.key: s for s in PRODUCT_ATTRS[cat]},
            ))
    rng.shuffle(products)
    for i, p in enumerate(products, start=1):
        p.id = f"P{i:03d}"
    # At least one English product manual, so English is exercised even at size tiny.
    if not any(p.lang == "en" for p in products):
        products[0].lang = "en"
    if all(p.lang == "en" for p in products):
        products[-1].lang = "zh"

    services = []
    for i, (zh, en, spec) in enumerate(SERVICE_ATTRS, start=1):
        services.append(Entity(id=f"S{i:02d}", kind="service", category="service", name_zh=zh, name_en=en,
                               lang="zh", attrs={spec.key: rng.choice(spec.pool)}, specs={spec.key: spec}))

    branches = []
    cities = list(CITIES)
    rng.shuffle(cities)
    for i, (city, district, city_en, district_en) in enumerate(cities[:n_branches], start=1):
        road = rng.choice(ROADS)
        number = rng.randint(8, 399)
        address = (f"{city}市{district}区{road[0]}{number}号", f"No. {number} {road[1]}, {district_en} District, {city_en}")
        specs = {s.key: s for s in BRANCH_ATTRS}
        branches.append(Entity(
            id=f"B{i:02d}", kind="branch", category="branch", name_zh=f"海港银行{city}{district}支行",
            name_en=f"Harbor Bank {city_en} {district_en} Branch", lang="zh",
            attrs={"new_address": address, "business_hours": rng.choice(BRANCH_ATTRS[1].pool),
                   "opening_date": (rng.randint(1, 12), rng.randint(1, 28))},
            specs=specs,
        ))
    return World(products=products, services=services, branches=branches, unused_names=unused)


def distractor_values(spec: AttrSpec, correct_raw, lang: str, rng: random.Random, k: int = 3, avoid: str = "") -> list[str]:
    """k wrong values for a multiple-choice question, from the attribute's pool; none that ``avoid`` (the
    evidence, e.g. a table row with other cells) states."""
    correct = spec.format(correct_raw, lang)
    options = []
    for raw in spec.pool:
        text = spec.format(raw, lang)
        if text not in correct and correct not in text and text not in options and text not in avoid:
            options.append(text)
    rng.shuffle(options)
    return options[:k]


# --------------------------------------------------------------------------------------------------
# Tables: a credit-card fee schedule (HTML), a wealth-product fee table (DOCX) and a deposit rate table
# (PDF). Their rows are products of the world (or deposit terms) with attributes no manual states, so a
# question about them is answered from a table cell or not at all. Drawn from their own random stream
# after the world is built, so adding them changes nothing else.
# --------------------------------------------------------------------------------------------------


def _rate(x: float, lang: str) -> str:
    return f"{x:.2f}"  # a rate table states bare numbers; the % is in its header


TABLE_ATTRS = {
    "supp_fee": AttrSpec("supp_fee", "附属卡年费", "supplementary card annual fee",
                         [35, 45, 55, 65, 75, 88, 99, 128, 168, 199, 266, 388], _yuan, (), ()),
    "subscribe_fee": AttrSpec("subscribe_fee", "认购费率", "subscription fee rate", _steps(0.10, 1.50, 0.10), _pct, (), ()),
    "redeem_fee": AttrSpec("redeem_fee", "赎回费率", "redemption fee rate", _steps(0.05, 0.95, 0.10), _pct, (), ()),
    "service_fee": AttrSpec("service_fee", "销售服务费率", "sales service fee rate", _steps(0.10, 0.60, 0.05), _pct,
                            (), ()),
    "fixed_rate": AttrSpec("fixed_rate", "整存整取年利率", "lump-sum deposit rate", _steps(1.05, 2.95, 0.05), _rate, (), ()),
    "installment_rate": AttrSpec("installment_rate", "零存整取年利率", "instalment deposit rate",
                                 _steps(0.65, 1.45, 0.05), _rate, (), ()),
}
DEPOSIT_TERMS = ["三个月", "六个月", "一年期", "二年期", "三年期", "五年期"]
INSTALLMENT_TERMS = {"一年期", "三年期", "五年期"}  # 零存整取 is offered for these terms only


@dataclass
class TableData:
    """A table of the sample: full grid (merged cells repeated), which slots are merged, and the facts
    it states as ``(row entity, attribute key, body row index)``."""

    key: str  # fees_html | wealth_docx | rates_pdf
    caption: str
    header: list[list[str]]
    rows: list[list[str]]
    merges: list[tuple[int, int, int, int]]  # (row0, col0, row1, col1), inclusive, over header + body rows
    facts: list[tuple[Entity, str, int]]


def _row_entity(n: int, category: str, name_zh: str, name_en: str, attrs: dict) -> Entity:
    return Entity(id=f"T{n:03d}", kind="table_row", category=category, name_zh=name_zh, name_en=name_en, lang="zh",
                  attrs=attrs, specs={k: TABLE_ATTRS[k] for k in attrs})


def build_tables(world: World, rng: random.Random) -> list[TableData]:
    """The sample's three tables, in Chinese, from the world's products and the table attributes' pools."""
    tables: list[TableData] = []
    count = 0

    def entity(category: str, name_zh: str, name_en: str, attrs: dict) -> Entity:
        nonlocal count
        count += 1
        return _row_entity(count, category, name_zh, name_en, attrs)

    # Credit-card fee schedule: 年费 spans 主卡 (the manual's figure) and 附属卡; one waiver rule for all cards.
    cards = [p for p in world.products if p.category == "card"]
    supp = _draw(rng, TABLE_ATTRS["supp_fee"].pool, len(cards))
    waiver = rng.choice(["首年免年费", "首年免年费，次年刷卡满6次免次年年费", "新户首年免年费"])
    rows, facts = [], []
    for i, (card, fee) in enumerate(zip(cards, supp, strict=True)):
        row = entity("card", card.name_zh, card.name_en, {"supp_fee": fee})
        rows.append([card.name_zh, card.value("annual_fee", "zh"), row.value("supp_fee", "zh"), waiver])
        facts.append((row, "supp_fee", i))
    tables.append(TableData("fees_html", "海港银行信用卡收费标准", [["卡片名称", "年费", "年费", "年费减免"],
                                                               ["卡片名称", "主卡", "附属卡", "年费减免"]],
                            rows, [(0, 0, 1, 0), (0, 1, 0, 2), (0, 3, 1, 3), (2, 3, 1 + len(rows), 3)], facts))

    # Wealth-product fees: 交易费率 spans 认购费率 and 赎回费率; one sales service fee for all products.
    wealth = [p for p in world.products if p.category == "wealth"]
    subscribe = _draw(rng, TABLE_ATTRS["subscribe_fee"].pool, len(wealth))
    redeem = _draw(rng, TABLE_ATTRS["redeem_fee"].pool, len(wealth))
    service = rng.choice(TABLE_ATTRS["service_fee"].pool)
    rows, facts = [], []
    for i, product in enumerate(wealth):
        row = entity("wealth", product.name_zh, product.name_en,
                     {"subscribe_fee": subscribe[i], "redeem_fee": redeem[i], "service_fee": service})
        rows.append([product.name_zh, row.value("subscribe_fee", "zh"), row.value("redeem_fee", "zh"),
                     row.value("service_fee", "zh")])
        facts += [(row, "subscribe_fee", i), (row, "redeem_fee", i), (row, "service_fee", i)]
    tables.append(TableData("wealth_docx", "海港银行理财产品费率表", [["产品名称", "交易费率", "交易费率", "销售服务费率"],
                                                               ["产品名称", "认购费率", "赎回费率", "销售服务费率"]],
                            rows, [(0, 0, 1, 0), (0, 1, 0, 2), (0, 3, 1, 3), (2, 3, 1 + len(rows), 3)], facts))

    # Deposit rates: 活期 has one rate across both columns; 零存整取 only for some terms.
    fixed = sorted(_draw(rng, TABLE_ATTRS["fixed_rate"].pool, len(DEPOSIT_TERMS)))
    installment = sorted(_draw(rng, TABLE_ATTRS["installment_rate"].pool, len(INSTALLMENT_TERMS)))
    demand = rng.choice([0.10, 0.15, 0.20, 0.25, 0.30, 0.35])
    rows, facts, merges = [["活期", f"{demand:.2f}", f"{demand:.2f}"]], [], [(0, 0, 1, 0), (0, 1, 0, 2), (2, 1, 2, 2)]
    steps = iter(installment)
    for i, (term, rate) in enumerate(zip(DEPOSIT_TERMS, fixed, strict=True), start=1):
        attrs = {"fixed_rate": rate}
        if term in INSTALLMENT_TERMS:
            attrs["installment_rate"] = next(steps)
        row = entity("deposit", f"{term}存款", f"{term} deposit", attrs)
        rows.append([term, row.value("fixed_rate", "zh"),
                     row.value("installment_rate", "zh") if "installment_rate" in attrs else "—"])
        facts += [(row, key, i) for key in attrs]
    tables.append(TableData("rates_pdf", "海港银行人民币存款挂牌利率表",
                            [["存期", "年利率（%）", "年利率（%）"], ["存期", "整存整取", "零存整取"]], rows, merges, facts))
    return tables
