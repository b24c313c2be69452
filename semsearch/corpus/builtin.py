"""The built-in corpus ``builtin:python-docs``: the docstrings of the installed standard library, a real corpus
every machine has (``semsearch index builtin:python-docs``).

>>> next(iter(python_docstrings())).metadata["kind"]          # doctest: +SKIP
'module'
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path
from typing import Iterator

from ..types import Document

__all__ = ["python_docstrings"]


def python_docstrings() -> Iterator[Document]:
    """Docstrings of the installed standard library: modules, and public classes, functions and methods.

    Read with :mod:`ast` (nothing is imported). Tests, IDLE and private modules are skipped.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "pydoc_data", "site-packages"}
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root)
        if any(part in skip or (part.startswith("_") and part != "__init__.py") for part in rel.parts):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        try:
            tree = ast.parse(file.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        seen: set[str] = set()  # a property's setter, or a def under if/else, repeats a name: keep the first
        for doc in _docstrings(tree, module, module):
            if doc.id not in seen:
                seen.add(doc.id)
                yield doc


def _docstrings(node: ast.AST, name: str, module: str) -> Iterator[Document]:
    doc = ast.get_docstring(node)
    if doc:
        kind = type(node).__name__.replace("Def", "").replace("Async", "").lower()
        yield Document(name, doc, title=name, metadata={"module": module, "kind": kind})
    for child in getattr(node, "body", []):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and not child.name.startswith("_"):
            if isinstance(node, (ast.Module, ast.ClassDef)):
                yield from _docstrings(child, f"{name}.{child.name}", module)
