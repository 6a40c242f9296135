"""Atomic writes, JSONL records and input listing, shared by every stage.

Every artifact is written to a temporary file beside its destination and renamed into place, so a
crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
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


def jsonl_lines(path: str | Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line number, object, None)`` or ``(line number, None, reason)`` for each non-blank line of a JSONL file.

    The one JSONL reader: a bad line is a value, not an exception, so a caller that rejects one record and
    goes on (training data, a batch of queries) and a caller that stops at the first (:func:`numbered_jsonl`)
    read files the same way. A missing file, or bytes that are not UTF-8, is an error for the whole file."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DomainlmError(f"{path}: file not found") from None
    except OSError as exc:
        raise DomainlmError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        line_no = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield line_no, None, f"not valid JSON ({exc.msg})"
                    continue
                if not isinstance(record, dict):
                    yield line_no, None, f"expected a JSON object, got {type(record).__name__}"
                    continue
                yield line_no, record, None
        except UnicodeDecodeError:
            raise DomainlmError(f"{path}:{line_no + 1}: not UTF-8 text") from None


def numbered_jsonl(path: str | Path, *, required: Iterable[str] = ()) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of a JSONL file, for readers whose own checks name the line too; the first
    bad line is an error naming the file and line."""
    required = tuple(required)
    for line_no, record, problem in jsonl_lines(path):
        if problem is not None:
            raise DomainlmError(f"{path}:{line_no}: {problem}")
        for key in required:
            if key not in record:
                raise DomainlmError(f"{path}:{line_no}: missing key '{key}'")
        yield line_no, record


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


def expand_inputs(inputs: Iterable[str | Path], problems: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Files named directly, plus every file under named folders (sorted, hidden names inside a folder skipped).

    Symlinked files and folders are followed. What cannot be read as a file is not returned: a folder
    that cannot be listed, a broken symlink, a symlink loop, a FIFO, socket or device (reading one could
    block forever). Each is appended to ``problems`` as ``(path, reason)`` when a list is given, so the
    caller reports it (a rejected record) instead of dropping it without a word.
    """
    files: list[Path] = []
    found: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item)
        try:
            is_dir, is_file = item.is_dir(), item.is_file()
        except OSError as exc:  # e.g. a parent folder the process may not enter
            found.append((item, f"unreadable ({exc.strerror or exc})"))
            continue
        if is_dir:
            inside: list[Path] = []
            _walk_folder(item, inside, found, {item.resolve()})
            files.extend(sorted(inside))
        elif is_file:
            files.append(item)
        elif item.exists():
            found.append((item, _not_a_file(item)))
        else:
            raise DomainlmError(f"{item}: no such file or folder")
    if problems is not None:
        problems.extend(sorted(found))
    return files


def _walk_folder(folder: Path, files: list[Path], problems: list[tuple[Path, str]], ancestors: set[Path]) -> None:
    """Collect the files under ``folder`` into ``files`` and what cannot be read into ``problems``.

    Written on os.scandir rather than Path.rglob because rglob skips a folder it cannot list without a
    word, and a user must be told which of their folders was not read.
    """
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        problems.append((folder, f"unreadable folder ({exc.strerror or exc})"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files and folders (.git, editor backups) are not documents
        path = folder / entry.name
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow symlinks
        except OSError as exc:
            problems.append((path, f"unreadable ({exc.strerror or exc})"))
            continue
        if is_dir:
            real = path.resolve()
            if real in ancestors:  # a symlink to a folder that contains it would recurse forever
                problems.append((path, "symlink loop (points to a folder that contains it)"))
            else:
                _walk_folder(path, files, problems, ancestors | {real})
        elif is_file:
            files.append(path)
        else:
            problems.append((path, _not_a_file(path)))


def _not_a_file(path: Path) -> str:
    """Why ``path`` (which exists, or is a dangling symlink) is not read as a document."""
    if path.is_symlink() and not path.exists():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symlink (-> {target})"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISFIFO(mode):
        kind = "FIFO"
    elif stat.S_ISSOCK(mode):
        kind = "socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "device"
    else:
        kind = "special file"
    return f"not a regular file ({kind})"
