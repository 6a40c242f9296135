"""Settings: the base of every config section, YAML loading with ``key=value`` overrides, one-line errors.

Each stage keeps its settings in one pydantic class in ``<stage>/config.py``; the ``domainlm.yaml`` section
*is* that class (a subclass when the line adds keys of its own), the CLI options of the stage's command
are merged into it by :func:`with_options`, and every validation error becomes one line naming the file,
line and key (:func:`validation_message`). A setting is therefore defined, described and checked once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from domainlm.errors import DomainlmError

CONFIG_FILE = "domainlm.yaml"


class Section(BaseModel):
    """Base for config sections: unknown keys are rejected, assignments are validated.

    ``set_by_line`` names fields of a stage config that the line fills in itself (paths between stages,
    the global seed, shared settings); writing them in ``domainlm.yaml`` is an error that says where the
    value comes from, so no setting has two homes.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    set_by_line: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_line_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.set_by_line:
            for key, source in cls.set_by_line.items():
                if key in data:
                    raise PydanticCustomError("set_by_line", "is set by the line ({source})",
                                              {"key": key, "source": source})
        return data


_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")


def is_override(arg: str) -> bool:
    """``train.lr=1e-4`` is an override; ``data/a=b.txt`` (has a slash) is a path."""
    return bool(_OVERRIDE.match(arg)) and "/" not in arg.split("=", 1)[0]


def split_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from other positional arguments (paths that exist win)."""
    positional, overrides = [], []
    for arg in args:
        if is_override(arg) and not Path(arg).exists():
            overrides.append(arg)
        else:
            positional.append(arg)
    return positional, overrides


def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a composed YAML document to its 1-based line number."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            lines.update(_key_lines(item, prefix + (index,)))
    return lines


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    # pydantic's loc for a wrong key in a nested model is the key itself; walk up to the nearest known key.
    for end in range(len(loc), 0, -1):
        key = tuple(str(p) if not isinstance(p, int) else p for p in loc[:end])
        if key in lines:
            return lines[key]
    return None


M = TypeVar("M", bound=BaseModel)


def validation_message(exc: ValidationError, source: str, lines: dict[tuple, int] | None = None) -> str:
    """One line for a pydantic error: ``domainlm.yaml:7: unknown key 'train.lrr'`` (and how many more)."""
    lines = lines or {}
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = _format_loc(loc)
    line = _line_for(loc, lines)
    where = f"{source}:{line}" if line else source
    if err["type"] == "extra_forbidden":
        what = f"unknown key '{key}'"
    elif err["type"] == "missing":
        what = f"missing key '{key}'"
    elif not loc:  # a check of the whole model (e.g. "give --model, or --edge with --cloud"): its own words
        what = err["msg"].removeprefix("Value error, ")
    elif err["type"] == "set_by_line":
        key = _format_loc((*loc, err["ctx"]["key"]))
        what = f"'{key}' {err['msg']}; remove it"
    else:
        what = f"bad value for '{key}': {err['msg']} (got {err.get('input')!r})"
    more = len(exc.errors()) - 1
    return f"{where}: {what}" + (f" (and {more} more)" if more else "")


def with_options(config: M, source: str = "options", **options: Any) -> M:
    """``config`` with the options a command was given (None means not given), validated like the file.

    This is how every command merges its options into its section: one place, one error format. An error
    about a given option names it as typed (``--seq-len: Input should be ...``)."""
    given = {key: value for key, value in options.items() if value is not None}
    if not given:
        return config
    try:
        return type(config).model_validate({**config.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        if key in given:
            raise DomainlmError(f"--{key.replace('_', '-')}: {err['msg']} (got {err.get('input')!r})") from None
        raise DomainlmError(validation_message(exc, source)) from None


def validate(model: type[M], data: Any, source: str) -> M:
    """``model.model_validate(data)`` with a one-line error naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DomainlmError(validation_message(exc, source)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set dotted keys in a plain dict: ``train.lr=1e-4``, ``sources=[a,b]``. Values parse as YAML."""
    for text in overrides:
        if not is_override(text):
            raise DomainlmError(f"override '{text}': expected key=value, e.g. train.lr=1e-4")
        keys, value = parse_override(text)
        target = data
        for key in keys[:-1]:
            existing = target.get(key)
            if existing is None:
                existing = target[key] = {}
            if not isinstance(existing, dict):
                raise DomainlmError(f"override '{text}': '{key}' is not a section")
            target = existing
        target[keys[-1]] = value
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    model: type[M],
) -> M:
    """Load and validate a YAML config (or defaults when ``path`` is None), then apply overrides.

    Errors name the file, the line and the key path, e.g.
    ``domainlm.yaml:7: unknown key 'train.lrr'``.
    """
    data: dict = {}
    lines: dict[tuple, int] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DomainlmError(f"{path}: config file not found") from None
        except UnicodeDecodeError:
            raise DomainlmError(f"{path}: not UTF-8 text") from None
        try:
            node = yaml.compose(text)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise DomainlmError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise DomainlmError(f"{path}: expected a mapping of keys at the top level")
        data = loaded
        lines = _key_lines(node) if node is not None else {}
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc = tuple(str(p) for p in exc.errors()[0]["loc"])
        for text in overrides:
            keys = tuple(parse_override(text)[0])
            if loc[: len(keys)] == keys or keys[: len(loc)] == loc:
                raise DomainlmError(validation_message(exc, f"override '{text}'", {})) from None
        raise DomainlmError(validation_message(exc, source, lines)) from None


def find_config(start: str | Path = ".") -> Path | None:
    """The nearest ``domainlm.yaml`` in ``start`` or its parents."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def config_template(model: type[BaseModel], indent: int = 0) -> str:
    """A documented YAML rendering of a config model's defaults (used by ``domainlm init``)."""
    pad = " " * indent
    out: list[str] = []
    instance = model()
    line_keys = getattr(model, "set_by_line", {})
    # A section's own keys (train.base, train.stages, compress.targets) first, then the stage settings it inherits.
    own = [name for name in model.model_fields if name in vars(model).get("__annotations__", {})]
    for name in [*own, *(n for n in model.model_fields if n not in own)]:
        info = model.model_fields[name]
        if name in line_keys:
            continue
        value = getattr(instance, name)
        if info.description:
            out.append(f"{pad}# {info.description}")
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(config_template(type(value), indent + 2))
        else:
            dumped = yaml.safe_dump({name: value}, allow_unicode=True, default_flow_style=True, width=1000).strip()
            if dumped.startswith("{") and dumped.endswith("}"):
                dumped = dumped[1:-1]
            out.append(pad + dumped)
    return "\n".join(out)


