"""One error policy: every problem a user can fix is a ``StylenetError``.

Commands catch ``StylenetError`` (and only it), print one ``error:`` line and exit with
``EXIT_ERROR``; anything else is a bug and raises with its traceback. Library messages describe
the problem in the library's own terms; an error may name the parameter it is about
(``option``), and each command maps that name to its own flag or config key.

Exit codes of every command (documented in the README):

- ``0``: success;
- ``1`` (``EXIT_ERROR``): a user error, or some inputs of a folder run failed;
- ``2`` (``EXIT_USAGE``): the command line itself is wrong (argparse's convention);
- ``130`` (``EXIT_INTERRUPTED``): interrupted by Ctrl-C or SIGTERM (128 + SIGINT, the shell's
  convention); temporary files are removed and training can be resumed.
"""

from __future__ import annotations

from collections.abc import Mapping

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class StylenetError(Exception):
    """A problem with the user's input, files or options, never a bug.

    ``option``: the library parameter the problem is about (``"max_size"``), so that a command
    can print its own spelling of it (``--max-size``, ``data.image_size``).
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.option = option

    def __str__(self) -> str:
        return f"{self.option}: {self.message}" if self.option else self.message

    def describe(self, option_names: Mapping[str, str] | None = None) -> str:
        """The message with ``option`` spelled as the calling command spells it."""
        if not self.option:
            return self.message
        name = (option_names or {}).get(self.option, self.option)
        return f"{name}: {self.message}"


# Subclasses also derive from the built-in they used to be, so code written against the earlier
# library (``except ValueError``) keeps working.


class OptionError(StylenetError, ValueError):
    """An option value out of its range."""


class CheckpointError(StylenetError, ValueError):
    """A checkpoint that is missing, unreadable, unsafe or of the wrong kind."""


class ImageReadError(StylenetError, ValueError):
    """An image file that cannot be read."""


class DataError(StylenetError, ValueError):
    """A content data set that cannot be used for training."""


class StyleError(StylenetError, ValueError):
    """A training style (painting) that is missing, unreadable or badly configured."""


class StyleSpecError(StylenetError, ValueError):
    """A style spec at inference (name, index or mix) that does not fit the checkpoint."""


class ImageTooSmallError(StylenetError, ValueError):
    pass


class OutputError(StylenetError, ValueError):
    """An output path that cannot or must not be written."""


class OutputExistsError(OutputError):
    """The output exists and replacing it was not allowed (commands say how to allow it)."""


class LayerNameError(StylenetError, ValueError):
    pass


class VGGWeightsError(StylenetError, RuntimeError):
    pass


class TrainingError(StylenetError, RuntimeError):
    pass


class OptimizeError(StylenetError, RuntimeError):
    pass


class MemoryBudgetError(StylenetError, RuntimeError):
    """A request that would need more memory than the budget allows, even tiled."""


class VideoError(StylenetError, ValueError):
    pass


class BankError(StylenetError, ValueError):
    """A bank operation that does not fit the checkpoint(s): unknown name, duplicate, mismatch."""


class Interrupted(StylenetError):
    """Ctrl-C or SIGTERM. ``exit_code`` 130; the message says how to go on."""


class HTTPProblem(StylenetError):
    """A request the web API refuses: answered with ``status`` (4xx/5xx) and a JSON body naming
    the problem, never a crash of the server."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
