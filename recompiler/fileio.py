"""Atomic file writing: an interrupted run never leaves a half-written file.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "x.json")
>>> write_json_atomic(p, {"a": 1}); open(p).read()
'{\\n  "a": 1\\n}\\n'
>>> oct(os.stat(p).st_mode & 0o777) == oct(0o666 & ~current_umask())
True
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from .errors import OutputPathError


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail now, with one clear line, if ``path`` cannot be written by :func:`write_text_atomic`.

    Commands call this before their slow part (a solve, a capture), so a typo in ``--json``
    costs nothing. The folder must exist (it is not created: a mistyped folder is more often a
    mistake than a wish), the target must be a regular file or absent (renaming over
    ``/dev/null`` would replace the device), and a temp file must be creatable beside it.
    """
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"cannot write {path}: it exists and is not a regular file")
    if not parent.exists():
        raise OutputPathError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {path}: {parent} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputPathError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, make_parents: bool = True) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``.

    The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask): mkstemp
    makes its temp file 0600, which would leave plans unreadable to the rest of a team.
    ``make_parents=False`` (the CLI) refuses a missing folder instead of creating it.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), stat.S_IMODE(0o666 & ~current_umask()))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj, *, make_parents: bool = True) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n", make_parents=make_parents)
