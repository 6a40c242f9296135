"""``domainlm chatfile``: the file is read through the clean recipe, a short text is its own summary,
JSONL records are documents, and nothing left to read is a one-line error."""

import json

import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError

# One paragraph with the noise the clean recipe repairs: pinyin annotations, traditional characters, a
# UTF-8-read-as-GBK mojibake island, PII, and a boilerplate line.
ISLAND = "利率期限".encode().decode("gbk")
MESSY = (
    "海港銀行（hǎi gǎng yín háng）的定期存款" + ISLAND + "為1.75%，客戶可通過手機銀行辦理。\n"
    "如有疑问请致电13812345678或发邮件至service@harbor.cn咨询。\n"
    "免责声明：本文仅供参考，不构成任何投资建议。\n"
)


@pytest.fixture(autouse=True)
def _outside_any_workspace(tmp_path, monkeypatch):
    # chatfile uses the nearest domainlm.yaml's clean.recipe: run where there is none.
    monkeypatch.chdir(tmp_path)


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_summary_and_answer_read_the_cleaned_text(tmp_path, capsys):
    path = tmp_path / "messy.txt"
    path.write_text(MESSY, encoding="utf-8")
    assert main(["chatfile", str(path), "--summary", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    text = summary["summary"]
    assert text.startswith("海港银行的定期存款利率期限为1.75%，客户可通过手机银行办理。"), text
    for gone in ("hǎi", "銀", "為", ISLAND, "13812345678", "service@harbor.cn", "免责声明"):
        assert gone not in text, (gone, text)
    assert "[MOBILE]" in text and "[EMAIL]" in text

    assert main(["chatfile", str(path), "--ask", "定期存款利率期限是多少？", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert not ans["refused"] and "1.75%" in ans["answer"], ans
    cited = ans["citations"][0]["text"]
    assert "hǎi" not in cited and "13812345678" not in cited and "银行" in cited


def test_recipe_option_and_workspace_recipe(tmp_path, capsys):
    path = tmp_path / "messy.txt"
    path.write_text(MESSY, encoding="utf-8")
    # default-en has no Chinese steps: the pinyin and traditional characters stay.
    assert main(["chatfile", str(path), "--summary", "--recipe", "default-en"]) == 0
    assert "hǎi gǎng" in capsys.readouterr().out
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("name: mine\noperators:\n  - op: remove_pinyin\n  - op: tidy\n", encoding="utf-8")
    assert main(["chatfile", str(path), "--summary", "--recipe", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "hǎi" not in out and "銀行" in out and "13812345678" in out
    # Inside a workspace, its clean.recipe is the default, as for `domainlm clean`.
    (tmp_path / "domainlm.yaml").write_text("clean:\n  recipe: default-en\n", encoding="utf-8")
    assert main(["chatfile", str(path), "--summary"]) == 0
    assert "hǎi gǎng" in capsys.readouterr().out
    assert main(["chatfile", str(path), "--summary", "--recipe", "no-such-recipe"]) == 2
    _one_line_error(capsys, "no-such-recipe")


def test_a_short_text_is_its_own_summary(tmp_path, capsys):
    cases = {
        "one.txt": "海港银行成立于1998年，总部位于上海。",
        "two.txt": "海港银行成立于1998年。总部位于上海市浦东新区。",
        "greeting.txt": "你好。",  # fewer words than a summary sentence needs
        "note.txt": "Harbor Bank opened its first branch in Shanghai in 1998",  # no full stop
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text + "\n", encoding="utf-8")
        assert main(["chatfile", str(tmp_path / name), "--summary", "--json"]) == 0, name
        summary = json.loads(capsys.readouterr().out)
        assert summary["summary"] == text and summary["sentences"], (name, summary)


def test_nothing_left_after_cleaning_is_a_one_line_error(tmp_path, capsys):
    furniture = tmp_path / "furniture.txt"
    furniture.write_text("免责声明：本文仅供参考，不构成任何投资建议。\n[图片]\n分享到：微信 微博\n", encoding="utf-8")
    for mode in (["--summary"], ["--ask", "利率是多少？"]):
        assert main(["chatfile", str(furniture), *mode]) == 2
        _one_line_error(capsys, "furniture.txt", "empty after cleaning", "default-zh")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n", encoding="utf-8")
    assert main(["chatfile", str(blank), "--summary"]) == 2
    _one_line_error(capsys, "blank.txt")
    # Rejected by the recipe's quality filter: say which step and why.
    digits = tmp_path / "digits.txt"
    digits.write_text("\n".join(f"海港 {i} {i * 7}" for i in range(30)), encoding="utf-8")
    assert main(["chatfile", str(digits), "--summary"]) == 2
    _one_line_error(capsys, "digits.txt", "rejected by the clean recipe 'default-zh' at quality")
    unknown = tmp_path / "data.bin"
    unknown.write_bytes(b"\x00\x01")
    assert main(["chatfile", str(unknown), "--summary"]) == 2
    _one_line_error(capsys, "data.bin", "unsupported file type")


def test_model_summary_that_is_empty_is_an_error(tmp_path):
    from domainlm.kb.chatfile import summarize_file

    class Silent:
        def chat(self, conversations, **kwargs):
            return ["  " for _ in conversations]

    path = tmp_path / "a.txt"
    path.write_text("海港银行成立于1998年，总部位于上海。海港银行的董事长是张三。", encoding="utf-8")
    with pytest.raises(DomainlmError, match="empty summary"):
        summarize_file(path, Silent())


def test_jsonl_records_are_the_document(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    records = [
        {"id": "founding", "text": "海港银行成立于1998年，总部位於上海。"},
        {"id": "chair", "text": "海港银行的董事长是张三，他于2015年上任。"},
        {"text": "海港银行在全国设有120家分行。"},  # no id: named by its line
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join([lines[0], "{broken", lines[1], json.dumps({"body": "x"}), lines[2]]) + "\n", encoding="utf-8")
    assert main(["chatfile", str(path), "--summary", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["documents"] == 3 and summary["summary"]
    assert "总部位于上海" in summary["summary"] and "张三" in summary["summary"]  # 於 → 于: the recipe ran
    assert [s["source"] for s in summary["skipped"]] == [f"{path}:2", f"{path}:4"]
    assert f"{path}:2" in captured.err and "not valid JSON" in captured.err

    assert main(["chatfile", str(path), "--ask", "海港银行的董事长是谁？", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert not ans["refused"] and "张三" in ans["answer"], ans
    assert ans["citations"][0]["doc_id"] == "chair" and ans["citations"][0]["source"] == f"{path}:3"
    assert main(["chatfile", str(path), "--ask", "海港银行有多少家分行？", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert "120" in ans["answer"] and ans["citations"][0]["source"] == f"{path}:5"

    # Another text field, as `clean --text-field` reads it.
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"content": "海港银行成立于1998年，总部位于上海。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["chatfile", str(other), "--summary", "--text-field", "content"]) == 0
    assert "1998" in capsys.readouterr().out
    assert main(["chatfile", str(other), "--summary"]) == 2
    _one_line_error(capsys, "other.jsonl", "none of its 1 records", "no text field 'text'")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert main(["chatfile", str(empty), "--summary"]) == 2
    _one_line_error(capsys, "empty.jsonl", "no records")


def test_definition_question_about_a_file(tmp_path, capsys):
    # The heading and the FAQ line repeat the question; the answer is the sentence that defines the term.
    path = tmp_path / "faq.md"
    path.write_text(
        "# 海港鲸落存单\n\n什么是海港鲸落存单？\n\n海港鲸落存单可在手机银行购买。"
        "海港鲸落存单是海港银行面向个人客户发行的大额存单，起存金额为20万元。\n\n"
        "海港鲸落存单到期自动转存。\n",
        encoding="utf-8",
    )
    assert main(["chatfile", str(path), "--ask", "什么是海港鲸落存单？", "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert ans["answer"].startswith("海港鲸落存单是海港银行面向个人客户发行的大额存单"), ans
