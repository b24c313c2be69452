"""The index folder on disk: the names of its files, its writer lock, and the checks before writing one.

One module owns the layout, so every reader and writer agrees on it::

    indexes/
      .NAME.lock            the writer lock (``flock``; beside the folder, so a build replacing it holds it too)
      .NAME.tmp-XXXXXXXX/   a build in progress (renamed to NAME when complete; reused if the build was killed)
      NAME/
        manifest.json       written last: how the index was built, and the store generation the files reflect
        vectors.faiss       the FAISS index (``vectors.ivfdata`` beside it for on-disk inverted lists)
        docs.sqlite         the document store: text, metadata, vectors; the source of truth
        lexical/            the BM25 side
        .vectors.faiss.*.tmp, .lexical.*   a writer's temporary files (removed by the next writer)
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import BadInput, IndexExists, IndexLocked, SemsearchError, StorageError

__all__ = ["MANIFEST_FILE", "VECTORS_FILE", "IVFDATA_FILE", "DOCS_FILE", "LEXICAL_DIR", "LOCK_FILE", "check_target",
           "refuse_symlink", "storage_errors", "writer_lock", "remove_temporaries", "folder_size"]

MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.faiss"
#: Inverted lists kept on disk (``merge_ondisk``) live in this file, beside the vector file.
IVFDATA_FILE = "vectors.ivfdata"
DOCS_FILE = "docs.sqlite"
LEXICAL_DIR = "lexical"
LOCK_FILE = ".{name}.lock"  # next to the index folder, so that a build replacing the folder holds it too


def check_target(path: Path, overwrite: bool) -> None:
    """Raise :class:`IndexExists` (or :class:`BadInput` for a symbolic link) unless a new index may be
    written at ``path``."""
    refuse_symlink(path)
    if not path.exists():
        return
    if not path.is_dir() or (any(path.iterdir()) and not (path / MANIFEST_FILE).is_file()):
        raise IndexExists(f"{path} exists and is not a semsearch index; refusing to replace it")
    if (path / MANIFEST_FILE).is_file() and not overwrite:
        raise IndexExists(f"an index already exists at {path}; pass overwrite=True (CLI: --overwrite) to replace it")


def refuse_symlink(path: Path) -> None:
    """Writes replace files by renaming them, which would replace a symbolic link rather than write through it."""
    if path.is_symlink():
        raise BadInput(f"index folder {path} is a symbolic link (to {os.readlink(path)}); give the folder itself "
                       "to write to it")


@contextmanager
def storage_errors(path: Path, state: str) -> Iterator[None]:
    """Turn a failed write (full disk, I/O error) into :class:`StorageError` saying what was kept."""
    import sqlite3

    try:
        yield
    except SemsearchError:
        raise
    except (OSError, sqlite3.OperationalError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StorageError(f"cannot write index {path}: {reason}; {state}") from exc


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the index's writer lock (``.<name>.lock`` beside the folder, taken by builds and writes alike);
    :class:`IndexLocked` if another process holds it."""
    path = Path(path).absolute()  # `.` and `idx` must lock the same file as /abs/idx
    refuse_symlink(path)
    lock = path.parent / LOCK_FILE.format(name=path.name)
    if path.is_dir() and not os.access(path, os.W_OK):
        raise BadInput(f"index folder {path} is read-only; cannot write to it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        raise BadInput(f"index folder {path} is read-only; cannot write to it") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise IndexLocked(f"index {path} is being written by another process (pid {holder}); "
                              "try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_temporaries(path: Path) -> None:
    """Remove what killed writers left behind (temporary vector files, half-swapped BM25 folders)."""
    for leftover in list(path.glob(f".{VECTORS_FILE}.*.tmp")) + list(path.glob(f".{LEXICAL_DIR}.*")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def folder_size(path: str | os.PathLike) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
