"""files: how fluxact writes a file the user named (denoise output, built modules, emit -o).

Every file is written whole beside its target and renamed over it at the end:

- the temporary file is created fresh (O_CREAT | O_EXCL | O_NOFOLLOW) under a random name in
  the target's own folder, so a file or link planted under a predictable name is never opened,
  and the rename stays on one file system;
- it is created with mode 0o666 and the kernel takes the umask off, as for open(); a file that
  replaces a regular file gets that file's permission bits instead;
- data are flushed to disk before the rename: readers see the old file or the new one, never
  half of one; a failure removes the temporary file, and a process killed mid-write (SIGKILL)
  leaves the old file untouched and a stray ``.NAME.<random>.tmp`` beside it;
- a link at the target itself is replaced by the new file, never followed.

Why not tempfile.mkstemp: it creates files 0600, and taking the umask off afterwards needs
os.umask(), which sets the process-wide umask to read it (a race with other threads).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: flags of a freshly created file: never an existing file, never through a link
_NEW = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
#: random names tried before giving up (each collision is a file someone else made)
_TRIES = 100


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text is UTF-8 with the newlines it has) to ``path`` atomically."""
    with open_atomic(path) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextmanager
def open_atomic(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content to; renamed over ``path`` when the block
    ends without an exception, removed when it raises."""
    target = Path(path)
    _refuse_folder(target)
    out, tmp = _create_temp(target)
    try:
        with out:
            yield out
            _finish(out, like=target)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # e.g. a full disk: say which file could not be written
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def write_new(path: Path, data: bytes, *, like: Path | None = None) -> None:
    """Create ``path`` (which must not exist; O_EXCL, no link followed) holding ``data``, with
    the permission bits of the regular file ``like`` when there is one, else 0o666 minus the
    umask. For files staged in a private folder and moved into place later."""
    out = os.fdopen(os.open(path, _NEW, 0o666), "wb")
    try:
        with out:
            out.write(data)
            _finish(out, like=like)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def replace(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` (a link there is replaced, not followed)."""
    _refuse_folder(target)
    os.replace(source, target)


def _create_temp(target: Path) -> tuple[BinaryIO, Path]:
    """A new file ``.NAME.<random>.tmp`` beside ``target``, open for writing."""
    stem = target.name[:180]  # room for the random part within NAME_MAX (255)
    for _ in range(_TRIES):
        tmp = target.parent / f".{stem}.{secrets.token_hex(8)}.tmp"
        try:
            return os.fdopen(os.open(tmp, _NEW, 0o666), "wb"), tmp
        except FileExistsError:  # taken (or a planted link): try another name
            continue
        except OSError as exc:  # name the file the user asked for, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(target)) from None
    raise FileExistsError(errno.EEXIST, f"no free temporary name in {target.parent}",
                          str(target))


def _finish(out: BinaryIO, like: Path | None) -> None:
    """Flush ``out`` to disk with the permission bits of the regular file ``like`` (kept when
    a file is replaced; fchmod on the open file, so no link can redirect it)."""
    out.flush()
    if like is not None:
        try:
            st = os.lstat(like)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and hasattr(os, "fchmod"):
            os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode) & 0o777)
    os.fsync(out.fileno())


def _refuse_folder(target: Path) -> None:
    """A folder at the target would only be found at the rename, after all the work."""
    if target.is_dir() and not target.is_symlink():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(target))


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the system allows it (POSIX)."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    try:
        fd = os.open(folder, os.O_RDONLY | flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: torch's compiler reads its cache folder from here (default $TMPDIR/torchinductor_$USER, a
#: name any user can create first: compiled code planted there would run in this process)
INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"


def private_compiler_cache() -> str:
    """Point torch.compile's cache at a folder only this user can write, before fluxact
    compiles anything: $TORCHINDUCTOR_CACHE_DIR where the user set it (their choice), else
    $XDG_CACHE_HOME/fluxact/torchinductor (~/.cache/... by default), created with mode 0700
    and refused unless it is a real folder (no link) owned by this user that no one else can
    write. torch sets the variable itself to its default when it first compiles: that value
    is not a choice, and is replaced. Returns the folder."""
    chosen = os.environ.get(INDUCTOR_CACHE)
    if chosen and os.path.abspath(chosen) != _shared_default():
        return chosen
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    try:
        # a relative XDG_CACHE_HOME is to be ignored (the XDG base directory specification)
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
        folder = base / "fluxact" / "torchinductor"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        uid = os.getuid() if hasattr(os, "getuid") else None
        for part in (folder.parent, folder):
            st = os.lstat(part)
            if (not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid)
                    or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
                raise PermissionError(errno.EPERM, "not a private folder of this user", part)
        for part in folder.parents[1:]:  # above: no one else may rename what is below
            st = os.stat(part)
            if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
                raise PermissionError(errno.EPERM, "a folder every user can write, without "
                                      "the sticky bit, above", part)
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home folder to be found
        from .translator.errors import FluxactError

        where = getattr(exc, "filename", None) or "a private folder"
        why = getattr(exc, "strerror", None) or str(exc)
        raise FluxactError(
            f"cannot use {where} as torch.compile's cache ({why}); set {INDUCTOR_CACHE} to a "
            "folder only you can write") from None
    os.environ[INDUCTOR_CACHE] = str(folder)
    return str(folder)


def _shared_default() -> str | None:
    """torch's own default cache folder (in the shared temporary folder), None if unknown."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return None
    return os.path.abspath(default_cache_dir())
