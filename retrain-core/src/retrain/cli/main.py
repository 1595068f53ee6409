"""Entry point of the ``retrain`` console script.

``retrain RUN.toml [options]`` runs a job (the hidden default command ``run``); the other
commands are built in (``config``, ``plugins``, ``man``, ``help``, ``init``) or registered by
plugins (kind ``command``, mounted lazily so that ``--help`` imports no plugin code beyond the
entry-point modules). Start-up imports no torch.

Every :class:`retrain.errors.RetrainError` prints as one ``error: ...`` line on stderr, exit 2.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from retrain import __version__
from retrain.errors import RetrainError
from retrain.redaction import redact_text

EXIT_USER_ERROR = 2


def _looks_like_config(arg: str) -> bool:
    return arg.endswith(".toml") or Path(arg).is_file()


class _LazyPluginCommand(TyperCommand):
    """Stands for a plugin's command in ``--help``; the plugin's Typer app is built only when run."""

    def __init__(self, name: str, component: Any) -> None:
        summary = component.summary or f"Command from plugin {component.plugin}."
        panel = None if component.plugin.startswith("builtin.") else "Plugin commands"
        super().__init__(name, help=summary, short_help=summary, rich_help_panel=panel)
        self.component = component

    def materialize(self) -> Any:
        app = self.component.factory()
        if not isinstance(app, typer.Typer):
            raise RetrainError(f'plugin "{self.component.plugin}": command "{self.name}" factory returned '
                               f"{type(app).__name__}, expected a typer.Typer.")
        cmd = typer.main.get_command(app)
        cmd.name = self.name
        return cmd


class RetrainGroup(TyperGroup):
    """Built-in commands, plugin commands (lazy), and ``retrain FILE.toml`` as ``retrain run FILE.toml``."""

    _registry: Any = None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands and _looks_like_config(args[0]):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def _plugin_commands(self) -> dict[str, Any]:
        if RetrainGroup._registry is None:
            from retrain.plugins import load_plugins

            RetrainGroup._registry = load_plugins()
        return {n: c for n, c in RetrainGroup._registry.commands().items() if n not in self.commands}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *sorted(self._plugin_commands())]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and not cmd_name.startswith("-"):
            component = self._plugin_commands().get(cmd_name)
            cmd = _LazyPluginCommand(cmd_name, component) if component is not None else None
        return cmd

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        if isinstance(cmd, _LazyPluginCommand):
            cmd = cmd.materialize()
        return name, cmd, rest


class _RunCommand(TyperCommand):
    """``--resume`` with no value means ``--resume latest``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            fixed.append(arg)
            if arg == "--resume" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                fixed.append("latest")
        return super().parse_args(ctx, fixed)


app = typer.Typer(
    cls=RetrainGroup,
    name="retrain",
    help="RL from verifiable rewards for LLM reasoning models. Run a job with `retrain RUN.toml`.",
    no_args_is_help=True,
    add_completion=False,
    subcommand_metavar="RUN.toml [OPTIONS] | COMMAND [ARGS]...",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"retrain-core {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """RL from verifiable rewards for LLM reasoning models: `retrain RUN.toml` runs a job."""


ConfigArg = Annotated[Path, typer.Argument(help="The run's TOML file.", show_default=False)]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Override [training] seed.")]
WandbOpt = Annotated[Optional[str], typer.Option("--wandb-project", help="Override [logging] wandb_project.")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="SECTION.KEY=VALUE", help="Override any key (repeatable); the value is TOML, e.g. 1e-5, true, [1,2].")]


def overrides_from_cli(seed: int | None, wandb_project: str | None, sets: list[str] | None) -> dict[str, Any]:
    """The ``{"section.key": value}`` overrides of ``--seed``, ``--wandb-project`` and ``--set``."""
    from retrain.config import parse_set

    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["training.seed"] = seed
    if wandb_project is not None:
        overrides["logging.wandb_project"] = wandb_project
    overrides.update(parse_set(list(sets or [])))
    return overrides


@app.command("run", cls=_RunCommand, hidden=True)
def run_command(
    config: ConfigArg,
    seed: SeedOpt = None,
    wandb_project: WandbOpt = None,
    set_: SetOpt = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="[latest|PATH]", help="Continue from the latest checkpoint of this run, or from PATH.")] = None,
) -> None:
    """Run a training job (or a campaign when [campaign] lists seeds or conditions): retrain RUN.toml."""
    from retrain.run_config import is_campaign, load_run_config

    overrides = overrides_from_cli(seed, wandb_project, set_)
    cfg, registry = load_run_config(config, overrides)
    if is_campaign(cfg):
        with _training_extra_hint():
            from retrain.campaign.runner import run_campaign

            code = run_campaign(config, overrides)
        if code:
            raise typer.Exit(code)
        return
    from retrain.distributed.launch import launch, needs_launch, processes

    if needs_launch(cfg.backend.devices):  # "gpu:0,1" / "cpu:2": the same command under torchrun
        from retrain.backends.local import check_devices_present

        check_devices_present(cfg.backend.devices, f"{cfg.source}: [backend] devices")  # before any process starts
        args = [str(config), *(["--seed", str(seed)] if seed is not None else []),
                *(["--wandb-project", wandb_project] if wandb_project else []),
                *[x for kv in (set_ or []) for x in ("--set", kv)], *(["--resume", resume] if resume else [])]
        from retrain.distributed.step import check_batch

        check_batch(cfg.training.batch_size, processes(cfg.backend.devices), f"{cfg.source} [training] batch_size")
        code = launch(cfg.backend.devices, args)
        if code:
            raise typer.Exit(code)
        return
    with _training_extra_hint():
        from retrain.train.runner import train

        train(cfg, registry, config_path=config, resume=resume or cfg.resume.from_ or None)


#: Top-level modules of the ``train`` extra: a missing one means the extra is not installed.
TRAIN_EXTRA_MODULES = {"numpy", "torch", "transformers", "peft", "accelerate", "safetensors", "sympy", "math_verify"}


@contextlib.contextmanager
def _training_extra_hint() -> Iterator[None]:
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        raise RetrainError(f"training needs packages that are not installed ({e}). "
                           f"Install the training extra: pip install 'retrain-core[train]'.") from e


@app.command("config")
def config_command(config: ConfigArg, seed: SeedOpt = None, wandb_project: WandbOpt = None, set_: SetOpt = None,
                   secrets: Annotated[bool, typer.Option("--show-secrets", help="Do not redact keys/tokens.")] = False,
                   ) -> None:
    """Print the resolved config (file + overrides + defaults) as TOML, after validating it."""
    from retrain.run_config import load_run_config

    cfg, _ = load_run_config(config, overrides_from_cli(seed, wandb_project, set_))
    typer.echo(f"# resolved from {config}\n" + cfg.to_toml(redact=not secrets), nl=False)


@app.command("help")
def help_command(section: Annotated[Optional[str], typer.Argument(help="Only this section.")] = None) -> None:
    """Print the full config reference: every section and key, its type, default and meaning."""
    from retrain.cli.reference import config_reference_text
    from retrain.config.schema import SECTIONS
    from retrain.errors import ConfigError, did_you_mean

    if section is not None:
        section = section.strip("[]")
        if section not in SECTIONS:
            hint = did_you_mean(section, SECTIONS)
            raise ConfigError(f"retrain help: unknown section [{section}]."
                              + (f" Did you mean [{hint.split(chr(34))[1]}]?" if hint else
                                 f" Sections: {', '.join(SECTIONS)}."))
    typer.echo(config_reference_text(section), nl=False)


@app.command("init")
def init_command(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("retrain.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter config: every key with its default and a comment saying what it does."""
    from retrain.cli.reference import starter_config

    if path.exists() and not force:
        raise RetrainError(f"{path} already exists; pass --force to overwrite it, or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_config())
    typer.echo(f"wrote {path}; run it with: retrain {path}")


def _register_subapps() -> None:
    from retrain.cli.man import man_command
    from retrain.cli.plugins_cmd import plugins_app

    app.add_typer(plugins_app, name="plugins")
    app.command("man")(man_command)


_register_subapps()


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    from retrain.plugins import PluginLoadWarning

    if issubclass(category, PluginLoadWarning):
        print(f"warning: {redact_text(str(message))}", file=sys.stderr)
    else:
        _default_showwarning(redact_text(str(message)), category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors are one line and exit 2, never a traceback."""
    warnings.showwarning = _show_warning
    from retrain.cli.conflict import conflicting_distribution

    conflict = conflicting_distribution()
    if conflict:
        print(f"error: {conflict}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="retrain", standalone_mode=True)
    except RetrainError as e:
        from retrain.distributed.launch import record_rank_error

        line = "error: " + redact_text(" ".join(str(e).split("\n")))
        if not record_rank_error(line):  # a torchrun rank of `retrain`'s launcher: it prints the line once
            print(line, file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # out of GPU memory: the traceback, then one line and its own exit status
        from retrain.errors import EXIT_OUT_OF_MEMORY, out_of_memory_line

        line = out_of_memory_line(e)
        if line is None:
            raise
        import traceback

        traceback.print_exc()
        print(line, file=sys.stderr)
        sys.exit(EXIT_OUT_OF_MEMORY)


if __name__ == "__main__":  # pragma: no cover
    main()
