"""Phrasings of the sample domain's task items, in Chinese and English, split into train and eval.

Every question kind has several templates per language; the ``eval`` lists hold templates that the
``train`` lists never use. ``{slot}`` marks a value filled in by :class:`domainlm.sample.tasks.Filler`.
Also here: the intent taxonomy, the JSON-schema tools and the JSON extraction schema.
"""

from __future__ import annotations

from domainlm.sample.world import PRODUCT_ATTRS

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
