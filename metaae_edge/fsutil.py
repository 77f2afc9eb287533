"""Crash-safe file writes for user outputs (stdlib only; the runtime uses it too).

:func:`atomic_write` writes into a temporary sibling, fsyncs it, gives it the permissions
a plain ``open(path, "w")`` would (``0o666 & ~umask``; ``mkstemp`` alone leaves 0600) and
renames it over the target, so a crash leaves either the old file or the new one, never a
truncated one, and no temporary file behind.

Temporary siblings are named ``.NAME.tmp-PID-HOST-XXXXXXXX`` (``.NAME.old-...`` for a
replaced folder on its way out): the writer's pid and a tag of its host. A process killed
mid-write (``kill -9``) cannot remove its own; the next write to the same target does
(:func:`clean_stale`): siblings of exactly that pattern whose pid is dead on this host,
and older-format or other-host ones (no pid to ask) only when untouched for
:data:`STALE_AGE_S`. A live writer's temporary sibling is never removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import InputError, MetaAEError

__all__ = ["atomic_write", "atomic_path", "atomic_dir", "default_mode", "refuse_special",
           "clean_stale", "make_temp_dir", "temp_prefix", "STALE_AGE_S"]

_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def refuse_special(path: str | Path, error: type[MetaAEError] = InputError) -> None:
    """Refuse a user data path that is (or links to) a FIFO, a device or a socket.

    Called by every reader of user data before it opens anything: ``stat`` never opens
    the file, so a FIFO cannot block and an endless device is never read. Regular files
    and folders pass; a missing path passes too (each reader says so in its own words).

    Args:
        path: the path the user gave (links are followed).
        error: the error class to raise (each reader keeps its own).

    Raises:
        error: one line naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = next((name for test, name in _SPECIAL if test(mode)), "a special file")
    via = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise error(f"{path} is {kind}{via}, not a regular file; pass a regular data file")


def default_mode(base: int = 0o666) -> int:
    """``base & ~umask``: the mode ``open()`` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


#: Temporary siblings without a pid this host can ask about (older metaae-edge, another
#: host sharing the folder) are removed only when untouched this long.
STALE_AGE_S = 24 * 3600
_KINDS = ("tmp", "old")
#: Folders already scanned by this process -> their temporary-looking entries: one scan
#: per folder, so writing many files into one folder stays linear.
_SCANNED: dict[str, list[str]] = {}
_SCAN_CACHE = 256


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(name: str, kind: str = "tmp") -> str:
    """``.NAME.KIND-PID-HOST-``: the prefix of this process's temporary siblings of NAME."""
    return f".{name}.{kind}-{os.getpid()}-{_host_tag()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid we can ask): keep
    return True


def _entries(parent: Path) -> list[str]:
    key = os.path.abspath(parent)
    names = _SCANNED.get(key)
    if names is None:
        try:
            with os.scandir(parent) as it:
                names = [e.name for e in it if e.name.startswith(".") and (
                    ".tmp-" in e.name or ".old-" in e.name)]
        except OSError:
            names = []
        if len(_SCANNED) >= _SCAN_CACHE:
            _SCANNED.clear()
        _SCANNED[key] = names
    return names


def _is_stale(entry: Path, m: re.Match[str], now: float) -> bool:
    try:
        st = os.lstat(entry)
    except OSError:
        return False
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) or st.st_uid != os.getuid():
        return False  # links and other users' files are never ours to remove
    if m.group("pid") and m.group("host") == _host_tag():
        return not _pid_alive(int(m.group("pid")))
    return now - st.st_mtime > STALE_AGE_S


def clean_stale(path: str | Path) -> list[Path]:
    """Remove stale temporary siblings of ``path`` left by killed writers (see the module
    docstring); ``.old-`` ones only while ``path`` itself exists (the swap they were part
    of finished). Never raises.

    Returns:
        The removed paths.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<kind>tmp|old)-"
                         r"(?:(?P<pid>\d{1,10})-(?P<host>[0-9a-f]{6})-)?[a-z0-9_]{8}")
    names = _entries(parent)
    removed, now = [], time.time()
    target_exists = path.exists()
    for name in list(names):
        m = pattern.fullmatch(name)
        if m is None or (m.group("kind") == "old" and not target_exists):
            continue
        entry = parent / name
        if _is_stale(entry, m, now):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            names.remove(name)
            removed.append(entry)
    return removed


def make_temp_dir(path: str | Path, kind: str = "tmp") -> Path:
    """A new, empty temporary sibling folder of ``path`` (``.NAME.KIND-PID-HOST-XXXXXXXX``,
    mode 0700) after cleaning ``path``'s stale ones."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    clean_stale(path)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(path.name, kind), dir=parent))


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mkdir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path to fill; on success it replaces ``path``.

    For writers that want a file name rather than a file object (``save_file``,
    ``PIL.Image.save``). On any exception the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path: the final file.
        mkdir: create the parent directory first.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if mkdir:
        parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the data is on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes | Callable[[IO[Any]], Any], *,
                 encoding: str = "utf-8", mkdir: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically with the user's umask.

    Args:
        path: the file to (re)place.
        data: text (written with ``encoding``), bytes, or a callable given the open
            binary file object to write into (e.g. ``lambda f: np.save(f, arr)``).
        encoding: for text.
        mkdir: create the parent directory first.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    with atomic_path(path, mkdir=mkdir) as tmp, open(tmp, "wb") as f:
        if isinstance(data, str):
            f.write(data.encode(encoding))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            f.write(data)
        else:
            data(f)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary sibling folder to fill; on success it becomes ``path``.

    For outputs that are a whole tree (a model repository): readers see the old tree or
    the new one, never a half-written one. On any exception the temporary folder is
    removed and ``path`` is left as it was. The caller decides beforehand whether an
    existing ``path`` may be replaced; ``replace`` only allows the swap.

    Args:
        path: the final folder.
        replace: move an existing ``path`` aside and delete it after the swap (otherwise
            an existing ``path`` raises ``FileExistsError`` and nothing is written).
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not replace:
        raise FileExistsError(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(path)
    try:
        os.chmod(tmp, default_mode(0o777))  # mkdtemp makes it private (0700)
        yield tmp
        _swap_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_dir(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside first, put back if
    the second rename fails, and deleted after it succeeds."""
    if not (path.exists() or path.is_symlink()):
        os.rename(tmp, path)
        return
    old = make_temp_dir(path, "old")
    try:
        os.rename(path, old / path.name)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old / path.name, path)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
