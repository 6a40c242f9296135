"""Task files of the sample domain: knowledge QA, refusals, intents, entities, tool calls, JSON extraction
and multiple choice, split into train and eval.

Every question kind has several phrasing templates per language; the eval split only uses templates
that the train split never uses, so a model is measured on phrasings it has not seen.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from domainlm.sample import pii
from domainlm.sample.world import (
    CITIES,
    MISSING_ATTRS,
    PRODUCT_ATTRS,
    Entity,
    World,
    distractor_values,
)

SPLITS = ("train", "eval")

TAXONOMY = {
    "knowledge": {c: ["knowledge_qa", "mcq"] for c in ("deposit", "loan", "card", "wealth", "insurance", "service", "branch")},
    "hallucination": {"nonexistent_product": ["unanswerable"], "nonexistent_attribute": ["unanswerable"]},
    "understanding": {"intent_recognition": ["intent"], "entity_extraction": ["ner"]},
    "agent": {"tool_calling": ["tool_call"], "structured_output": ["json_extract"]},
}

# ------------------------------------------------------------------------------------------ phrasings

QA = {
    "zh": {"train": ["{name}的{label}是{q}？", "请问{name}的{label}是{q}？", "我想了解{name}，它的{label}是{q}？",
                     "{name}{label}{q}？"],
           "eval": ["麻烦告诉我{name}的{label}。", "关于{name}，{label}具体是{q}？"]},
    "en": {"train": ["What is the {label} of {name}?", "Could you tell me the {label} for {name}?",
                     "I'm looking at {name}. What is its {label}?", "{name}: what is the {label}?"],
           "eval": ["Please tell me the {label} of {name}.", "For {name}, what {label} applies?"]},
}
MCQ = {
    "zh": {"train": ["{name}的{label}是（ ）。", "以下哪项是{name}的{label}？"],
           "eval": ["关于{name}，其{label}应为下列哪一项？"]},
    "en": {"train": ["Which of the following is the {label} of {name}?", "The {label} of {name} is:"],
           "eval": ["Select the correct {label} for {name}."]},
}

# Intents: name -> (Chinese label, English label, {lang: {split: templates}}). Slots in braces.
INTENTS: dict[str, tuple[str, str, dict]] = {
    "check_balance": ("查询余额", "check balance", {
        "zh": {"train": ["我的{acct}里还有多少钱？", "帮我查一下尾号{last4}的{acct}余额", "想看看账户余额"],
               "eval": ["尾号{last4}那张卡现在余额多少"]},
        "en": {"train": ["How much money is left in my {acct}?", "Check the balance on card ending {last4}"],
               "eval": ["What's my current balance on the {acct}?"]}}),
    "transfer": ("转账汇款", "transfer money", {
        "zh": {"train": ["给{person}转{amount}", "我要转账{amount}到{person}的账户", "怎么给别人汇款{amount}"],
               "eval": ["帮我把{amount}打给{person}"]},
        "en": {"train": ["Send {amount} to {person}", "I want to transfer {amount} to {person}'s account"],
               "eval": ["Please wire {amount} over to {person}"]}}),
    "report_lost_card": ("挂失卡片", "report lost card", {
        "zh": {"train": ["我的{cardtype}丢了，尾号{last4}", "卡被偷了要挂失", "尾号{last4}的卡找不到了，怎么挂失"],
               "eval": ["钱包丢了，里面有张{cardtype}，快帮我冻结"]},
        "en": {"train": ["I lost my {cardtype} ending {last4}", "My card was stolen, please block it"],
               "eval": ["Can't find my {cardtype} anywhere, need to report it missing"]}}),
    "query_product_rate": ("查询产品利率", "ask product rate", {
        "zh": {"train": ["{product}利率多少", "现在{product}的收益怎么样", "{product}年化是多少"],
               "eval": ["想问问{product}能给多少利息"]},
        "en": {"train": ["What rate does {product} pay?", "How much interest on {product}?"],
               "eval": ["Tell me the current return of {product}"]}}),
    "apply_loan": ("申请贷款", "apply for loan", {
        "zh": {"train": ["我想贷款{amount}", "申请{product}需要什么材料", "能借{amount}吗，分{term}还"],
               "eval": ["手头紧，想办一笔{amount}的贷款"]},
        "en": {"train": ["I'd like to borrow {amount}", "How do I apply for {product}?"],
               "eval": ["Need a loan of {amount} over {term}"]}}),
    "apply_credit_card": ("申请信用卡", "apply for credit card", {
        "zh": {"train": ["我想办一张{product}", "怎么申请信用卡", "信用卡申请要什么条件"],
               "eval": ["给我推荐一张信用卡，我想开通"]},
        "en": {"train": ["I want to apply for {product}", "How can I get a credit card?"],
               "eval": ["Sign me up for a new credit card please"]}}),
    "activate_card": ("激活卡片", "activate card", {
        "zh": {"train": ["新卡收到了怎么激活", "尾号{last4}的卡要开卡", "帮我激活{cardtype}"],
               "eval": ["刚拿到的卡还不能用，需要先开通吗"]},
        "en": {"train": ["How do I activate my new card?", "Activate the {cardtype} ending {last4}"],
               "eval": ["Just received the card, how do I switch it on?"]}}),
    "reset_password": ("重置密码", "reset password", {
        "zh": {"train": ["密码忘了怎么办", "我要重置交易密码", "手机银行登录密码输错被锁了"],
               "eval": ["想改一下取款密码"]},
        "en": {"train": ["I forgot my PIN", "Reset my online banking password"],
               "eval": ["Locked out after too many wrong passwords"]}}),
    "query_transactions": ("查询交易明细", "view transactions", {
        "zh": {"train": ["查一下最近{days}的交易记录", "尾号{last4}的卡最近有哪些消费", "导出{days}内的流水"],
               "eval": ["我想看看近{days}的收支明细"]},
        "en": {"train": ["Show my transactions for the last {days}", "What did I spend on card {last4}?"],
               "eval": ["List the account activity of the past {days}"]}}),
    "repay_credit_card": ("信用卡还款", "repay credit card", {
        "zh": {"train": ["信用卡还款{amount}", "怎么还信用卡", "帮我把尾号{last4}的信用卡账单还了"],
               "eval": ["这个月的卡账单要还{amount}，怎么操作"]},
        "en": {"train": ["Pay {amount} to my credit card", "How do I repay my credit card bill?"],
               "eval": ["Settle the card statement, {amount}"]}}),
    "raise_credit_limit": ("提升信用额度", "raise credit limit", {
        "zh": {"train": ["信用卡额度太低了，想提额", "能把额度调到{amount}吗", "申请临时额度"],
               "eval": ["可以给我的卡加点额度吗"]},
        "en": {"train": ["Increase my credit limit to {amount}", "Can I get a higher credit limit?"],
               "eval": ["My card limit is too low, please raise it"]}}),
    "buy_wealth_product": ("购买理财", "buy wealth product", {
        "zh": {"train": ["我要买{amount}的{product}", "推荐一款稳健的理财", "{product}怎么购买"],
               "eval": ["有闲钱{amount}，想投点理财"]},
        "en": {"train": ["Buy {amount} of {product}", "Recommend a low-risk investment"],
               "eval": ["I have {amount} spare and want to invest it"]}}),
    "redeem_fund": ("赎回基金", "redeem fund", {
        "zh": {"train": ["赎回{product}", "我持有的基金想卖掉{amount}", "基金赎回多久到账"],
               "eval": ["把理财里的{amount}取出来"]},
        "en": {"train": ["Redeem my {product}", "Sell {amount} of my fund holdings"],
               "eval": ["Cash out {amount} from my investments"]}}),
    "insurance_claim": ("保险理赔", "insurance claim", {
        "zh": {"train": ["住院了，{product}怎么理赔", "申请保险报销", "理赔需要提交哪些材料"],
               "eval": ["出了意外，保险能赔吗"]},
        "en": {"train": ["How do I file a claim on {product}?", "I need to make an insurance claim"],
               "eval": ["Was in hospital, can my policy pay out?"]}}),
    "buy_insurance": ("投保", "buy insurance", {
        "zh": {"train": ["我想给家人买{product}", "有什么保险推荐", "投保{product}要体检吗"],
               "eval": ["想配置一份保障，怎么买"]},
        "en": {"train": ["I want to buy {product}", "Which insurance should I get?"],
               "eval": ["Looking to take out a policy for my family"]}}),
    "open_account": ("开户", "open account", {
        "zh": {"train": ["怎么开一张储蓄卡", "我想在{city}开户", "办借记卡要带什么"],
               "eval": ["新开一个银行账户需要什么手续"]},
        "en": {"train": ["How do I open an account?", "I want to open a savings account in {city}"],
               "eval": ["What do I need for a new bank account?"]}}),
    "close_account": ("销户", "close account", {
        "zh": {"train": ["我要销户", "尾号{last4}的卡不用了，注销掉", "怎么注销银行卡"],
               "eval": ["这个账户我不想要了，能关掉吗"]},
        "en": {"train": ["Close my account", "Cancel the card ending {last4}"],
               "eval": ["I no longer need this account, shut it down"]}}),
    "update_phone": ("变更手机号", "update phone number", {
        "zh": {"train": ["预留手机号换成{phone}", "我换号码了，怎么改绑定手机", "修改银行预留手机号"],
               "eval": ["手机号不用了，新号是{phone}"]},
        "en": {"train": ["Change my phone number to {phone}", "How do I update my mobile number?"],
               "eval": ["New number {phone}, please update my profile"]}}),
    "branch_hours": ("网点营业时间", "branch opening hours", {
        "zh": {"train": ["{branch}几点开门", "{city}的网点周末营业吗", "附近网点营业时间"],
               "eval": ["{branch}今天几点下班"]},
        "en": {"train": ["When does {branch} open?", "Are branches in {city} open on weekends?"],
               "eval": ["What time does {branch} close today?"]}}),
    "complaint": ("投诉", "complaint", {
        "zh": {"train": ["我要投诉，排队两小时没人管", "客户经理态度太差了", "乱扣费，我要投诉"],
               "eval": ["服务太糟糕了，必须给个说法"]},
        "en": {"train": ["I want to file a complaint", "The staff at the branch were rude"],
               "eval": ["Terrible service, I demand an explanation"]}}),
    "human_agent": ("转人工", "talk to an agent", {
        "zh": {"train": ["转人工", "我要找人工客服", "机器人听不懂，换真人"],
               "eval": ["能不能让客服专员跟我说"]},
        "en": {"train": ["Let me talk to a human", "Transfer me to an agent"],
               "eval": ["Get me a real person please"]}}),
    "report_fraud": ("举报诈骗", "report fraud", {
        "zh": {"train": ["有人冒充银行让我转账", "收到诈骗短信说我的卡被冻结", "刚被骗了{amount}怎么办"],
               "eval": ["接到假客服电话，让我提供验证码"]},
        "en": {"train": ["Someone pretending to be the bank asked me to transfer money", "I was scammed out of {amount}"],
               "eval": ["Got a fake text claiming my account is frozen"]}}),
    "query_fee": ("查询收费", "ask about fees", {
        "zh": {"train": ["跨行转账收手续费吗", "{product}有年费吗", "补卡要多少钱"],
               "eval": ["你们有哪些隐藏收费"]},
        "en": {"train": ["Are there fees for transfers to other banks?", "Does {product} have an annual fee?"],
               "eval": ["What charges will I pay on this account?"]}}),
    "query_bill": ("查询账单", "check statement", {
        "zh": {"train": ["这个月信用卡账单多少", "尾号{last4}的卡账单日是哪天", "查一下上期账单"],
               "eval": ["本期应还款金额是多少"]},
        "en": {"train": ["How much is my card statement this month?", "When is the statement date for card {last4}?"],
               "eval": ["Show me the amount due on my latest bill"]}}),
}
# Which products a {product} slot may name for an intent, so "how do I buy <insurance>" is never labelled
# buy_wealth_product.
INTENT_PRODUCTS = {
    "query_product_rate": ("deposit", "loan", "wealth"), "apply_loan": ("loan",), "apply_credit_card": ("card",),
    "buy_wealth_product": ("wealth",), "redeem_fund": ("wealth",), "insurance_claim": ("insurance",),
    "buy_insurance": ("insurance",), "query_fee": ("card",),
}
PREFIX = {"zh": ["", "", "你好，", "请问", "麻烦问下，", "客服，"], "en": ["", "", "Hi, ", "Hello, ", "Excuse me, "]}

NER_TEMPLATES = {
    "zh": {"train": ["我叫{person}，手机号{phone}，想在{branch}办理{product}。", "{person}于{date}向卡号{card}转入{amount}。",
                     "客户{person}咨询{product}，联系电话{phone}。", "请在{date}前到{branch}领取{product}的合同。",
                     "{person}在{city}申请了{amount}的{product}。"],
           "eval": ["{date}，{person}通过{branch}购买了{amount}的{product}。", "联系人：{person}，电话：{phone}，卡号：{card}。",
                    "{city}客户{person}反映{product}扣款{amount}有误。"]},
    "en": {"train": ["My name is {person}, phone {phone}; I want {product} at {branch}.",
                     "{person} sent {amount} to card {card} on {date}.", "{person} in {city} applied for {product}."],
           "eval": ["On {date}, {person} bought {amount} of {product} at {branch}.",
                    "Contact: {person}, phone {phone}, card {card}."]},
}
ENTITY_TYPES = {"person": "PERSON", "phone": "PHONE", "card": "CARD_NUMBER", "amount": "AMOUNT", "product": "PRODUCT",
                "branch": "BRANCH", "date": "DATE", "city": "LOCATION"}

TOOLS = [
    {"name": "check_balance", "description": "Look up the balance of one of the customer's accounts.",
     "parameters": {"type": "object", "properties": {
         "account_type": {"type": "string", "enum": ["savings", "credit_card"]},
         "card_last4": {"type": "string", "pattern": "^[0-9]{4}$", "description": "Last four digits of the card."}},
         "required": ["account_type"]}},
    {"name": "transfer", "description": "Transfer money to a payee's bank card.",
     "parameters": {"type": "object", "properties": {
         "payee_name": {"type": "string"}, "payee_card": {"type": "string", "description": "Full card number."},
         "amount": {"type": "number", "description": "Amount in CNY."}},
         "required": ["payee_name", "payee_card", "amount"]}},
    {"name": "report_lost_card", "description": "Block a lost or stolen card.",
     "parameters": {"type": "object", "properties": {
         "card_last4": {"type": "string", "pattern": "^[0-9]{4}$"},
         "card_type": {"type": "string", "enum": ["debit", "credit"]}},
         "required": ["card_last4", "card_type"]}},
    {"name": "query_product", "description": "Look up an attribute of a Harbor Bank product.",
     "parameters": {"type": "object", "properties": {
         "product_name": {"type": "string"},
         "attribute": {"type": "string", "enum": sorted({s.key for specs in PRODUCT_ATTRS.values() for s in specs})}},
         "required": ["product_name", "attribute"]}},
    {"name": "find_branch", "description": "Find Harbor Bank branches in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "repay_credit_card", "description": "Repay a credit card bill from the customer's savings account.",
     "parameters": {"type": "object", "properties": {
         "amount": {"type": "number"}, "card_last4": {"type": "string", "pattern": "^[0-9]{4}$"}},
         "required": ["amount", "card_last4"]}},
    {"name": "apply_loan", "description": "Start a loan application.",
     "parameters": {"type": "object", "properties": {
         "product_name": {"type": "string"}, "amount": {"type": "number"}, "term_months": {"type": "integer"}},
         "required": ["product_name", "amount", "term_months"]}},
    {"name": "list_transactions", "description": "List recent transactions of a card.",
     "parameters": {"type": "object", "properties": {
         "card_last4": {"type": "string", "pattern": "^[0-9]{4}$"}, "days": {"type": "integer", "minimum": 1}},
         "required": ["card_last4", "days"]}},
]
# tool name -> {lang: {split: templates}}; the arguments are read back from the filled slots.
TOOL_TEMPLATES = {
    "check_balance": {"zh": {"train": ["查一下尾号{last4}的{acct}余额", "我的{acct}还剩多少钱？"], "eval": ["{acct}现在有多少余额"]},
                      "en": {"train": ["What's the balance of my {acct} ending {last4}?"], "eval": ["How much is in my {acct}?"]}},
    "transfer": {"zh": {"train": ["给{person}转{amount}，卡号{card}", "往{card}打{amount}，收款人{person}"],
                        "eval": ["请向{person}的账户{card}汇款{amount}"]},
                 "en": {"train": ["Send {amount} to {person}, card {card}"], "eval": ["Wire {amount} to {person} at {card}"]}},
    "report_lost_card": {"zh": {"train": ["尾号{last4}的{cardtype}丢了，帮我挂失", "挂失{cardtype}，尾号{last4}"],
                                "eval": ["{cardtype}找不到了，末四位{last4}，马上冻结"]},
                         "en": {"train": ["I lost my {cardtype} ending {last4}"], "eval": ["Block my {cardtype}, last digits {last4}"]}},
    "query_product": {"zh": {"train": ["帮我查一下{product}的{attr}", "{product}的{attr}是多少"],
                             "eval": ["想知道{product}{attr}的具体数值"]},
                      "en": {"train": ["Look up the {attr} of {product}"], "eval": ["I need {product}'s {attr}"]}},
    "find_branch": {"zh": {"train": ["{city}有哪些网点", "在{city}哪里能找到海港银行"], "eval": ["我到{city}了，最近的营业厅在哪"]},
                    "en": {"train": ["Find branches in {city}"], "eval": ["Where can I bank in {city}?"]}},
    "repay_credit_card": {"zh": {"train": ["还信用卡{amount}，尾号{last4}", "从储蓄卡给尾号{last4}的信用卡还款{amount}"],
                                 "eval": ["帮尾号{last4}的卡还上{amount}"]},
                          "en": {"train": ["Pay {amount} to my credit card ending {last4}"],
                                 "eval": ["Repay {amount} on card {last4}"]}},
    "apply_loan": {"zh": {"train": ["申请{product}，借{amount}，分{term}还", "我要办{product}{amount}，期限{term}"],
                          "eval": ["用{product}贷{amount}，{term}还清"]},
                   "en": {"train": ["Apply for {product}: {amount} over {term}"], "eval": ["I'd like {amount} from {product} for {term}"]}},
    "list_transactions": {"zh": {"train": ["列出尾号{last4}最近{days}的交易", "查尾号{last4}卡近{days}流水"],
                                 "eval": ["{last4}这张卡过去{days}花了哪些钱"]},
                          "en": {"train": ["Show transactions of card {last4} for the last {days}"],
                                 "eval": ["What went through card {last4} in the past {days}?"]}},
}

CUSTOMER_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "phone": {"type": "string"}, "card_last4": {"type": ["string", "null"]},
        "request": {"type": "string", "enum": ["report_lost_card", "raise_credit_limit", "repay_credit_card", "apply_loan",
                                               "update_phone"]},
        "amount": {"type": ["number", "null"]},
    },
    "required": ["name", "phone", "card_last4", "request", "amount"],
}
# (request, template) per language and split; a null field is simply not mentioned in the message.
CUSTOMER_MESSAGES = {
    "zh": {"train": [("report_lost_card", "您好，我是{person}，电话{phone}。我的卡尾号{last4}昨天丢了，麻烦处理。"),
                     ("raise_credit_limit", "我是{person}，手机{phone}，信用卡尾号{last4}，想把额度提高到{amount}。"),
                     ("apply_loan", "客户{person}（{phone}）咨询贷款，需要借{amount}。"),
                     ("update_phone", "{person}来电，要求把预留手机号改为{phone}。")],
           "eval": [("repay_credit_card", "留言人：{person}，联系电话{phone}，要给尾号{last4}的信用卡还款{amount}。"),
                    ("report_lost_card", "{person}反映尾号{last4}的银行卡被盗，回拨号码{phone}。")]},
    "en": {"train": [("report_lost_card", "Hi, this is {person} ({phone}). I lost my card ending {last4}."),
                     ("apply_loan", "{person}, phone {phone}, wants to borrow {amount}.")],
           "eval": [("raise_credit_limit", "Message from {person} at {phone}: raise the limit on card {last4} to {amount}.")]},
}
JSON_INSTRUCTIONS = {
    "zh": {"train": ["请从下面的文本中抽取信息，按给定的JSON Schema输出JSON。", "阅读以下内容，输出符合Schema的JSON对象。"],
           "eval": ["根据给定的JSON Schema，把文本中的关键信息整理成JSON。"]},
    "en": {"train": ["Extract the information in the text below as JSON matching the schema."],
           "eval": ["Fill in the given JSON schema from the passage and return only JSON."]},
}

# ------------------------------------------------------------------------------------------ slot filling

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林"
_GIVEN = ["芳", "伟", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娜", "涛", "晓明", "海燕", "建国", "思远", "雨桐"]
_EN_NAMES = ["Li Wei", "Zhang Min", "Amy Chen", "Tom Wu", "Wang Fang", "David Liu", "Sarah Lin", "Kevin Zhou", "Lucy Ma"]
_AMOUNTS = [500, 800, 1000, 1500, 2000, 3000, 5000, 8000, 10000, 20000, 30000, 50000, 80000, 100000, 200000]
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")


def _amount_text(n: int, lang: str) -> str:
    if lang == "en":
        return f"CNY {n:,}"
    return f"{n // 10000}万元" if n >= 10000 and n % 10000 == 0 else f"{n}元"


class Filler:
    """Fills ``{slot}`` templates, remembering each slot's surface text, offsets and structured value."""

    def __init__(self, world: World, rng: random.Random):
        self.world, self.rng = world, rng

    def value(self, slot: str, lang: str, context: dict) -> tuple[str, object]:
        rng, zh = self.rng, lang == "zh"
        if slot == "person":
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) if zh else rng.choice(_EN_NAMES)
            return name, name
        if slot == "phone":
            v = pii.mobile(rng)
            return v, v
        if slot == "card":
            v = pii.bank_card(rng)
            return v, v
        if slot == "last4":
            v = f"{rng.randint(0, 9999):04d}"
            return v, v
        if slot == "amount":
            n = rng.choice(_AMOUNTS)
            return _amount_text(n, lang), n
        if slot == "product":
            entity = context.pop("entity", None) or rng.choice(context.get("products") or self.world.products)
            return entity.name(lang), entity.name(lang)
        if slot == "attr":
            spec = rng.choice(list(context["attr_of"].specs.values()))
            return spec.label(lang), spec.key
        if slot == "branch":
            b = rng.choice(self.world.branches)
            return b.name(lang), b.name(lang)
        if slot == "city":
            c = rng.choice(CITIES)
            return (c[0] if zh else c[2]), (c[0] if zh else c[2])
        if slot == "date":
            m, d = rng.randint(1, 12), rng.randint(1, 28)
            text = f"{m}月{d}日" if zh else f"{_MONTHS_EN[m - 1]} {d}"
            return text, text
        if slot == "term":
            n = rng.choice([6, 12, 24, 36, 60])
            return (f"{n}个月" if zh else f"{n} months"), n
        if slot == "days":
            n = rng.choice([7, 15, 30, 90])
            return (f"{n}天" if zh else f"{n} days"), n
        if slot == "acct":
            key = rng.choice(["savings", "credit_card"])
            return {"savings": ("储蓄卡", "savings account"), "credit_card": ("信用卡", "credit card")}[key][0 if zh else 1], key
        if slot == "cardtype":
            key = rng.choice(["debit", "credit"])
            return {"debit": ("借记卡", "debit card"), "credit": ("信用卡", "credit card")}[key][0 if zh else 1], key
        raise KeyError(f"unknown slot {slot}")

    def fill(self, template: str, lang: str, products: list[Entity] | None = None) -> tuple[str, list[dict]]:
        """The filled text and its slots: [{"slot","text","start","end","value"}] (offsets into the text)."""
        out, slots, pos, context = [], [], 0, {"products": products}
        if "{attr}" in template:  # the attribute belongs to the product, wherever the two slots stand
            context["entity"] = context["attr_of"] = self.rng.choice(products or self.world.products)
        for part in re.split(r"(\{[a-z0-9]+\})", template):
            if part.startswith("{") and part.endswith("}"):
                text, value = self.value(part[1:-1], lang, context)
                slots.append({"slot": part[1:-1], "text": text, "start": pos, "end": pos + len(text), "value": value})
            else:
                text = part
            out.append(text)
            pos += len(text)
        return "".join(out), slots


# ------------------------------------------------------------------------------------------ generators


def _unique(make: Callable[[], dict | None], n: int, seen: set[str], key: Callable[[dict], str]) -> list[dict]:
    """Call ``make`` until n items with distinct keys exist (or it clearly cannot make more)."""
    items: list[dict] = []
    attempts = 0
    while len(items) < n and attempts < 40 * n + 100:
        attempts += 1
        item = make()
        if item is None or key(item) in seen:
            continue
        seen.add(key(item))
        items.append(item)
    return items


def _rounds(rng: random.Random, facts: list[dict], templates: dict[str, list[str]]) -> list[tuple[dict, str]]:
    """Every fact with one template, then every fact with another, ...: covers all facts before repeating.

    ``templates`` maps a language to its templates (the same number per language).
    """
    out = []
    order = {f["id"]: rng.sample(templates[f["lang"]], len(templates[f["lang"]])) for f in facts}
    for r in range(max(len(t) for t in templates.values())):
        batch = [(f, order[f["id"]][r]) for f in facts if r < len(order[f["id"]])]
        rng.shuffle(batch)
        out.extend(batch)
    return out


def knowledge_qa(facts: list[dict], rng: random.Random, split: str, n: int) -> list[dict]:
    items, seen = [], set()
    for fact, template in _rounds(rng, facts, {lang: QA[lang][split] for lang in QA}):
        if len(items) >= n:
            break
        question = template.format(name=fact["product"], label=fact["attribute_label"], q=fact["zh_q"])
        if question in seen:
            continue
        seen.add(question)
        items.append({"task": "knowledge_qa", "category": "knowledge", "subcategory": fact["category"], "type": "qa",
                      "question": question, "choices": None, "answer": fact["value"], "doc_id": fact["doc_id"],
                      "evidence": fact["sentence"], "fact_id": fact["id"], "lang": fact["lang"]})
    return items


def mcq(facts: list[dict], specs: dict, rng: random.Random, split: str, n: int) -> list[dict]:
    usable = [f for f in facts if len({specs[f["id"]].format(r, f["lang"]) for r in specs[f["id"]].pool}) >= 4]
    items, seen = [], set()
    for fact, template in _rounds(rng, usable, {lang: MCQ[lang][split] for lang in MCQ}):
        if len(items) >= n:
            break
        question = template.format(name=fact["product"], label=fact["attribute_label"])
        if question in seen:
            continue
        seen.add(question)
        spec = specs[fact["id"]]
        choices = distractor_values(spec, fact["raw"], fact["lang"], rng) + [fact["value"]]
        rng.shuffle(choices)
        items.append({"task": "mcq", "category": "knowledge", "subcategory": fact["category"], "type": "mcq",
                      "question": question, "choices": choices, "answer": "ABCD"[choices.index(fact["value"])],
                      "doc_id": fact["doc_id"], "evidence": fact["sentence"], "fact_id": fact["id"], "lang": fact["lang"]})
    return items


def unanswerable(world: World, doc_texts: list[str], rng: random.Random, split: str, n: int) -> list[dict]:
    corpus = "\n".join(doc_texts)
    # Train and eval ask about different made-up products and different missing attributes, so refusing in
    # eval cannot be learned by memorising which names were refused in train.
    part = SPLITS.index(split)
    fake = [(cat, zh, en) for cat, zh, en in world.unused_names[part::2] if zh not in corpus and en not in corpus]
    missing = {cat: [a for a in attrs[part::2] if a[0] not in corpus and a[1] not in corpus]
               for cat, attrs in MISSING_ATTRS.items()}
    products = [p for p in world.products if missing[p.category]]

    def make() -> dict | None:
        if rng.random() < 0.5 and fake:
            cat, zh, en = rng.choice(fake)
            lang = rng.choice(["zh", "zh", "en"])
            spec = rng.choice(PRODUCT_ATTRS[cat])
            name, label, q, what = (zh if lang == "zh" else en), spec.label(lang), spec.zh_q, "product"
        elif products:
            p = rng.choice(products)
            lang = p.lang
            attr = rng.choice(missing[p.category])
            name, label, q, what, cat = p.name(lang), attr[0 if lang == "zh" else 1], "多少", "attribute", p.category
        else:
            return None
        question = rng.choice(QA[lang][split]).format(name=name, label=label, q=q)
        return {"task": "unanswerable", "category": "hallucination", "subcategory": f"nonexistent_{what}",
                "type": "refusal", "question": question, "choices": None, "answer": "", "product": name,
                "attribute": label, "missing": what, "product_category": cat, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def intent(world: World, filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    labels = list(INTENTS)

    def make() -> dict:
        name = rng.choice(labels)
        lang = rng.choice(["zh", "zh", "en"])
        products = [p for p in world.products if p.category in INTENT_PRODUCTS.get(name, ())] or None
        template = rng.choice(INTENTS[name][2][lang][split])
        prefix = rng.choice(PREFIX[lang])
        if prefix and lang == "en" and template[0] != "{" and template.split()[0] not in ("I", "I'd", "I'm"):
            template = template[0].lower() + template[1:]  # "Hi, how do I ..." (names and "I" keep their capital)
        text, _ = filler.fill(template, lang, products=products)
        return {"task": "intent", "category": "understanding", "subcategory": "intent_recognition", "type": "intent",
                "question": prefix + text, "choices": labels, "answer": name, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def ner(world: World, filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    def make() -> dict:
        lang = rng.choice(["zh", "zh", "en"])
        text, slots = filler.fill(rng.choice(NER_TEMPLATES[lang][split]), lang)
        entities = [{"type": ENTITY_TYPES[s["slot"]], "text": s["text"], "start": s["start"], "end": s["end"]}
                    for s in slots]
        return {"task": "ner", "category": "understanding", "subcategory": "entity_extraction", "type": "ner",
                "question": text, "choices": sorted(set(ENTITY_TYPES.values())), "answer": entities,
                "entities": entities, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def _tool_args(tool: str, slots: list[dict]) -> dict:
    v = {s["slot"]: s["value"] for s in slots}
    mapping = {
        "check_balance": {"account_type": "acct", "card_last4": "last4"},
        "transfer": {"payee_name": "person", "payee_card": "card", "amount": "amount"},
        "report_lost_card": {"card_last4": "last4", "card_type": "cardtype"},
        "query_product": {"product_name": "product", "attribute": "attr"},
        "find_branch": {"city": "city"},
        "repay_credit_card": {"amount": "amount", "card_last4": "last4"},
        "apply_loan": {"product_name": "product", "amount": "amount", "term_months": "term"},
        "list_transactions": {"card_last4": "last4", "days": "days"},
    }[tool]
    return {arg: v[slot] for arg, slot in mapping.items() if slot in v}


def tool_call(world: World, filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    tools = [{"type": "function", "function": t} for t in TOOLS]
    loans = [p for p in world.products if p.category == "loan"] or None

    def make() -> dict:
        name = rng.choice(list(TOOL_TEMPLATES))
        lang = rng.choice(["zh", "zh", "en"])
        text, slots = filler.fill(rng.choice(TOOL_TEMPLATES[name][lang][split]), lang,
                                  products=loans if name == "apply_loan" else None)
        return {"task": "tool_call", "category": "agent", "subcategory": "tool_calling", "type": "tool_call",
                "question": text, "choices": None, "tools": tools,
                "answer": {"name": name, "arguments": _tool_args(name, slots)}, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def json_extract(world: World, facts: list[dict], filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    by_doc: dict[str, list[dict]] = {}
    for f in facts:
        if f["kind"] == "product":
            by_doc.setdefault(f["doc_id"], []).append(f)
    sheets = list(by_doc.values())

    def make() -> dict:
        lang = rng.choice(["zh", "zh", "en"])
        if rng.random() < 0.5:  # a customer message -> a service ticket
            request, template = rng.choice(CUSTOMER_MESSAGES[lang][split])
            context, slots = filler.fill(template, lang)
            v = {s["slot"]: s["value"] for s in slots}
            answer = {"name": v["person"], "phone": v["phone"], "card_last4": v.get("last4"), "request": request,
                      "amount": v.get("amount")}
            schema, sub = CUSTOMER_SCHEMA, "customer_ticket"
        else:  # a product description -> the product's attributes
            sheet = [f for f in rng.choice(sheets)]
            lang = sheet[0]["lang"]
            rng.shuffle(sheet)
            context = ("" if lang == "zh" else " ").join(f["sentence"] for f in sheet)
            props = {"product_name": {"type": "string"}}
            props.update({f["attribute"]: {"type": "string", "description": f["attribute_label"]} for f in sheet})
            schema = {"type": "object", "properties": props, "required": list(props)}
            answer = {"product_name": sheet[0]["product"], **{f["attribute"]: f["value"] for f in sheet}}
            sub = "product_sheet"
        return {"task": "json_extract", "category": "agent", "subcategory": "structured_output", "type": "json",
                "question": rng.choice(JSON_INSTRUCTIONS[lang][split]), "context": context, "schema": schema,
                "choices": None, "answer": answer, "source": sub, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"] + "\n" + it["context"])


def build_tasks(world: World, facts: list[dict], specs: dict, doc_texts: list[str], rng: random.Random,
                counts: dict[str, dict[str, int]]) -> dict[str, dict[str, list[dict]]]:
    """{split: {task: items}} with ids ``sample/<task>/<split>/<n>``."""
    filler = Filler(world, rng)
    out: dict[str, dict[str, list[dict]]] = {}
    for split in SPLITS:
        c = counts[split]
        tasks = {
            "knowledge_qa": knowledge_qa(facts, rng, split, c["knowledge_qa"]),
            "unanswerable": unanswerable(world, doc_texts, rng, split, c["default"]),
            "intent": intent(world, filler, rng, split, c["default"]),
            "ner": ner(world, filler, rng, split, c["default"]),
            "tool_call": tool_call(world, filler, rng, split, c["default"]),
            "json_extract": json_extract(world, facts, filler, rng, split, c["default"]),
            "mcq": mcq(facts, specs, rng, split, c["default"]),
        }
        for task, items in tasks.items():
            for i, item in enumerate(items, start=1):
                ordered = {"id": f"sample/{task}/{split}/{i:04d}"}
                ordered.update(item)
                items[i - 1] = ordered
        out[split] = tasks
    return out


def intents_table() -> list[dict]:
    return [{"name": k, "zh": v[0], "en": v[1]} for k, v in INTENTS.items()]


def tools_table() -> list[dict]:
    return [{"type": "function", "function": t} for t in TOOLS]
