"""The ``domainlm`` command: one Typer app; each stage package adds its commands.

A stage package ``domainlm.<pkg>`` joins the CLI by having a module ``domainlm/<pkg>/commands.py`` with a
``register(app: typer.Typer)`` function. Command modules import their heavy libraries (torch, transformers)
inside the command functions, so ``domainlm --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from domainlm import __version__
from domainlm.errors import DomainlmError

# Order here is the order of `domainlm --help`: the line from raw data to served model.
STAGE_COMMAND_MODULES = (
    "domainlm.sample.commands",
    "domainlm.data.commands",
    "domainlm.kb.commands",
    "domainlm.synth.commands",
    "domainlm.models.commands",
    "domainlm.train.commands",
    "domainlm.compress.commands",
    "domainlm.evals.commands",
    "domainlm.serve.commands",
    "domainlm.sandbox.commands",
    "domainlm.pipeline.commands",
)

console = Console(stderr=True)

app = typer.Typer(
    name="domainlm",
    help="The production line for industry language models: clean → knowledge base → train → compress → "
    "evaluate → serve → improve. Commands accept key=value overrides of domainlm.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"domainlm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """domainlm: turn a general open model plus your documents into a measured industry expert."""


@app.command()
def init(
    folder: Path = typer.Argument(Path("."), help="Folder for the new workspace."),
    name: str = typer.Option(None, "--name", help="Project name written into domainlm.yaml."),
) -> None:
    """Create a workspace: a documented domainlm.yaml, sources/ and artifacts/ folders."""
    from domainlm.workspace import init_workspace

    path = init_workspace(folder, name=name)
    console.print(f"wrote {path}; put your documents in {path.parent / 'sources' / 'docs'}")


@app.command("config")
def show_config(
    args: list[str] = typer.Argument(None, help="key=value overrides"),
    config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
) -> None:
    """Validate domainlm.yaml (with overrides), print the effective configuration, then check every path and
    model the build will need: what is missing is named (exit 2) before anything runs."""
    import yaml

    from domainlm.workspace import find_config, load_config

    path = config or find_config()
    cfg = load_config(path, args or [])
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False).rstrip())
    if path is None:
        return
    from domainlm.pipeline.line import Workspace, check_workspace

    problems, notes = check_workspace(Workspace(root=Path(path).resolve().parent, config=cfg))
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for problem in problems:
        console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    console.print("config: every path the build needs is there", highlight=False)


def _register_stages() -> None:
    for module_name in STAGE_COMMAND_MODULES:
        # A stage that is not built yet has no commands module: it is simply not listed.
        package = module_name.rsplit(".", 1)[0]
        if importlib.util.find_spec(package) is None or importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)


_register_stages()


def quiet_library_logs() -> None:
    """torchao (imported by transformers whenever it is installed) logs that it cannot load its CUDA kernels,
    and torch's pytree logs a deprecation for torchao's enums, on every CPU run: noise, not news, for a user."""
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and return its exit code; a DomainlmError becomes one line on stderr."""
    quiet_library_logs()
    try:
        app(args=argv, prog_name="domainlm")
    except SystemExit as exc:  # click's standalone mode ends every run with SystemExit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except DomainlmError as exc:
        # escape(): a path or record text like "[x]" must print as-is, not as rich markup.
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
