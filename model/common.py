"""What every part of Pebble shares: the error a user can cause, paths resolved from the repository, and how a
script turns that error into one line."""
import gc
import os
import sys
from pathlib import Path
from typing import Callable, Union

REPO_ROOT = Path(__file__).resolve().parent.parent
PathLike = Union[str, os.PathLike]


class PebbleError(Exception):
    """A mistake a user can make (bad file, wrong base, bad data): scripts print it as one line and exit."""


def repo_path(path: PathLike) -> Path:
    """Where a path given to a script points, the same from any working directory.

    Absolute and `~` paths are used as given, and so are paths written relative to the working directory: `.`,
    `..`, or starting with `./` or `../`. Any other relative path names the repository's file when the repository
    has one (so the defaults `model`, `out` and `dataset/...` are always the repository's), else the working
    directory's when that has one, else a new file under the repository root.
    """
    text = os.fspath(path)
    given = Path(text).expanduser()
    if given.is_absolute() or text in (".", "..") or text.startswith(("./", "../")):
        return given
    for candidate in (REPO_ROOT / given, given):
        if candidate.exists():
            return candidate
    return REPO_ROOT / given


def run_cli(main: Callable[[], None]) -> None:
    """Run a script's main; a user's mistake (PebbleError) ends as one line on stderr and exit code 1.

    After main, the objects alive are frozen out of the garbage collector's reach (gc.freeze), so that the
    interpreter does not walk them all once more as it exits (with torch imported there are many)."""
    try:
        main()
    except PebbleError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted")
    gc.freeze()
