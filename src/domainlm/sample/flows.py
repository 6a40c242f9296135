"""Mobile-banking flows of the sample domain: intent → slots → confirm → tool, as agent items and sft rows.

A flow is one customer conversation with Harbor Bank's app assistant: check a balance, transfer money,
freeze a lost card, pay a bill. The customer states an intent, often without every slot the tool needs;
the assistant asks for each missing slot, one at a time, asks the customer to confirm before anything
that moves money or blocks a card, then calls the tool and reports what it answered. Some customers
decline at the confirmation (cancellation flows): the assistant then calls nothing that changes anything.

Each flow is written twice:

* an eval item (type ``agent``, :mod:`domainlm.evals.agent`): the system prompt and the customer's opening
  only, the tools, a simulated environment holding the customer's accounts and bills
  (:mod:`domainlm.evals.agent_env`), and a simulated customer (``user``) who knows every slot, answers the
  slot the assistant asks for, and confirms (or declines) a confirmation that states every value. The words
  that show which slot a question asks for (``SLOT_CUES``) and what a confirmation is (``CONFIRM_CUES``)
  are this sample's data, in the item; the mechanism knows nothing of banks. ``expected_state`` is written
  here from the flow's own arithmetic, not by running the environment, so a test that runs
  ``expected_calls`` in the environment checks the two against each other;
* an sft row (``{"messages", "tools"}``, :mod:`domainlm.train.data`): the whole conversation, asks,
  answers, confirmation, tool calls and tool results included, the results being what the environment
  answers. Some training transfers ask for more than the balance: the tool's error comes back, and the
  assistant says so.

Eval flows use opening phrasings, confirmations and customers that training never uses (as
:mod:`domainlm.sample.tasks` does), so the suite measures the flow, not memorised sentences.
"""

from __future__ import annotations

import json
import random
from typing import Any

from domainlm.evals import AgentEnv
from domainlm.sample import pii
from domainlm.sample.world import World

TASK = "banking_flows"
SUITE_DIR = "suites/agent"
SFT_FILE = "sft/banking_flows.jsonl"
SUITE_YAML = (
    "# Mobile-banking flows of the sample domain: multi-step tool use against a simulated environment.\n"
    "name: agent-banking\n"
    "max_new_tokens: 256\n"
)

SYSTEM = {
    "zh": "你是海港银行手机银行助手。办理业务前先问清缺少的信息；转账、缴费、冻结卡片须经客户确认后再调用工具。",
    "en": "You are Harbor Bank's mobile banking assistant. Ask for any missing detail first; transfers, bill "
          "payments and card freezes need the customer's confirmation before you call the tool.",
}

_LAST4 = {"type": "string", "pattern": "^[0-9]{4}$"}
BILLS = {"electricity": ("电费", "electricity bill"), "water": ("水费", "water bill"), "gas": ("燃气费", "gas bill"),
         "phone": ("话费", "phone bill")}

TOOLS: list[dict] = [
    {"type": "function", "function": {
        "name": "get_balance", "description": "查询客户某张卡的余额。Look up the balance of one of the customer's cards.",
        "parameters": {"type": "object", "properties": {"card_last4": {**_LAST4, "description": "卡号后四位"}},
                       "required": ["card_last4"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "transfer", "description": "从客户的借记卡向收款人转账。Transfer money from a debit card to a payee.",
        "parameters": {"type": "object", "properties": {
            "from_last4": {**_LAST4, "description": "付款卡号后四位"},
            "payee_name": {"type": "string", "description": "收款人姓名"},
            "payee_card": {"type": "string", "pattern": "^[0-9]{16,19}$", "description": "收款人完整卡号"},
            "amount": {"type": "number", "exclusiveMinimum": 0, "description": "金额（元）"}},
            "required": ["from_last4", "payee_name", "payee_card", "amount"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "freeze_card", "description": "冻结（挂失）客户的一张卡。Freeze a lost or stolen card.",
        "parameters": {"type": "object", "properties": {"card_last4": {**_LAST4, "description": "卡号后四位"}},
                       "required": ["card_last4"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_bill", "description": "查询本期账单金额。Look up the current bill of a kind.",
        "parameters": {"type": "object", "properties": {"bill_type": {"type": "string", "enum": list(BILLS)}},
                       "required": ["bill_type"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "pay_bill", "description": "用客户的借记卡缴纳本期账单。Pay the current bill from a debit card.",
        "parameters": {"type": "object", "properties": {
            "bill_type": {"type": "string", "enum": list(BILLS)},
            "from_last4": {**_LAST4, "description": "付款卡号后四位"}},
            "required": ["bill_type", "from_last4"], "additionalProperties": False}}},
]

# The tools' effects on the customer's state (domainlm.evals.agent_env): what the bank's systems check and do.
_DEBIT_ACCOUNT = [
    {"exists": "accounts.{from_last4}", "error": "没有尾号{from_last4}的卡 (no card ending {from_last4})"},
    {"check": "=accounts.{from_last4}.type", "equals": "debit", "error": "尾号{from_last4}的卡不是借记卡，不能付款 (not a debit card)"},
    {"check": "=accounts.{from_last4}.status", "equals": "active", "error": "尾号{from_last4}的卡已冻结 (the card is frozen)"},
]
ENV_TOOLS: dict[str, dict] = {
    "get_balance": {
        "require": [{"exists": "accounts.{card_last4}", "error": "没有尾号{card_last4}的卡 (no card ending {card_last4})"}],
        "returns": {"card_last4": "{card_last4}", "balance": "=accounts.{card_last4}.balance"}},
    "transfer": {
        "require": [*_DEBIT_ACCOUNT,
                    {"check": "{amount}", "lte": "=limits.daily_transfer", "error": "超过手机银行单日转账限额 (over the daily limit)"},
                    {"check": "=accounts.{from_last4}.balance", "gte": "{amount}", "error": "余额不足 (insufficient balance)"}],
        "effects": [{"sub": "accounts.{from_last4}.balance", "value": "{amount}"},
                    {"append": "transfers", "value": {"from_last4": "{from_last4}", "payee_name": "{payee_name}",
                                                      "payee_card": "{payee_card}", "amount": "{amount}"}}],
        "returns": {"status": "success", "balance": "=accounts.{from_last4}.balance"}},
    "freeze_card": {
        "require": [{"exists": "accounts.{card_last4}", "error": "没有尾号{card_last4}的卡 (no card ending {card_last4})"},
                    {"check": "=accounts.{card_last4}.status", "not_equals": "frozen", "error": "该卡已冻结 (already frozen)"}],
        "effects": [{"set": "accounts.{card_last4}.status", "value": "frozen"}],
        "returns": {"status": "frozen", "card_last4": "{card_last4}"}},
    "get_bill": {
        "require": [{"exists": "bills.{bill_type}", "error": "没有这类账单 (no such bill)"}],
        "returns": {"bill_type": "{bill_type}", "amount": "=bills.{bill_type}.amount", "status": "=bills.{bill_type}.status"}},
    "pay_bill": {
        "require": [{"exists": "bills.{bill_type}", "error": "没有这类账单 (no such bill)"},
                    {"check": "=bills.{bill_type}.status", "equals": "unpaid", "error": "本期账单已缴清 (already paid)"},
                    *_DEBIT_ACCOUNT,
                    {"check": "=accounts.{from_last4}.balance", "gte": "=bills.{bill_type}.amount",
                     "error": "余额不足 (insufficient balance)"}],
        "effects": [{"sub": "accounts.{from_last4}.balance", "value": "=bills.{bill_type}.amount"},
                    {"set": "bills.{bill_type}.status", "value": "paid"}],
        "returns": {"status": "success", "paid": "=bills.{bill_type}.amount", "balance": "=accounts.{from_last4}.balance"}},
}

# ------------------------------------------------------------------------------------------ phrasings
# Openings per flow, language and split; the slots a template names are the slots the customer gave.
OPENINGS: dict[str, dict[str, dict[str, list[str]]]] = {
    "check_balance": {
        "zh": {"train": ["查一下尾号{card_last4}的卡还有多少钱", "我的卡里还剩多少余额？", "帮我看看{card_last4}这张卡的余额"],
               "eval": ["尾号{card_last4}的卡现在余额多少", "想知道我卡上还有多少钱"]},
        "en": {"train": ["What's the balance on my card ending {card_last4}?", "How much money do I have left?"],
               "eval": ["Check the balance of card {card_last4} for me", "Can you tell me my balance?"]}},
    "transfer": {
        "zh": {"train": ["给{payee_name}转{amount}", "帮我转{amount}给{payee_name}，卡号{payee_card}",
                         "用尾号{from_last4}的卡给{payee_name}转{amount}，对方卡号{payee_card}", "我要给{payee_name}打钱"],
               "eval": ["转{amount}到{payee_name}的卡上，卡号是{payee_card}", "麻烦给{payee_name}汇{amount}",
                        "我想转账给{payee_name}"]},
        "en": {"train": ["Send {amount} to {payee_name}", "Transfer {amount} to {payee_name}, card {payee_card}",
                         "I want to send money to {payee_name}"],
               "eval": ["Please wire {amount} to {payee_name}'s card {payee_card}", "Pay {payee_name} {amount}"]}},
    "freeze_card": {
        "zh": {"train": ["我的卡丢了，帮我冻结尾号{card_last4}的卡", "银行卡找不到了，快帮我冻结"],
               "eval": ["尾号{card_last4}的卡被偷了，请马上冻结", "卡可能丢了，先帮我挂失"]},
        "en": {"train": ["I lost my card ending {card_last4}, please freeze it", "My card is missing, block it now"],
               "eval": ["Someone stole my card {card_last4}, freeze it please", "I can't find my bank card, please freeze it"]}},
    "pay_bill": {
        "zh": {"train": ["帮我交一下{bill}", "用尾号{from_last4}的卡交{bill}", "这个月的{bill}还没交，帮我缴一下"],
               "eval": ["我要缴{bill}，从{from_last4}这张卡扣", "交下{bill}"]},
        "en": {"train": ["Pay my {bill}", "Pay the {bill} from my card ending {from_last4}"],
               "eval": ["Settle this month's {bill} with card {from_last4}", "I need to pay the {bill}"]}},
}
ASK = {
    "zh": {"card_last4": "请问是尾号多少的卡？请告诉我卡号后四位。", "from_last4": "请问用哪张卡付款？请告诉我卡号后四位。",
           "payee_card": "请提供收款人的完整银行卡号。", "amount": "请问要转多少钱？", "payee_name": "请问收款人姓名是？"},
    "en": {"card_last4": "Which card is it? Please tell me the last four digits.",
           "from_last4": "Which card should I pay from? Please give the last four digits.",
           "payee_card": "Please give the payee's full card number.", "amount": "How much would you like to send?",
           "payee_name": "What is the payee's name?"},
}
ANSWER = {  # the customer's reply when asked for one slot
    "zh": {"card_last4": ["尾号{card_last4}", "{card_last4}"], "from_last4": ["用{from_last4}这张", "尾号{from_last4}的卡"],
           "payee_card": ["卡号{payee_card}", "{payee_card}"], "amount": ["{amount}", "转{amount}"],
           "payee_name": ["{payee_name}"]},
    "en": {"card_last4": ["It ends in {card_last4}", "{card_last4}"], "from_last4": ["Use the one ending {from_last4}"],
           "payee_card": ["The card number is {payee_card}", "{payee_card}"], "amount": ["{amount}"],
           "payee_name": ["{payee_name}"]},
}
CONFIRM = {
    "zh": {"transfer": "请确认：从尾号{from_last4}的卡向{payee_name}（卡号{payee_card}）转账{amount}。确认转账吗？",
           "freeze_card": "请确认：冻结尾号{card_last4}的卡后，该卡将无法使用。确认冻结吗？",
           "pay_bill": "本期{bill}为{bill_amount}，确认用尾号{from_last4}的卡缴纳吗？"},
    "en": {"transfer": "Please confirm: send {amount} from your card ending {from_last4} to {payee_name} (card {payee_card})?",
           "freeze_card": "Please confirm: once frozen, the card ending {card_last4} cannot be used. Freeze it?",
           "pay_bill": "Please confirm: your {bill} is {bill_amount}. Pay it from the card ending {from_last4}?"},
}
YES = {"zh": {"train": ["确认", "好的，确认", "是的"], "eval": ["对，办吧", "没问题，确认"]},
       "en": {"train": ["Yes", "Confirm"], "eval": ["Yes, go ahead", "Sure, do it"]}}
NO = {"zh": {"train": ["算了，先不办了", "不用了，取消吧", "等一下，先不要"], "eval": ["不了，我再想想", "先别办了"]},
      "en": {"train": ["No, cancel it", "Not now"], "eval": ["Actually, don't do it", "No, leave it"]}}
CANCELLED = {
    "zh": {"transfer": "好的，这笔转账已取消，没有扣款。", "freeze_card": "好的，尾号{card_last4}的卡暂不冻结。如有需要随时告诉我。",
           "pay_bill": "好的，本期{bill}暂不缴纳。"},
    "en": {"transfer": "OK, the transfer is cancelled; nothing was sent.",
           "freeze_card": "OK, the card ending {card_last4} stays active. Tell me any time if you need it frozen.",
           "pay_bill": "OK, the {bill} stays unpaid for now."},
}
WRITE_FLOWS = ("transfer", "freeze_card", "pay_bill")

# The simulated customer's cues (domainlm.evals.agent_env): the words that show a question asks for a slot,
# that a reply is a question at all, and that it asks for a confirmation. Broader than the assistant's
# phrasings in ASK and CONFIRM (a test checks those are understood), so a model that asks in its own words
# is understood too. A cue that is a list needs all its words.
SLOT_CUES: dict[str, dict[str, list]] = {
    "zh": {"card_last4": ["后四位", "尾号", "哪张卡", "哪一张卡"],
           "from_last4": ["后四位", "尾号", "哪张卡", "哪一张卡", "付款卡", "扣款卡"],
           "payee_card": [["收款", "卡号"], ["对方", "卡号"], ["收款", "账号"], ["对方", "账号"], "完整卡号", "完整的卡号"],
           "amount": ["多少钱", "金额", "转多少", "多少元", "数额"],
           "payee_name": ["姓名", "名字", "转给谁", "给谁", "收款人是谁", "叫什么"],
           "bill_type": ["哪种账单", "什么账单", "哪项", "哪一项", "哪个账单", "哪类", "什么费"]},
    "en": {"card_last4": ["last four", "last 4", "which card", "card ending"],
           "from_last4": ["last four", "last 4", "which card", "card ending", "pay from"],
           "payee_card": ["full card number", ["payee", "card number"], ["recipient", "card number"], "account number"],
           "amount": ["how much", "amount"],
           "payee_name": ["name", "who"],
           "bill_type": ["which bill", "what bill", "kind of bill", "type of bill"]},
}
ASK_CUES = {"zh": ["?", "吗", "请问", "请提供", "请告诉", "请输入", "请确认", "是否"],
            "en": ["?", "please give", "please tell", "please provide", "please enter", "please confirm"]}
CONFIRM_CUES = {"zh": ["确认", "确定", "核对"], "en": ["confirm", "go ahead", "proceed", "is that right", "is this correct"]}
UNCLEAR = {"zh": "抱歉，我没听明白，您能换个说法吗？", "en": "Sorry, I don't understand. Could you say that differently?"}
DONE = {
    "zh": {"check_balance": "尾号{card_last4}的卡当前余额为{balance}。",
           "transfer": "已向{payee_name}转账{amount}，尾号{from_last4}的卡余额为{balance}。",
           "freeze_card": "尾号{card_last4}的卡已冻结。如需补办新卡，请到网点办理。",
           "pay_bill": "{bill}{bill_amount}已缴清，尾号{from_last4}的卡余额为{balance}。",
           "insufficient": "转账未成功：尾号{from_last4}的卡余额不足。请核对金额或换一张卡。"},
    "en": {"check_balance": "The balance of your card ending {card_last4} is {balance}.",
           "transfer": "Sent {amount} to {payee_name}. Your card ending {from_last4} now has {balance}.",
           "freeze_card": "The card ending {card_last4} is frozen. Visit a branch to get a replacement.",
           "pay_bill": "Your {bill} of {bill_amount} is paid. The card ending {from_last4} now has {balance}.",
           "insufficient": "The transfer did not go through: the card ending {from_last4} does not have enough money."},
}

_SURNAMES = {"train": "王李张刘陈杨赵黄周", "eval": "吴徐孙马朱胡郭何林"}
_GIVEN = ["芳", "伟", "敏", "静", "磊", "洋", "晓明", "海燕", "思远", "雨桐"]
_EN_NAMES = {"train": ["Li Wei", "Amy Chen", "Tom Wu", "Lucy Ma"], "eval": ["Zhang Min", "David Liu", "Sarah Lin", "Kevin Zhou"]}
_AMOUNTS = [200, 500, 800, 1000, 1500, 2000, 3000, 5000, 8000]


def money(x: float, lang: str) -> str:
    return f"CNY {x:,.2f}" if lang == "en" else f"{x:,.2f}元"


def _customer(rng: random.Random, world: World) -> dict:
    """A customer's state: two or three debit cards and a credit card, this month's bills, the app's limit."""
    tails = rng.sample(range(10000), 4)
    accounts = {f"{t:04d}": {"type": "debit", "balance": round(rng.uniform(3000, 60000), 2), "status": "active"}
                for t in tails[: rng.choice((2, 3))]}
    accounts[f"{tails[3]:04d}"] = {"type": "credit", "balance": round(rng.uniform(1000, 20000), 2), "status": "active"}
    bills = {b: {"amount": round(rng.uniform(30, 600), 2), "status": "unpaid"} for b in rng.sample(list(BILLS), 2)}
    limit = next(s.attrs["daily_limit"] for s in world.services if "daily_limit" in s.attrs)
    return {"accounts": accounts, "bills": bills, "transfers": [], "limits": {"daily_transfer": limit}}


def _call(name: str, arguments: dict) -> dict:
    return {"name": name, "arguments": arguments}


def _assistant_call(call: dict, n: int) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"call_{n}", "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]}


def _tool_message(env: AgentEnv, call: dict, n: int) -> tuple[dict, dict]:
    outcome = env.call(call["name"], call["arguments"])
    value = outcome["result"] if outcome["ok"] else {"error": outcome["error"]}
    return outcome, {"role": "tool", "tool_call_id": f"call_{n}", "name": call["name"],
                     "content": json.dumps(value, ensure_ascii=False)}


def _say(rng: random.Random, lang: str, slot: str, text: dict[str, str]) -> str:
    """The customer's answer when asked for ``slot`` (a bill type is said by its name)."""
    if slot == "bill_type":
        return text["bill"]
    return rng.choice(ANSWER[lang][slot]).format(**text)


def _gather(rng: random.Random, lang: str, split: str, flow: str, slots: dict[str, Any], says: dict[str, str],
            text: dict[str, str], messages: list[dict]) -> None:
    """Opening turn, then one question and one answer per slot the opening left out."""
    opening = rng.choice(OPENINGS[flow][lang][split])
    messages.append({"role": "user", "content": opening.format(**text)})
    for slot in slots:
        if "{" + slot + "}" in opening or (slot == "bill_type" and "{bill}" in opening):
            continue
        messages.append({"role": "assistant", "content": ASK[lang][slot]})
        messages.append({"role": "user", "content": says[slot]})


def _user(lang: str, slots: dict[str, Any], says: dict[str, str], confirm: dict | None) -> dict:
    """The simulated customer of an eval item: every slot with its cues and answer, and the confirmation."""
    profile: dict[str, Any] = {"slots": {}, "ask_cues": ASK_CUES[lang], "unclear": UNCLEAR[lang]}
    for name, value in slots.items():
        slot = {"value": value, "ask": SLOT_CUES[lang][name], "say": says[name]}
        if name == "bill_type":  # said as 电费 / electricity bill, passed as "electricity"
            slot["forms"] = list(BILLS[value])
        profile["slots"][name] = slot
    if confirm is not None:
        profile["confirm"] = confirm
    return profile


def _one_flow(world: World, rng: random.Random, split: str, flow: str, lang: str, short: bool, cancel: bool) -> dict:
    """One conversation: ``{"flow", "lang", "cancel", "state", "messages" (the whole conversation),
    "user" (the simulated customer), "expected_calls", "expected_state", "expected_answer"}``.

    ``short``: a training transfer that asks for more than the balance (the tool refuses). ``cancel``: the
    customer declines at the confirmation; nothing is written."""
    state = _customer(rng, world)
    debit = sorted(k for k, a in state["accounts"].items() if a["type"] == "debit")
    messages: list[dict] = [{"role": "system", "content": SYSTEM[lang]}]
    expected_state: dict = {"accounts": {k: {"balance": a["balance"], "status": a["status"]}
                                         for k, a in state["accounts"].items()},
                            "bills": {k: {"status": b["status"]} for k, b in state["bills"].items()},
                            "transfers": []}
    env = AgentEnv({"state": state, "tools": ENV_TOOLS}, TOOLS)
    answer: list = []
    calls: list[dict] = []
    n_calls = 0

    def run(call: dict, refused: bool = False) -> None:
        nonlocal n_calls
        n_calls += 1
        messages.append(_assistant_call(call, n_calls))
        outcome, result = _tool_message(env, call, n_calls)
        if outcome["ok"] == refused:  # the answer written below says what the tool must have done
            raise AssertionError(f"sample generator bug: {flow} call {call} answered {outcome}")
        messages.append(result)
        calls.append(call)

    if flow == "check_balance":
        card = rng.choice(sorted(state["accounts"]))
        slots, text = {"card_last4": card}, {"card_last4": card}
    elif flow == "transfer":
        source = rng.choice(debit)
        balance = state["accounts"][source]["balance"]
        amount = rng.choice([a for a in _AMOUNTS if a <= balance])
        short = short and balance + 2000 <= state["limits"]["daily_transfer"]
        if short:  # more than the card holds, yet under the daily limit: the refusal is for the balance
            amount = int(balance // 1000 + 2) * 1000
        name = (rng.choice(_SURNAMES[split]) + rng.choice(_GIVEN)) if lang == "zh" else rng.choice(_EN_NAMES[split])
        payee_card = pii.bank_card(rng)
        slots = {"payee_name": name, "amount": amount, "payee_card": payee_card, "from_last4": source}
        text = {"payee_name": name, "payee_card": payee_card, "from_last4": source,
                "amount": f"CNY {amount:,}" if lang == "en" else f"{amount}元"}
    elif flow == "freeze_card":
        card = rng.choice(sorted(state["accounts"]))
        slots, text = {"card_last4": card}, {"card_last4": card}
    else:  # pay_bill: look the bill up, confirm its amount, pay
        kind = rng.choice(sorted(state["bills"]))
        source = rng.choice(debit)
        bill = state["bills"][kind]["amount"]
        slots = {"bill_type": kind, "from_last4": source}
        text = {"bill": BILLS[kind][0 if lang == "zh" else 1], "from_last4": source, "bill_amount": money(bill, lang)}
    says = {slot: _say(rng, lang, slot, text) for slot in slots}
    _gather(rng, lang, split, flow, slots, says, text, messages)
    confirm = None
    if flow == "pay_bill":
        run(_call("get_bill", {"bill_type": slots["bill_type"]}))
    if flow in WRITE_FLOWS:
        reply = rng.choice((NO if cancel else YES)[lang][split])
        confirm = {"cues": CONFIRM_CUES[lang], "accept": not cancel, "reply": reply}
        messages.append({"role": "assistant", "content": CONFIRM[lang][flow].format(**text)})
        messages.append({"role": "user", "content": reply})
    if cancel:
        done = CANCELLED[lang][flow].format(**text)
    elif flow == "check_balance":
        run(_call("get_balance", dict(slots)))
        balance = state["accounts"][slots["card_last4"]]["balance"]
        answer = [balance]
        done = DONE[lang][flow].format(**text, balance=money(balance, lang))
    elif flow == "transfer":
        run(_call("transfer", {"from_last4": source, "payee_name": name, "payee_card": payee_card, "amount": amount}),
            refused=short)
        if not short:
            left = round(balance - amount, 2)
            expected_state["accounts"][source]["balance"] = left
            expected_state["transfers"] = [{"from_last4": source, "payee_name": name, "payee_card": payee_card,
                                            "amount": amount}]
            done = DONE[lang][flow].format(**text, balance=money(left, lang))
        else:
            done = DONE[lang]["insufficient"].format(**text)
    elif flow == "freeze_card":
        run(_call("freeze_card", dict(slots)))
        expected_state["accounts"][slots["card_last4"]]["status"] = "frozen"
        done = DONE[lang][flow].format(**text)
    else:
        run(_call("pay_bill", dict(slots)))
        left = round(state["accounts"][source]["balance"] - bill, 2)
        expected_state["accounts"][source]["balance"] = left
        expected_state["bills"][kind]["status"] = "paid"
        done = DONE[lang][flow].format(**text, balance=money(left, lang))
    messages.append({"role": "assistant", "content": done})
    return {"flow": flow, "lang": lang, "cancel": cancel, "state": state, "messages": messages,
            "user": _user(lang, slots, says, confirm), "expected_calls": calls, "expected_state": expected_state,
            "expected_answer": answer}


FLOWS = tuple(OPENINGS)
# Every how-many-th write flow the customer declines at the confirmation: every third in the eval suite (so
# even the tiny one has a cancellation per write flow), every fourth in training.
CANCEL_EVERY = {"eval": 3, "train": 4}


def _key(conv: dict) -> str:
    return json.dumps([m.get("content") for m in conv["messages"] if m["role"] == "user"], ensure_ascii=False)


def _draw(world: World, rng: random.Random, split: str, n: int) -> list[dict]:
    out, seen, attempts = [], set(), 0
    while len(out) < n and attempts < 40 * n + 100:
        attempts += 1
        flow = FLOWS[len(out) % len(FLOWS)]  # round-robin: every flow is in even the tiny suite
        lang = rng.choice(["zh", "zh", "en"])
        nth = sum(1 for c in out if c["flow"] == flow)
        cancel = flow in WRITE_FLOWS and nth % CANCEL_EVERY[split] == CANCEL_EVERY[split] - 1
        short = split == "train" and flow == "transfer" and not cancel and rng.random() < 0.2
        conv = _one_flow(world, rng, split, flow, lang, short, cancel)
        if _key(conv) in seen:
            continue
        seen.add(_key(conv))
        out.append(conv)
    return out


def opening_of(messages: list[dict]) -> list[dict]:
    """The conversation an eval item starts from: the system prompt and the customer's first turn."""
    return messages[:2]


def eval_items(world: World, rng: random.Random, n: int) -> list[dict]:
    items = []
    for i, conv in enumerate(_draw(world, rng, "eval", n), start=1):
        items.append({"id": f"sample/{TASK}/eval/{i:04d}", "task": TASK, "category": "agent",
                      "subcategory": conv["flow"], "type": "agent", "messages": opening_of(conv["messages"]),
                      "tools": TOOLS, "env": {"state": conv["state"], "tools": ENV_TOOLS}, "user": conv["user"],
                      "expected_state": conv["expected_state"], "expected_calls": conv["expected_calls"],
                      "expected_answer": conv["expected_answer"], "max_steps": 3, "lang": conv["lang"],
                      "cancel": conv["cancel"]})
    return items


def sft_rows(world: World, rng: random.Random, n: int) -> list[dict]:
    return [{"id": f"sample/{TASK}/train/{i:04d}", "messages": conv["messages"], "tools": TOOLS,
             "flow": conv["flow"], "lang": conv["lang"], "cancel": conv["cancel"]}
            for i, conv in enumerate(_draw(world, rng, "train", n), start=1)]


def build_flows(world: World, rng: random.Random, n_train: int, n_eval: int) -> dict[str, bytes | list]:
    """The flows' files for the sample writer (relative path → records or bytes). Drawn from their own
    ``rng`` stream, so the rest of the sample is byte-for-byte what it was without them."""
    return {f"{SUITE_DIR}/{TASK}.jsonl": eval_items(world, rng, n_eval), f"{SUITE_DIR}/suite.yaml": SUITE_YAML.encode(),
            SFT_FILE: sft_rows(world, rng, n_train)}
