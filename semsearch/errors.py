"""Typed exceptions raised by semsearch.

Every error a user can cause derives from :class:`SemsearchError`, so callers
can catch one class. The CLI turns these into a one-line message and exit
status 2; the library never exits or prints.
"""

__all__ = ["SemsearchError", "BadInput", "IndexNotFound", "IndexExists", "IndexLocked", "ManifestMismatch",
           "ModelError", "StorageError"]


class SemsearchError(Exception):
    """Base class of every error semsearch raises on purpose."""


class BadInput(SemsearchError, ValueError):
    """Input the user gave is malformed: a corpus file, an option value, a query."""


class IndexNotFound(SemsearchError, FileNotFoundError):
    """No semsearch index at the given path."""


class IndexExists(SemsearchError, FileExistsError):
    """An index already exists where a new one would be written."""


class IndexLocked(SemsearchError):
    """Another process is writing to the index."""


class ManifestMismatch(SemsearchError):
    """An index was built differently from what is being used to read it."""


class ModelError(SemsearchError):
    """A model cannot be loaded or cannot do what was asked of it."""


class StorageError(SemsearchError):
    """Writing an index failed (full disk, I/O error); the message says what state it was left in."""
