import os

import pytest

from domainlm.errors import DomainlmError
from domainlm.io import atomic_write, read_jsonl, write_jsonl


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"id": 1, "text": "旧"}])
    with pytest.raises(ValueError):
        with atomic_write(path) as handle:
            handle.write("half written")
            raise ValueError("crash mid-write")
    assert read_jsonl(path) == [{"id": 1, "text": "旧"}]
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]  # no temp file left behind


def test_jsonl_round_trip_keeps_chinese_readable(tmp_path):
    path = tmp_path / "a.jsonl"
    assert write_jsonl(path, [{"text": "海港银行"}, {"text": "b"}]) == 2
    assert "海港银行" in path.read_text(encoding="utf-8")
    assert read_jsonl(path, required=["text"]) == [{"text": "海港银行"}, {"text": "b"}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1}\n{"id": 2\n', r"a\.jsonl:2: not valid JSON"),
        ('{"id": 1}\n[1, 2]\n', r"a\.jsonl:2: expected a JSON object, got list"),
        ('{"id": 1}\n\n{"x": 1}\n', r"a\.jsonl:3: missing key 'id'"),
    ],
)
def test_bad_jsonl_lines_are_named(tmp_path, content, message):
    path = tmp_path / "a.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DomainlmError, match=message):
        read_jsonl(path, required=["id"])


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes('{"text": "海港"}\n'.encode("gbk"))
    with pytest.raises(DomainlmError, match=r"gbk\.jsonl:1: not UTF-8"):
        read_jsonl(path)
    with pytest.raises(DomainlmError, match="file not found"):
        read_jsonl(tmp_path / "none.jsonl")
    assert not os.path.exists(tmp_path / "none.jsonl")


def test_atomic_write_gives_normal_file_permissions(tmp_path):
    path = tmp_path / "a.txt"
    write_jsonl(path, [{"a": 1}])
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_symlinked_folders_are_followed_and_a_loop_is_reported(tmp_path):
    from domainlm.io import expand_inputs

    src = tmp_path / "in"
    (src / "real").mkdir(parents=True)
    (src / "real" / "a.txt").write_text("one")
    (src / "link").symlink_to(src / "real")
    (src / "real" / "up").symlink_to(src)  # points back at a folder that contains it
    (src / ".hidden").mkdir()
    (src / ".hidden" / "x.txt").write_text("not a document")
    problems = []
    assert expand_inputs([src], problems) == [src / "link" / "a.txt", src / "real" / "a.txt"]
    assert [(p.name, r) for p, r in problems] == [("up", "symlink loop (points to a folder that contains it)")] * 2


def test_jsonl_lines_gives_each_bad_line_its_reason_and_reads_on(tmp_path):
    from domainlm.io import jsonl_lines, numbered_jsonl

    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1}\n\nnot json\n[1, 2]\n{"id": "二"}\n', encoding="utf-8")
    assert [(n, r, p and p.split(" (")[0]) for n, r, p in jsonl_lines(path)] == [
        (1, {"id": 1}, None), (3, None, "not valid JSON"), (4, None, "expected a JSON object, got list"),
        (5, {"id": "二"}, None)]
    with pytest.raises(DomainlmError, match=r"mixed\.jsonl:3: not valid JSON"):
        list(numbered_jsonl(path))
