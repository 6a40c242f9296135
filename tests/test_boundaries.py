"""Stage packages talk to each other only through what each exports.

A package's public API is its ``__init__``'s ``__all__`` (httpx's rule). Importing a name another package
does not export — or any underscore name from another package — couples two stages through an internal
detail, and the next change to that internal breaks a stage that did not know it depended on it.
"""

import ast
import importlib
from pathlib import Path

import domainlm

SRC = Path(domainlm.__file__).parent
PACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())


def cross_package_imports(root: Path, packages: list[str]) -> list[tuple[str, int, str, str, str]]:
    """(file, line, imported package, name, module) for every ``from domainlm.<pkg>... import name`` under
    ``root`` that crosses from one package into another, at module level or inside a function."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        own = parts[0] if len(parts) > 1 else None  # None: a shared top-level module (cli, workspace, …)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("domainlm."):
                continue
            target = node.module.split(".")[1]
            if target in packages and target != own:
                found += [(str(path.relative_to(root)), node.lineno, target, a.name, node.module) for a in node.names]
    return found


def not_exported(imports, exported: dict[str, set[str]]) -> list[str]:
    wrong = []
    for where, line, target, name, module in imports:
        if module == f"domainlm.{target}" and name == "commands":
            continue  # the CLI lists every stage's commands module
        if name.startswith("_") or name not in exported[target]:
            wrong.append(f"{where}:{line}: from {module} import {name} (not in domainlm.{target}.__all__)")
    return wrong


def test_stages_import_only_what_other_stages_export():
    exported = {name: set(getattr(importlib.import_module(f"domainlm.{name}"), "__all__", ())) for name in PACKAGES}
    wrong = not_exported(cross_package_imports(SRC, PACKAGES), exported)
    assert not wrong, "\n".join(wrong)


def test_the_check_finds_a_private_import_inside_a_function(tmp_path):
    (tmp_path / "evals").mkdir()
    (tmp_path / "compress").mkdir()
    (tmp_path / "compress" / "gate.py").write_text(
        "from domainlm.evals import score\n\n"
        "def gate():\n    from domainlm.evals.stage import limit_items\n    from domainlm.compress.config import X\n")
    imports = cross_package_imports(tmp_path, ["evals", "compress"])
    assert [(i[1], i[3]) for i in imports] == [(1, "score"), (4, "limit_items")]  # own package not counted
    assert not_exported(imports, {"evals": {"score"}}) == [
        "compress/gate.py:4: from domainlm.evals.stage import limit_items (not in domainlm.evals.__all__)"]
