"""The ``domainlm`` command: one Typer app; each stage package adds its commands.

A stage package ``domainlm.<pkg>`` joins the CLI through its module ``domainlm/<pkg>/commands.py`` and its
``register(app: typer.Typer)`` function, listed below. Command modules import their heavy libraries (torch,
transformers) inside the command functions, so ``domainlm --help`` stays fast and torch-free.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from domainlm import __version__
from domainlm.compress import commands as compress_commands
from domainlm.config import find_config
from domainlm.data import commands as data_commands
from domainlm.errors import DomainlmError
from domainlm.evals import commands as evals_commands
from domainlm.kb import commands as kb_commands
from domainlm.pipeline import commands as pipeline_commands
from domainlm.plugins import commands as plugin_commands
from domainlm.sample import commands as sample_commands
from domainlm.sandbox import commands as sandbox_commands
from domainlm.serve import commands as serve_commands
from domainlm.synth import commands as synth_commands
from domainlm.train import commands as train_commands
from domainlm.workspace import Workspace, check_workspace, init_workspace, load_workspace_config

# Order here is the order of `domainlm --help`: the line from raw data to served model.
STAGE_COMMANDS = (
    sample_commands,
    data_commands,
    kb_commands,
    synth_commands,
    train_commands,
    compress_commands,
    evals_commands,
    serve_commands,
    sandbox_commands,
    plugin_commands,
    pipeline_commands,
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
    path = init_workspace(folder, name=name)
    console.print(f"wrote {path}; put your documents in {path.parent / 'sources' / 'docs'}")


@app.command("config")
def show_config(
    args: list[str] = typer.Argument(None, help="key=value overrides"),
    config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
) -> None:
    """Validate domainlm.yaml (with overrides), print the effective configuration, then check every path and
    model the build will need: what is missing is named (exit 2) before anything runs."""
    path = config or find_config()
    cfg = load_workspace_config(path, args or [])
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False).rstrip())
    if path is None:
        return
    problems, notes = check_workspace(Workspace(root=Path(path).resolve().parent, config=cfg))
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for problem in problems:
        console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    console.print("config: every path the build needs is there", highlight=False)


for stage_commands in STAGE_COMMANDS:
    stage_commands.register(app)


def quiet_library_logs() -> None:
    """torchao (imported by transformers whenever it is installed) logs that it cannot load its CUDA kernels,
    and torch's pytree logs a deprecation for torchao's enums, on every CPU run: noise, not news, for a user."""
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
