"""The ``semsearch`` command line: one module per command group, on the group in :mod:`.common`.

- :mod:`.index`: index, add, delete, compact, info
- :mod:`.search`: query
- :mod:`.evaluate`: eval, tune, bench
- :mod:`.models`: set-reranker, train-reranker
- :mod:`.label`: label
- :mod:`.serve`: serve (the HTTP API and search page)

Every command imports what it needs when it runs, so ``semsearch --help`` loads no model library.
"""

from __future__ import annotations

from . import evaluate, index, label, models, search, serve  # noqa: F401  (each registers its commands on the group)
from .common import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="semsearch")
