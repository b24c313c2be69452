from __future__ import annotations

import pytest

from semsearch import BadInput, Document, IndexNotFound
from semsearch.index.store import DocStore


def test_get_returns_documents_in_requested_order_with_metadata(tmp_path):
    store = DocStore(tmp_path / "d.sqlite", create=True)
    docs = [Document(f"id{i}", f"text {i}", f"title {i}", {"n": i, "tags": ["a", "é"]}) for i in range(2000)]
    store.add(docs, range(2000))
    store.close()
    ro = DocStore(tmp_path / "d.sqlite")
    got = ro.get([1999, 3, 3, 5000, 0])
    assert [d.id if d else None for d in got] == ["id1999", "id3", "id3", None, "id0"]
    assert got[0] == docs[1999] and len(ro) == 2000


def test_duplicate_ids_are_named(tmp_path):
    store = DocStore(tmp_path / "d.sqlite", create=True)
    store.add([Document("a", "x")], [0])
    with pytest.raises(BadInput, match="duplicate document id 'b'"):
        store.add([Document("b", "x"), Document("b", "y")], [1, 2])
    with pytest.raises(BadInput, match="duplicate document id 'a'"):
        store.add([Document("c", "x"), Document("a", "y")], [3, 4])
    assert len(store) == 1  # a failed batch adds nothing


def test_unserialisable_metadata(tmp_path):
    store = DocStore(tmp_path / "d.sqlite", create=True)
    with pytest.raises(BadInput, match="not JSON-serialisable"):
        store.add([Document("a", "x", metadata={"when": object()})], [0])


def test_missing_store_file(tmp_path):
    with pytest.raises(IndexNotFound):
        DocStore(tmp_path / "missing.sqlite")
