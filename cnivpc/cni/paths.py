"""Paths a config names (``logFile``, ``dataDir``, ``lockPath``): what such a path may look like,
and the one way the plugins open one.

The plugins run as root and take these paths from whoever wrote the conflist or a Multus
NetworkAttachmentDefinition. So a config path must be absolute, without ``..`` components or
control characters, and at most PATH_MAX bytes (``config_path_problem``, applied by the config
models in ``cni.types`` and the IPAM's). Opening one never follows a symlink in its final
component (O_NOFOLLOW: a planted ``logFile -> /etc/shadow`` must not get our log lines, a
``lockPath`` dangling into ``/etc`` must not create a file there), and a file is refused unless
it is a regular file (a FIFO would block a plugin forever). What we create or open is ours:
files are made 0600 and directories 0700 whatever mode an earlier file had (fchmod after
opening: the umask and a file left by an older version decide nothing). Parent directories
that exist are left as they are (``/var/log`` is not ours); missing ones are created 0700.

Failures are ``UnsafePath`` (code 7, invalid config: the path is the config's), or the OSError
of the system call for anything else. Stdlib only; imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from .errors import InvalidConfig

PATH_MAX = 4096
FILE_MODE = 0o600
DIR_MODE = 0o700


class UnsafePath(InvalidConfig):
    """A config path that is a symlink, not the kind of file expected, or malformed."""


def config_path_problem(value: str) -> str | None:
    """Why ``value`` cannot be a config path, or None."""
    if not value.startswith("/"):
        return "must be an absolute path"
    if len(value.encode(errors="surrogateescape")) > PATH_MAX:
        return f"longer than {PATH_MAX} bytes"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        return "must not contain control characters"
    if ".." in value.split("/"):
        return "must not contain '..'"
    return None


def _refuse_link(path: str, exc: OSError, kind: str) -> UnsafePath | OSError:
    # O_NOFOLLOW on a symlink fails with ELOOP (O_DIRECTORY|O_NOFOLLOW: ENOTDIR on some
    # kernels); lstat tells the two apart from a real loop or a non-directory.
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return UnsafePath(f"{path} is a symbolic link",
                          f"refusing to follow it: point the config at the {kind} itself")
    if kind == "file" and mode and not stat.S_ISREG(mode):
        # A FIFO without a reader fails O_WRONLY|O_NONBLOCK with ENXIO, a socket with ENXIO.
        return UnsafePath(f"{path} is not a regular file", f"it is a {_kind(mode)}")
    if exc.errno == errno.ENOTDIR and kind == "directory":
        return UnsafePath(f"{path} is not a directory")
    return exc


def refuse_symlink(path: str, kind: str) -> None:
    """UnsafePath if ``path`` is a symlink (for readers that cannot open with O_NOFOLLOW,
    such as sqlite); a missing path is fine."""
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return
    if is_link:
        raise UnsafePath(f"{path} is a symbolic link",
                         f"refusing to follow it: point the config at the {kind} itself")


def own_file(path: str, *, create: bool = True) -> None:
    """``open_file``'s checks and modes for a file some library opens itself (sqlite's
    database, -wal and -shm), without keeping or closing an fd of ours on it: closing any fd
    of a file drops every POSIX lock this process holds on it, sqlite's included (a -shm
    whose locks vanish gets truncated under another connection's mmap: SIGBUS). A missing
    file is created 0600 (when ``create``), before sqlite holds locks on it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        if create:
            os.close(open_file(path))
        return
    if stat.S_ISLNK(mode):
        raise UnsafePath(f"{path} is a symbolic link",
                         "refusing to follow it: point the config at the file itself")
    if not stat.S_ISREG(mode):
        raise UnsafePath(f"{path} is not a regular file", f"it is a {_kind(mode)}")
    # lstat said regular file: chmod follows nothing there. Only root can swap it in
    # between, in a 0700 directory of root's. It may be gone by now: sqlite deletes -wal and
    # -shm when another process closes the last connection (and makes new ones with the
    # database's own mode), so a file that vanished is no error (a DEL failed with 999 on it
    # among 16 concurrent DELs).
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)


def make_dirs(path: str) -> None:
    """Create ``path`` and its missing parents, each one 0700; existing ones are left as
    they are (a parent symlink, e.g. /var/run -> /run, is fine: only the last component of
    a config path is refused as a symlink, and only by ``ensure_dir``/``open_file``)."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # a concurrent plugin made it: theirs is 0700 too
        os.chmod(directory, DIR_MODE)  # mkdir's mode went through the umask


def ensure_dir(path: str) -> None:
    """``path`` as a directory of ours: created (with missing parents) 0700, or an existing
    one made 0700; a symlink there is refused (UnsafePath)."""
    make_dirs(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _refuse_link(path, exc, "directory") from exc
    try:
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)


def open_file(path: str, flags: int = os.O_RDWR, *, create: bool = True) -> int:
    """An fd on the regular file ``path`` (O_NOFOLLOW, O_CLOEXEC; with ``create`` O_CREAT and
    missing parent directories 0700), made 0600. A symlink, FIFO, device or directory there
    is refused (UnsafePath) and nothing is written through it."""
    if create:
        make_dirs(os.path.dirname(path) or ".")
        flags |= os.O_CREAT
    try:
        # O_NONBLOCK so that a FIFO planted there cannot block the open; it changes nothing
        # for a regular file, and is cleared below anyway.
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, FILE_MODE)
    except OSError as exc:
        raise _refuse_link(path, exc, "file") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePath(f"{path} is not a regular file",
                             f"it is a {_kind(mode)}: point the config at a file of its own")
        os.set_blocking(fd, True)
        if flags & (os.O_WRONLY | os.O_RDWR):
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"
