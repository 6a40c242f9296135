"""Atomic writes and JSONL records, shared by every stage.

Every artifact is written to a temporary file beside its destination and renamed into place, so a
crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from domainlm.errors import DomainlmError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else "") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the artifact the mode a plain open() would (0666 less umask).
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def dumps(record: Any) -> str:
    """One JSONL line: UTF-8 text kept readable (no \\u escapes), keys in insertion order."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DomainlmError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainlmError(f"{path}: not valid JSON ({exc})") from None


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write records atomically, one JSON object a line; returns how many were written."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(dumps(record))
            handle.write("\n")
            count += 1
    return count


def iter_jsonl(path: str | Path, *, required: Iterable[str] = ()) -> Iterator[dict]:
    """Yield the objects of a JSONL file; a bad line raises an error naming the file and line."""
    for _, record in numbered_jsonl(path, required=required):
        yield record


def numbered_jsonl(path: str | Path, *, required: Iterable[str] = ()) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of a JSONL file, for readers whose own checks name the line too."""
    path = Path(path)
    required = tuple(required)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DomainlmError(f"{path}: file not found") from None
    with handle:
        line_no = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DomainlmError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DomainlmError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
                for key in required:
                    if key not in record:
                        raise DomainlmError(f"{path}:{line_no}: missing key '{key}'")
                yield line_no, record
        except UnicodeDecodeError:
            raise DomainlmError(f"{path}:{line_no + 1}: not UTF-8 text") from None


def read_jsonl(path: str | Path, *, required: Iterable[str] = ()) -> list[dict]:
    return list(iter_jsonl(path, required=required))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
