"""An index folder written by an older semsearch opens, searches and takes writes unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from semsearch import Document, SearchEngine

FIXTURE = Path(__file__).parent / "fixtures" / "index-0.1.0-f52405f"


def test_index_written_by_0_1_0_opens_and_searches_as_it_did():
    expected = json.loads(FIXTURE.with_name(FIXTURE.name + ".expected.json").read_text())
    engine = SearchEngine.open(FIXTURE)
    assert (len(engine), engine.manifest.format_version) == (6, 1)
    for mode, by_query in expected.items():
        for query, hits in by_query.items():
            got = engine.search(query, k=3, mode=mode)
            assert [h.id for h in got] == [i for i, _ in hits], (mode, query)
            assert [h.score for h in got] == pytest.approx([s for _, s in hits], abs=1e-4), (mode, query)
            assert all(h.passage == h.text and (h.start, h.end) == (0, len(h.text)) for h in got)  # one passage each
    assert engine.store.id_bits == 0 and engine.manifest.passages is None
    engine.close()


def test_index_written_by_0_1_0_takes_writes(tmp_path):
    path = tmp_path / "old"
    shutil.copytree(FIXTURE, path)
    engine = SearchEngine.open(path)
    long = " ".join(["Owls hunt mice at night and sleep by day."] * 60)  # longer than the model reads
    report = engine.add([Document("owl", long, title="Owls")])
    assert report.added == 1 and engine.index.ntotal == 7  # an index from before passages: one per document
    assert engine.store.id_bits == 0 and engine.manifest.format_version == 1  # older versions still read it
    engine.delete(["cars"])
    assert engine.search("birds that hunt at night", k=1)[0].id == "owl"
    assert len(SearchEngine.open(path)) == 6
