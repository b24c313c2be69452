"""Files: writing a folder (an index, a model) so that readers see the old one or the new one, never half of
either; where semsearch keeps what it derives (:func:`cache_dir`); fingerprinting a file (:func:`file_sha256`)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_folder", "atomic_write_text", "fsync_folder", "cache_dir", "file_sha256"]

_HASHES_FILE = "file-hashes.json"
_HASHES: dict[str, str] = {}  # "path|size|mtime_ns" -> SHA-256, for this process


def cache_dir() -> Path:
    """Where semsearch keeps what it derives (exported models, their checks, file hashes):
    ``$SEMSEARCH_CACHE``, else ``$XDG_CACHE_HOME/semsearch`` (``~/.cache/semsearch``)."""
    if os.environ.get("SEMSEARCH_CACHE"):
        return Path(os.environ["SEMSEARCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "semsearch"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes. Remembered by path, size and modification time, in the process and in
    ``cache_dir()/file-hashes.json``, so a 90 MB model is read once, not at every start (0.08 s)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if key in _HASHES:
        return _HASHES[key]
    store = cache_dir() / _HASHES_FILE
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict) or not isinstance(known.get(key), str):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        known = known if isinstance(known, dict) else {}
        known[key] = h.hexdigest()
        try:  # replace the file whole; a lost race only means hashing again later
            store.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(store, json.dumps(known, indent=0, sort_keys=True))
        except OSError:
            pass
    _HASHES[key] = known[key]
    return known[key]


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (fsync the folder itself; skipped on file systems that do
    not flush folders)."""
    try:
        _fsync(folder)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, and the folders themselves, to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync(os.path.join(root, name))
        fsync_folder(root)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace the file ``path`` by ``text`` (UTF-8) whole: written beside it, flushed, then renamed over it."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to a plain open()
    try:
        with suppress(OSError):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)  # a replaced file keeps its mode
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


@contextmanager
def atomic_folder(target: str | Path, keep_on_error: Callable[[BaseException], bool] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; when the block ends without error it
    becomes ``target`` (an existing ``target`` is moved aside first and deleted only after the new
    one is in place). Its files are flushed to disk before the rename and the rename after it, so a
    crash or power loss leaves the old folder or the new one. On any error or interruption the
    temporary folder is removed, unless ``keep_on_error(error)`` says to keep it (work a later run reuses).

    Callers decide beforehand whether replacing ``target`` is allowed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
        try:
            tmp.rename(target)
        except OSError:
            if old is not None:
                old.rename(target)
            raise
        try:
            fsync_folder(target.parent)
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        if not (keep_on_error is not None and tmp.exists() and keep_on_error(exc)):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
