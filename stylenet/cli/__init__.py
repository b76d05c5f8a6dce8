"""Command-line entry points: one module per command, one error policy for all.

Every command is a console script (``stylenet-train``, ``stylenet-stylize``, ...), a subcommand
of ``stylenet`` (``stylenet stylize ...``) and ``python -m stylenet <command>``. Each module has
``main(argv) -> exit code``; ``run_command`` below wraps it with the policy of
``stylenet.errors``: a ``StylenetError`` prints one ``error:`` line (with the command's own
spelling of the option it is about) and exits 1; Ctrl-C or SIGTERM removes temporary files,
prints one line and exits 130; any other exception is a bug and keeps its traceback.

May import: ``stylenet.errors``, ``stylenet.io``, ``stylenet.runtime``, ``stylenet.nn``,
``stylenet.losses``, ``stylenet.data``, ``stylenet.checkpoints``, ``stylenet.inference``,
``stylenet.optimization``, ``stylenet.training``, ``stylenet.evaluation``, ``stylenet.serve``,
``stylenet.bench``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from stylenet.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Interrupted,
    OutputExistsError,
    StylenetError,
)

COMMANDS = {
    "train": "train a network or a bank (Hydra overrides)",
    "stylize": "apply a style or mix to an image, a folder or a video",
    "optimize": "per-image optimization (Gatys et al.), the quality reference",
    "export": "export a checkpoint to ONNX, TorchScript or safetensors",
    "evaluate": "quality report of a checkpoint on held-out photos",
    "bench": "speed benchmarks (and the one-command GPU suite)",
    "bank": "list, rename, remove, reorder and merge the styles of a bank",
    "serve": "web page and HTTP API",
    "weights": "fetch and cache the VGG16 weights the losses need",
}

# Commands configured by Hydra: they read their overrides from ``sys.argv`` themselves.
HYDRA_COMMANDS = frozenset({"train", "optimize"})

# Extra advice a command adds to some errors, by error class.
DEFAULT_HINTS: dict[type, str] = {OutputExistsError: "pass --overwrite to replace it"}


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a message comes (a progress bar
    or a test may have replaced it since the handler was made)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def setup_logging(verbose: bool = False) -> None:
    """Messages of the package's loggers on stderr, without timestamps (commands are short)."""
    logger = logging.getLogger("stylenet")
    if not logger.handlers:
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(h)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{dest: "--flag"}`` for every option of a parser: library errors name parameters by
    their Python name, which is the dest of the flag that sets them."""
    out = {}
    for a in parser._actions:
        longs = [s for s in a.option_strings if s.startswith("--")]
        if longs:
            out[a.dest] = longs[0]
    return out


def error_line(
    e: StylenetError, option_names: Mapping[str, str] | None, hints: Mapping[type, str]
) -> str:
    hint = next((h for cls, h in hints.items() if isinstance(e, cls)), None)
    text = e.describe(option_names)
    return f"error: {text}; {hint}" if hint else f"error: {text}"


def argparse_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    body: Callable[[argparse.Namespace], int],
    **run_options: bool,
) -> Callable[[list[str] | None], int]:
    """The ``main(argv)`` of an argparse command: parse, then run ``body(args)`` under the error
    policy, with errors naming the command's own flags."""

    def main(argv: list[str] | None = None) -> int:
        parser = build_parser()
        args = parser.parse_args(argv)
        return run_command(lambda: body(args), flag_names(parser), **run_options)

    return main


def run_command(
    body: Callable[[], int],
    option_names: Mapping[str, str] | None = None,
    hints: Mapping[type, str] | None = None,
    handle_signals: bool = True,
) -> int:
    """Run a command's body under the error policy and return its exit code."""
    from stylenet.io.files import TEMP_FILES
    from stylenet.runtime import signals
    from stylenet.runtime.device import check_torch_pair

    setup_logging()
    # Ctrl-C and SIGTERM (kill, a job scheduler) stop the command at its next safe point, where
    # ``finally`` blocks and the temporary-file registry clean up (stylenet.runtime.signals). Training
    # leaves both to Python and Lightning, which checkpoint first (handle_signals=False).
    previous = signals.install() if handle_signals else {}
    try:
        check_torch_pair()  # a mismatched torchvision fails on import with a cryptic message
        code = int(body() or 0)
        signals.check()  # a stop requested during the last step still counts as one
        return code
    except Interrupted as e:
        TEMP_FILES.remove_all()
        print(f"interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StylenetError as e:
        TEMP_FILES.remove_all()
        print(error_line(e, option_names, {**DEFAULT_HINTS, **(hints or {})}), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of our output went away (``stylenet-bank info x.pt | head``): no traceback.
        # stdout goes to devnull so that Python's flush at exit does not raise again (the
        # recipe of the Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Files being written are removed here or by the writer's own clean-up while unwinding;
        # finished outputs stay (a folder run skips them when rerun).
        TEMP_FILES.remove_all()
        print("interrupted (partial outputs removed)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signals.restore(previous)


def hydra_usage_problem(argv: list[str], config_dir: Path, config_name: str) -> str | None:
    """What is wrong with a Hydra command line, in one line (or None): an override that does not
    parse, a key that is not in the config, a config group option that does not exist. Hydra
    reports these as several lines and exits 1; a wrong command line exits 2 here, like every
    argparse command. The overrides are composed once up front, exactly as the run will."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException, MissingConfigException

    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # argparse has printed its usage line already
        return "see --help for the options"
    if args.help or args.hydra_help or args.cfg or args.info or args.multirun:
        return None  # Hydra's own modes: left to Hydra (a sweep composes each job itself)
    overrides = list(args.overrides)
    if args.config_dir:
        extra = Path(args.config_dir).expanduser().resolve()
        overrides.append(f"hydra.searchpath=[file://{extra}]")
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            compose(args.config_name or config_name, overrides=overrides)
    except MissingConfigException as e:
        missing = str(e).splitlines()[0].split("Could not find ")[-1].strip("'")
        group, _, option = missing.partition("/")
        options = ", ".join(getattr(e, "options", None) or [])
        return f"{group}={option}: no such option" + (f"; available: {options}" if options else "")
    except HydraException as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "hydra.cc" not in ln]
        key = re.match(r"Could not override '([^']+)'", lines[0]) if lines else None
        if key:
            value = next((o.split("=", 1)[1] for o in args.overrides
                          if o.split("=", 1)[0] == key.group(1)), "...")  # fmt: skip
            return (f"{key.group(1)}: no such key in the config (a new key is added with "
                    f"+{key.group(1)}={value})")  # fmt: skip
        return "bad override: " + "; ".join(lines[:2])
    return None


def main(argv: list[str] | None = None) -> int:
    """``stylenet <command> [args]``: the umbrella over every command."""
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: stylenet <command> [options]   (stylenet <command> --help for each)", ""]
        lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
        print("\n".join(lines))
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from stylenet import __version__

        print(f"stylenet {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"stylenet.cli.{name}")
    if name in HYDRA_COMMANDS:  # Hydra reads sys.argv itself
        sys.argv = [f"stylenet {name}", *rest]
        return module.main()
    return module.main(rest)


def hydra_main(config_dir: Path, config_name: str, run: Callable) -> int:
    """The ``main()`` of a Hydra command: check the command line (exit 2 with one line when it is
    wrong), then hand it to Hydra, which calls ``run(cfg)`` (returning an exit code) per job."""
    import hydra

    from stylenet.runtime.hydra import launch_argv

    argv, notes = launch_argv(sys.argv[1:], config_name)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    sys.argv = [sys.argv[0], *argv]
    problem = hydra_usage_problem(sys.argv[1:], config_dir, config_name)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    code = {"value": 0}

    @hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
    def _main(cfg) -> None:  # noqa: ANN001
        # In a --multirun sweep a failed job does not stop the others; the exit code is the
        # worst of them.
        code["value"] = max(code["value"], run(cfg))

    _main()
    return code["value"]


def entry() -> None:
    sys.exit(main())
