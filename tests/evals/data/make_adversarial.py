"""Writes adversarial_extraction.jsonl: labelled model outputs for the mcq / yes-no / refusal extractors.

Each case is written by hand with its gold label; templated cases substitute the gold letter X and
distractors Y, Z, W, so the label is true by construction. Run: python tests/evals/data/make_adversarial.py
"""

import json
from pathlib import Path

FULL = {"A": "Ａ", "B": "Ｂ", "C": "Ｃ", "D": "Ｄ"}

# (template, gold) — gold is a template over X/Y/Z/W, or None for "unparseable".
MCQ_TEMPLATES = [
    ("答案是{X}", "{X}"),
    ("答案：{X}", "{X}"),
    ("正确答案是{X}。", "{X}"),
    ("[正确答案]{X}<eoa>", "{X}"),
    ("{X}", "{X}"),
    ("{X}.", "{X}"),
    ("（{X}）", "{X}"),
    ("选{X}", "{X}"),
    ("故选{X}。", "{X}"),
    ("答案不是{Y}，而是{X}。", "{X}"),
    ("不是{Y}，应该是{X}", "{X}"),
    ("{Y}选项错误，{X}选项正确。", "{X}"),
    ("{Y}和{Z}都不对，{X}正确。", "{X}"),
    ("A股市场近期波动较大，但根据题意，答案是{X}。", "{X}"),
    ("The answer is {X}.", "{X}"),
    ("The correct answer is ({X}).", "{X}"),
    ("Answer: {X}", "{X}"),
    ("I would choose {X} because the rate is fixed.", "{X}"),
    ("A common mistake is to pick {Y}, but the answer is {X}.", "{X}"),
    ("{Y} is incorrect. {X} is correct.", "{X}"),
    ("Option {Y} is wrong; the right option is {X}.", "{X}"),
    ("我一开始以为是{Y}，但仔细分析后，最终答案是{X}。", "{X}"),
    ("**答案：{X}**", "{X}"),
    ("答案是{FX}", "{X}"),
    ("综上所述，本题选{X}。", "{X}"),
    ("分析：{Y}项说法有误；{Z}项不符合题意；因此正确答案为{X}。", "{X}"),
    ("B2B业务和O2O模式都在题干中出现，答案为{X}。", "{X}"),
    ("正确的是{X}", "{X}"),
    ("The final answer is {X}", "{X}"),
    ("{X}项正确，其余选项均错误。", "{X}"),
    ("排除{Y}、{Z}和{W}，剩下{X}。", "{X}"),
    ("答案应为：{X}。解析：{Y}选项中的利率表述不准确。", "{X}"),
    ("题目：下列说法正确的是？\nA. 甲 B. 乙 C. 丙 D. 丁\n答案：{X}", "{X}"),
    ("The answer is {X}, not {Y}.", "{X}"),
    ("Not {Y}. It's {X}.", "{X}"),
    ("{X}。A股和B股的区别在于交易币种。", "{X}"),
    ("选项{X}：正确；选项{Y}：错误", "{X}"),
    ("the answer is ({x})", "{X}"),
    ("答案是{x}。", "{X}"),
    ("根据《商业银行法》第39条，资本充足率不得低于8%，所以选{X}", "{X}"),
    ("{Y}、{Z}、{W}三项都是错误的。", "{X}"),
    ("本题考查存款保险制度。{Y}项错误，{Z}项错误，{W}项错误，故本题答案为{X}。", "{X}"),
    ("我认为应该选择{X}选项。", "{X}"),
    ("正确选项：{X}", "{X}"),
    ("**{X}**", "{X}"),
    ("答案：{X}\n\n解释：{Y}和{Z}的说法混淆了概念。", "{X}"),
    ("Based on the passage, option {X} is the best answer.", "{X}"),
    ("I'd go with {X}.", "{X}"),
    ("{X}) 这是正确的，因为利率按日计息。", "{X}"),
    ("The right choice is {X} since AAA-rated bonds carry less risk.", "{X}"),
    ("虽然{Y}看起来也合理，但{X}才是正确的。", "{X}"),
    ("不选{Y}，选{X}。", "{X}"),
    ("此题不确定，可能是{Y}也可能是{X}。", None),
    ("我无法判断。", None),
    ("这道题的选项都有一定道理。", None),
    ("", None),
    ("A、B、C、D都有可能。", None),
    ("不是{Y}。", None),
]

# Written after the extractor was tuned on the cases above: a held-out check that it generalises.
MCQ_TEMPLATES += [
    ("经过计算，收益为1200元，对应选项{X}。", "{X}"),
    ("Let's analyse each option. {Y}: wrong. {Z}: wrong. {W}: wrong. So {X}.", "{X}"),
    ("Answer: ({X}) — the others misstate the rule.", "{X}"),
    ("我的选择是{X}", "{X}"),
    ("正确答案应该是{X}选项，{Y}选项混淆了概念。", "{X}"),
    ("选项{Y}不正确。选项{X}正确。", "{X}"),
    ("{X}、", "{X}"),
    ("答：{X}", "{X}"),
    ("【答案】{X}", "{X}"),
    ("Therefore, the answer is {X}.", "{X}"),
]

MULTI_TEMPLATES = [
    ("答案是{X}、{Y}", "{XY}"),
    ("正确选项为{X}和{Y}。", "{XY}"),
    ("答案：{XY}", "{XY}"),
    ("The correct answers are {X} and {Y}.", "{XY}"),
    ("正确的有{X}、{Y}，{Z}错误。", "{XY}"),
]

# Hand cases that need their own options.
MCQ_HAND = [
    ("答案是定期存款。", ["活期存款", "定期存款", "大额存单", "国债"], "B"),
    ("我会选国债，风险最低。", ["活期存款", "定期存款", "大额存单", "国债"], "D"),
    ("年化收益率10%以上", ["10%", "10%以上", "5%", "5%以下"], "B"),
    ("不是活期存款，而是大额存单", ["活期存款", "定期存款", "大额存单", "国债"], "C"),
    ("第二项", ["甲", "乙", "丙", "丁"], "B"),
    ("第四个选项正确", ["甲", "乙", "丙", "丁"], "D"),
    ("积极", ["积极", "消极", "中性"], "A"),
    ("该新闻情绪为中性。", ["积极", "消极", "中性"], "C"),
    ("利好", ["利好", "利空", "无影响", "不确定"], "A"),
    ("答案是E", ["1", "2", "3", "4", "5"], "E"),
    ("答案是E", ["1", "2", "3", "4"], None),
    ("这只股票属于A股，代码600000。", ["甲", "乙", "丙", "丁"], None),
    # From LawBench's real outputs: the option's own text is a negation, not a verdict on it.
    ("C:都不正确。①公司章程不是法的范畴。", ["公司章程", "党纪处分", "都不正确", "以上都对"], "C"),
    ("A：错误。B：正确。C：错误。", ["甲", "乙", "丙", "丁"], "B"),
]

YESNO = [
    ("是", "是"), ("否", "否"), ("是的。", "是"), ("是的，这个说法正确。", "是"), ("不是。", "否"),
    ("不，这不是事实。", "否"), ("这个说法是错误的。", "否"), ("这个说法是正确的。", "是"), ("正确", "是"),
    ("错误", "否"), ("答案：否", "否"), ("答案：是", "是"), ("答案是否。", "否"), ("答案为\"是\"", "是"),
    ("该说法不符合事实。", "否"), ("该说法符合事实。", "是"), ("这是正确的说法", "是"), ("这是错误的说法", "否"),
    ("是否合规需要看情况，但总体来说不正确", "否"), ("对", "是"), ("不对", "否"), ("对的，中国是最大制造业国家。", "是"),
    ("错，数学不是经济学的基础。", "否"), ("Yes.", "是"), ("No.", "否"), ("True", "是"), ("False", "否"),
    ("This statement is correct.", "是"), ("This statement is incorrect.", "否"), ("The claim is not true.", "否"),
    ("该行为不合规。", "否"), ("该行为合规。", "是"), ("这种做法不够准确，属于误导。", "否"), ("并不正确。", "否"),
    ("这种说法并非错误。", "是"), ("判断：否", "否"), ("结论：是", "是"), ("**否**", "否"), ("“是”", "是"),
    ("不属实，该公司并未上市。", "否"), ("属实。", "是"), ("该陈述不成立。", "否"), ("不正确。理由如下：……", "否"),
    ("正确。理由如下：……", "是"), ("我无法回答这个问题。", None), ("", None), ("这个问题很复杂。", None),
    ("是否正确取决于具体条款。", None), ("该问题涉及金融合规，答案是：否。", "否"),
    ("是，但需要注意风险。", "是"), ("不，该产品不保本。", "否"), ("It is true that banks pay interest.", "是"),
    ("That's wrong.", "否"), ("说法有误。", "否"), ("描述准确。", "是"), ("描述不准确。", "否"),
    ("这不符合监管要求，因此不合规。", "否"), ("这完全符合监管要求。", "是"), ("不合规", "否"), ("合规", "是"),
]

REFUSAL = [
    ("抱歉，根据提供的文档，无法回答这个问题。", True), ("文档中没有提及该产品的年费。", True), ("我不知道。", True),
    ("资料中未找到相关信息。", True), ("知识库中没有相关信息，建议咨询客服。", True), ("I don't know.", True),
    ("The documents do not mention the fee.", True), ("There is no information about this in the provided context.", True),
    ("I cannot answer this question based on the documents.", True), ("Sorry, I'm unable to find that information.", True),
    ("该问题超出了知识库范围。", True), ("无法确定。", True), ("暂无相关数据。", True), ("Not mentioned in the documents.", True),
    ("Insufficient information to answer.", True), ("我不清楚这个问题的答案。", True), ("很抱歉，我无法提供该信息。", True),
    ("提供的资料中并未提及海港银行的股东结构。", True), ("根据现有资料无法判断。", True), ("没有足够的信息来回答。", True),
    ("I'm not able to answer that from the given documents.", True), ("The context doesn't specify the penalty rate.", True),
    ("This is not covered by the knowledge base; no relevant information was found.", True), ("", False),
    ("未能检索到相关内容。", True), ("对不起，文档里没有说明这一点。", True), ("我不确定。", True),
    ("原文未提及该信息。", True), ("I can't determine that from the text.", True), ("缺乏相关依据，无法确认。", True),
    ("年费为100元。", False), ("没有手续费。", False), ("该卡不收取年费，没有任何额外费用。", False),
    ("无法提前支取的部分按活期计息。", False), ("抱歉让您久等了，年利率为2.5%。", False),
    ("不知道您是否需要办理，年利率为2.5%。", False), ("这并非无法回答的问题：利率为3%。", False),
    ("我们无法提供上门服务，但您可以在任一网点办理。", False), ("The annual fee is 100 yuan.", False),
    ("No fee is charged for transfers under 5,000 yuan.", False), ("The card has no annual fee.", False),
    ("Yes, you can withdraw early, but you cannot get the full interest.", False), ("起存金额为50元，期限3个月至5年。", False),
    ("海港银行信用卡免息期最长56天。", False), ("逾期后不能再申请分期，需一次性还清。", False),
    ("该产品没有封闭期，可随时赎回。", False), ("The minimum deposit is 50 yuan and there is no maximum.", False),
    ("您好！大额存单起存金额为20万元。", False), ("客户不清楚规则时，可拨打95599咨询。利率为1.9%。", False),
    ("不能。该产品不支持提前赎回。", False), ("Interest is paid monthly; no penalty applies.", False),
    ("根据《海港银行个人贷款管理办法》，贷款期限最长为5年。", False), ("该理财产品风险等级为R2，适合稳健型投资者。", False),
    ("不确定收益型产品不承诺保本，历史年化收益约4%。", False), ("手续费为0.1%，最低1元。", False),
    ("It is not mentioned as a fee but as a deposit: 500 yuan.", False),
    ("根据文档，该存款产品没有提及手续费，因此无法确定是否收费。", True),
    ("这个问题我回答不了，文档里找不到。", True),
    ("Unfortunately the provided documents contain no relevant information on this.", True),
    ("There isn't enough information in the documents to answer.", True),
    ("该信息在知识库中不存在。", True),
    ("Transfers are free; we cannot charge for them by law.", False),
    ("可以。根据条款，客户无需提供收入证明。", False),
    ("The loan term is 12 to 60 months.", False),
    # Saying nothing is no refusal: a refusal must say that it cannot answer.
    ("   \n", False), ("。", False), ("抱歉，资料中没有相关信息，无法回答。", True),
    ("I cannot answer that from the documents.", True),
]


def main() -> None:
    rows = []
    letters = "ABCD"
    for template, gold in MCQ_TEMPLATES:
        # Rotate the gold letter and distractors through all four positions.
        for shift in range(4):
            X = letters[shift]
            others = [c for c in letters if c != X]
            Y, Z, W = others
            if template.count("{") == 0 and shift:
                break
            fill = {"X": X, "Y": Y, "Z": Z, "W": W, "FX": FULL[X], "x": X.lower()}
            output = template.format(**fill)
            rows.append({"kind": "mcq", "output": output, "n_options": 4,
                         "gold": None if gold is None else gold.format(**fill)})
    for template, gold in MULTI_TEMPLATES:
        for X, Y, Z in (("A", "C", "B"), ("B", "D", "A"), ("A", "B", "D")):
            fill = {"X": X, "Y": Y, "Z": Z, "XY": "".join(sorted(X + Y))}
            rows.append({"kind": "mcq", "output": template.format(**fill), "n_options": 4, "gold": gold.format(**fill)})
    for output, choices, gold in MCQ_HAND:
        rows.append({"kind": "mcq", "output": output, "choices": choices, "n_options": len(choices), "gold": gold})
    for output, gold in YESNO:
        rows.append({"kind": "yesno", "output": output, "gold": gold})
    for output, gold in REFUSAL:
        rows.append({"kind": "refusal", "output": output, "gold": gold})
    seen, unique = set(), []
    for row in rows:
        key = (row["kind"], row["output"], json.dumps(row.get("choices")))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    out = Path(__file__).with_name("adversarial_extraction.jsonl")
    with out.open("w", encoding="utf-8") as handle:
        for i, row in enumerate(unique):
            handle.write(json.dumps({"id": f"adv-{i:04d}", **row}, ensure_ascii=False) + "\n")
    print(f"wrote {len(unique)} cases to {out}")


if __name__ == "__main__":
    main()
