"""Command-line entry points: one module per command, one error policy for all.

Every command is a console script (``stylenet-train``, ``stylenet-stylize``, ...), a subcommand
of ``stylenet`` (``stylenet stylize ...``) and ``python -m stylenet <command>``. Each module has
``main(argv) -> exit code``; ``run_command`` below wraps it with the policy of
``stylenet.errors``: a ``StylenetError`` prints one ``error:`` line (with the command's own
spelling of the option it is about) and exits 1; Ctrl-C or SIGTERM removes temporary files,
prints one line and exits 130; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping

from stylenet.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
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

# Extra advice a command adds to some errors, by error class.
DEFAULT_HINTS: dict[type, str] = {OutputExistsError: "pass --overwrite to replace it"}


def setup_logging(verbose: bool = False) -> None:
    """Messages of the package's loggers on stderr, without timestamps (commands are short)."""
    logger = logging.getLogger("stylenet")
    if not logger.handlers:
        h = logging.StreamHandler(sys.stderr)
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
    from stylenet import signals
    from stylenet.files import TEMP_FILES

    setup_logging()
    # Ctrl-C and SIGTERM (kill, a job scheduler) stop the command at its next safe point, where
    # ``finally`` blocks and the temporary-file registry clean up (stylenet.signals). Training
    # leaves both to Python and Lightning, which checkpoint first (handle_signals=False).
    previous = signals.install() if handle_signals else {}
    try:
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
    if name == "train":  # Hydra reads sys.argv itself
        sys.argv = [f"stylenet {name}", *rest]
        return module.main()
    return module.main(rest)


def entry() -> None:
    sys.exit(main())
