"""Write a file so that a reader (or a run resumed after a kill) sees the old file or the new one,
never a half-written one.

The data goes to a hidden temporary file next to the target, is flushed to disk, and then takes
the target's name with :func:`os.replace`, which is atomic on POSIX file systems (and on Windows
within one volume). A process killed while writing leaves the temporary file behind, never a
truncated target; :func:`remove_partial_files` clears such leftovers.
"""
import contextlib
import os
from pathlib import Path
from typing import Iterator, List, Union

# Temporary files are `.<target name>.<pid>.partial`, in the target's folder.
PARTIAL_SUFFIX = '.partial'


def partial_path(path: Union[str, Path]) -> Path:
    """The temporary file this process writes ``path`` through."""
    path = Path(path)
    return path.with_name(f'.{path.name}.{os.getpid()}{PARTIAL_SUFFIX}')


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (not possible, and not needed, on every platform)."""
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


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one step.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path (str | Path): The file to (re)write. Its folder is created if missing.

    Yields:
        Path: Where to write the new content (same folder, so the rename stays atomic).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        with open(tmp, 'rb+') as f:  # the writer may have used its own file object
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def write_bytes_atomically(data: bytes, path: Union[str, Path]) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomically(text: str, path: Union[str, Path], encoding: str = 'utf-8') -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def remove_partial_files(folder: Union[str, Path]) -> List[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns them.

    Only call this where no other process is writing into ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    leftovers = sorted(p for p in folder.glob(f'.*{PARTIAL_SUFFIX}') if p.is_file())
    for leftover in leftovers:
        leftover.unlink()
    return leftovers
