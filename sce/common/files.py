"""Files written whole or not at all.

`atomic_file` writes into a temporary file beside the target (".NAME.XXXXXXXX.tmp": the same
folder, so the final rename never crosses devices), fsyncs it and `os.replace`s it onto the
target, which is atomic on POSIX: a reader sees the previous file or the new one, and a run that
stops midway (an exception, Ctrl-C) leaves the previous file as it was. A process killed outright
(kill -9) leaves its temporary behind; sce.models.checkpointing removes those of checkpoints.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

NEW_FILE_MODE = 0o644  # mkstemp creates 0600; a new output file is readable like any other


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Yield a file object open on a temporary file beside `path`; when the block ends, flush,
    fsync and rename it onto `path` (keeping an existing file's permissions). On an exception
    the temporary is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else NEW_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; not every platform/filesystem opens a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_file", "fsync_dir"]
