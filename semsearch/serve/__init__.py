"""Stage on top — ``semsearch serve``: the HTTP API and search page over served indexes and labellers.

- :mod:`.app`: the FastAPI app (:func:`create_app`), its routes and error translation
- :mod:`.served`: one served index: the search worker (micro-batching) and one writer at a time
- :mod:`.shared`: the bi-encoder shared by a served index's reader and writer
- :mod:`.labelers`: labellers served by name
- :mod:`.schemas`, :mod:`.limits`: request bodies and the boundary's guards
- ``page.html``: the search page (one self-contained file)

Needs the ``serve`` extra (``pip install 'semsearch[serve]'``); nothing here is imported by the
library below it.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
