"""Tools a model can call: one :class:`Tool` type, and the places tools come from.

A tool is a name, a description, a JSON schema of its parameters and a Python callable that takes the
arguments (a dict) and returns JSON-ready data. Tools come from:

* the project itself (``price_forecast``, and the server's ``kb_search`` in ``domainlm.serve``);
* Python entry points in the group ``domainlm.plugins``: an installed package names an object that is a
  :class:`Tool`, a list of them, or a function of no arguments returning either;
* an OpenAPI 3 file (JSON or YAML): each operation becomes a tool named by its ``operationId``, its path,
  query and header parameters and its JSON request body merged into one parameters schema; calling it
  sends the HTTP request to the spec's first server URL with httpx, under a timeout.

Loading is strict: a plugin that cannot be imported, a tool with a bad name or schema, or two tools with
the same name is an error naming where it came from, never a tool silently missing at serve time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from domainlm.errors import DomainlmError

GROUP = "domainlm.plugins"
# OpenAI's rule for function names; chat templates write the name into the prompt as it is.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_METHODS = ("get", "post", "put", "patch", "delete")


class ToolError(Exception):
    """A tool call that failed in a way the model should read (an HTTP error, bad arguments)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object
    run: Callable[[dict], Any]  # arguments -> JSON-ready result; raises on failure
    source: str = "python"  # where it was registered: builtin, entry point NAME (DIST), openapi FILE

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DomainlmError(f"{self.source}: tool name {self.name!r} must be 1-64 letters, digits, _ or -")
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise DomainlmError(f"{self.source}: tool '{self.name}': parameters must be a JSON schema with type object")
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(self.parameters)
        except jsonschema.SchemaError as exc:
            raise DomainlmError(f"{self.source}: tool '{self.name}': parameters are not a valid JSON schema "
                                f"({exc.message})") from None
        if not callable(self.run):
            raise DomainlmError(f"{self.source}: tool '{self.name}': run is not callable")

    def spec(self) -> dict:
        """The tool in OpenAI's function format: what a chat template renders into the prompt."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def summary(self) -> str:
        """The parameters in one line: ``query: string (required), k: integer``."""
        required = set(self.parameters.get("required") or ())
        parts = []
        for key, schema in (self.parameters.get("properties") or {}).items():
            kind = schema.get("type", "any") if isinstance(schema, dict) else "any"
            if isinstance(kind, list):
                kind = "|".join(kind)
            parts.append(f"{key}: {kind}" + (" (required)" if key in required else ""))
        return ", ".join(parts) or "(no parameters)"


def index_tools(tools: Iterable[Tool]) -> dict[str, Tool]:
    """Tools by name; two with one name is an error naming both sources."""
    out: dict[str, Tool] = {}
    for tool in tools:
        if tool.name in out:
            raise DomainlmError(f"tool '{tool.name}' is registered twice: by {out[tool.name].source} and by {tool.source}")
        out[tool.name] = tool
    return out


# ---------------------------------------------------------------------------------------------------
# Built in
# ---------------------------------------------------------------------------------------------------
def _forecast(arguments: dict) -> Any:
    from domainlm.plugins.forecast import run_tool

    return run_tool(arguments)


def builtin_tools() -> list[Tool]:
    """The project's own scenario tools (``kb_search`` needs a knowledge base: ``domainlm.serve`` adds it)."""
    from domainlm.plugins.forecast import TOOL

    fn = TOOL["function"]
    return [Tool(fn["name"], fn["description"], fn["parameters"], _forecast, source="builtin")]


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------
def entry_point_names(group: str = GROUP) -> list[str]:
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=group)})


def entry_point_tools(names: Iterable[str] | None = None, group: str = GROUP) -> list[Tool]:
    """The tools of the installed entry points named (all of them when ``names`` is None).

    An entry point's object is a :class:`Tool`, a list of tools, or a function of no arguments that
    returns one of those (so a plugin can read its settings when it is loaded, not when it is imported)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=group)}
    wanted = sorted(found) if names is None else list(names)
    tools: list[Tool] = []
    for name in wanted:
        if name not in found:
            known = ", ".join(sorted(found)) or "none installed"
            raise DomainlmError(f"no plugin '{name}' in entry point group {group} ({known})")
        ep = found[name]
        dist = getattr(getattr(ep, "dist", None), "name", None)
        where = f"entry point {name} = {ep.value}" + (f" ({dist})" if dist else "")
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, Tool):
                obj = obj()
        except Exception as exc:  # a plugin's own bug: named, so the operator knows which package to fix
            raise DomainlmError(f"{where}: cannot load ({type(exc).__name__}: {exc})") from None
        items = obj if isinstance(obj, (list, tuple)) else [obj]
        for item in items:
            if not isinstance(item, Tool):
                raise DomainlmError(f"{where}: gives {type(item).__name__}, not a domainlm.plugins.Tool")
            tools.append(Tool(item.name, item.description, item.parameters, item.run, source=where))
    return tools


# ---------------------------------------------------------------------------------------------------
# OpenAPI
# ---------------------------------------------------------------------------------------------------
def read_openapi(path: str | Path) -> dict:
    """An OpenAPI 3 document from a JSON or YAML file, checked for what tools need."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainlmError(f"{path}: cannot read ({exc})") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DomainlmError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({exc})") from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3"):
        raise DomainlmError(f"{path}: not an OpenAPI 3 document (no 'openapi: 3.x' key)")
    if not isinstance(doc.get("paths"), dict) or not doc["paths"]:
        raise DomainlmError(f"{path}: no 'paths'")
    return doc


def _server_url(doc: dict, path: Path) -> str:
    servers = doc.get("servers") or []
    if not servers or not isinstance(servers[0], dict) or not servers[0].get("url"):
        raise DomainlmError(f"{path}: servers[0].url is missing (the tools need to know where to send requests)")
    server = servers[0]
    url = server["url"]
    for var, spec in (server.get("variables") or {}).items():
        url = url.replace("{" + var + "}", str(spec.get("default", "")))
    if not url.startswith(("http://", "https://")):
        raise DomainlmError(f"{path}: servers[0].url {url!r} must be an absolute http(s) URL")
    return url.rstrip("/")


def _resolve(node: Any, doc: dict, path: Path, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every local ``$ref`` (``#/components/...``) replaced by what it points to."""
    if isinstance(node, list):
        return [_resolve(v, doc, path, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/"):
            raise DomainlmError(f"{path}: $ref {ref!r}: only references inside the file (#/...) are read")
        if ref in seen:
            raise DomainlmError(f"{path}: $ref {ref!r} refers to itself (recursive schemas cannot become tool parameters)")
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise DomainlmError(f"{path}: $ref {ref!r} points to nothing")
            target = target[part]
        return _resolve(target, doc, path, (*seen, ref))
    return {k: _resolve(v, doc, path, seen) for k, v in node.items()}


@dataclass(frozen=True)
class _Operation:
    method: str
    url: str  # server URL + path template
    params: dict[str, str]  # argument name -> where it goes: path | query | header
    body: str | None  # None: no body; "merge": the body's properties are arguments; else the argument holding it
    timeout: float

    def __call__(self, arguments: dict) -> Any:
        import httpx

        url, query, headers, body = self.url, {}, {}, None
        rest = dict(arguments)
        for name, where in self.params.items():
            if name not in rest:
                continue
            value = rest.pop(name)
            if where == "path":
                url = url.replace("{" + name + "}", quote(str(value), safe=""))
            elif where == "query":
                query[name] = value
            else:
                headers[name] = str(value)
        if "{" in url:
            raise ToolError(f"missing path parameter in {url}")
        if self.body == "merge":
            body = rest
        elif self.body is not None:
            body = rest.get(self.body)
        response = httpx.request(self.method.upper(), url, params=query, headers=headers,
                                 json=body if self.body is not None else None, timeout=self.timeout)
        if response.status_code >= 400:
            raise ToolError(f"HTTP {response.status_code}: {response.text[:500]}")
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text


def _operation_tool(doc: dict, path: Path, base: str, route: str, method: str, op: dict, shared: list,
                    timeout: float) -> Tool:
    where = f"{path}: paths.{route}.{method}"
    name = op.get("operationId")
    if not name:
        raise DomainlmError(f"{where}: no operationId (it is the tool's name)")
    properties: dict[str, Any] = {}
    required: list[str] = []
    params: dict[str, str] = {}
    # Operation-level parameters override path-level ones of the same name and place (OpenAPI's rule).
    merged = {(p.get("name"), p.get("in")): p for p in [*shared, *(op.get("parameters") or [])]}
    for (pname, place), p in merged.items():
        if place not in ("path", "query", "header"):
            raise DomainlmError(f"{where}: parameter {pname!r} in {place!r}: only path, query and header are sent")
        schema = dict(p.get("schema") or {"type": "string"})
        if p.get("description") and "description" not in schema:
            schema["description"] = p["description"]
        properties[pname] = schema
        params[pname] = place
        if p.get("required") or place == "path":
            required.append(pname)
    body = None
    request_body = op.get("requestBody")
    if request_body:
        content = request_body.get("content") or {}
        if "application/json" not in content:
            raise DomainlmError(f"{where}: requestBody has no application/json content (only JSON bodies are sent)")
        schema = content["application/json"].get("schema") or {}
        if schema.get("type") == "object" and schema.get("properties"):
            clash = set(schema["properties"]) & set(properties)
            if clash:
                raise DomainlmError(f"{where}: body field(s) {', '.join(sorted(clash))} have the name of a parameter")
            properties.update(schema["properties"])
            if request_body.get("required", False):
                required += [r for r in schema.get("required") or [] if r not in required]
            body = "merge"
        else:
            properties["body"] = schema
            if request_body.get("required", False):
                required.append("body")
            body = "body"
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    description = op.get("description") or op.get("summary") or f"{method.upper()} {route}"
    call = _Operation(method, base + route, params, body, timeout)
    return Tool(name, description.strip(), parameters, call, source=f"openapi {path}")


def openapi_tools(path: str | Path, timeout: float = 10.0) -> list[Tool]:
    """One tool per operation of the OpenAPI file; each call is an HTTP request with ``timeout`` seconds."""
    path = Path(path)
    doc = read_openapi(path)
    base = _server_url(doc, path)
    tools = []
    for route, item in doc["paths"].items():
        item = _resolve(item, doc, path)
        shared = item.get("parameters") or []
        for method in _METHODS:
            if isinstance(item.get(method), dict):
                tools.append(_operation_tool(doc, path, base, route, method, item[method], shared, timeout))
    if not tools:
        raise DomainlmError(f"{path}: no operations (get, post, put, patch, delete) under 'paths'")
    return tools


# ---------------------------------------------------------------------------------------------------
# What a server or `domainlm plugins list` loads
# ---------------------------------------------------------------------------------------------------
def load_tools(plugins: Iterable[str] = (), openapi: Iterable[str | Path] = (), timeout: float = 10.0) -> list[Tool]:
    """The tools named: each of ``plugins`` is a built-in tool's name, an entry point's name, or ``all``
    (every built-in tool and every installed entry point); each of ``openapi`` is a spec file."""
    builtins = {t.name: t for t in builtin_tools()}
    plugins = list(plugins)
    tools: list[Tool] = []
    if "all" in plugins:
        tools += builtins.values()
        tools += entry_point_tools()
    else:
        tools += [builtins[name] for name in plugins if name in builtins]
        tools += entry_point_tools([name for name in plugins if name not in builtins])
    for spec in openapi:
        tools += openapi_tools(spec, timeout)
    return list(index_tools(tools).values())
