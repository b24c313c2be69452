"""What changing an index costs: add / re-add / update / delete / compact on SciFact, for Flat, HNSW32 and IVF.

The SciFact corpus minus 100 held-out documents is indexed once (Flat, the default model at its default
precision). HNSW32 and IVF64,Flat copies are made from the stored vectors with `compact` (which
rebuilds the vector index from the store for the factory in the manifest); no text is embedded twice.
Then, for each factory, in this order, each step timed once (wall seconds, 2 cores):

- add the 100 held-out documents (new: embedded by the model);
- add them again unchanged (the embedding cache answers: no model call);
- update the metadata of 100 documents (no model call; the vector index changes in place, or is
  rebuilt for HNSW, which cannot remove);
- delete 100 documents;
- compact (rebuild the vector index and BM25 from the store, drop unused vectors, VACUUM).

    python benchmarks/lifecycle_scifact.py [--data ../shared/datasets/beir/scifact] [--work /tmp/semsearch-lifecycle]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "beir" / "scifact"
FACTORIES = ("Flat", "HNSW32", "IVF64,Flat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/semsearch-lifecycle"))
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "lifecycle.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    from semsearch import SearchEngine, read_corpus
    from semsearch.index.manifest import Manifest

    docs = list(read_corpus(args.data / "corpus.jsonl"))
    base, held = docs[: -args.held_out], docs[-args.held_out:]
    shutil.rmtree(args.work, ignore_errors=True)
    t = time.perf_counter()
    SearchEngine.build(base, args.work / "Flat", factory="Flat")
    results = {"documents": len(base), "held_out": len(held), "build_seconds": time.perf_counter() - t,
               "factories": {}}
    for factory in FACTORIES[1:]:  # the other factories from the stored vectors
        folder = args.work / factory.replace(",", "_")
        shutil.copytree(args.work / "Flat", folder)
        manifest = Manifest.load(folder)
        dataclasses.replace(manifest, factory=factory, factory_requested=factory).save(folder)
        t = time.perf_counter()
        SearchEngine.open(folder).compact()
        results.setdefault("convert_seconds", {})[factory] = time.perf_counter() - t
    for factory in FACTORIES:
        engine = SearchEngine.open(args.work / factory.replace(",", "_"))
        row = {}
        row["add_new"] = _timed(lambda: engine.add(held, progress=False))
        row["add_unchanged"] = _timed(lambda: engine.add(held, progress=False))
        changed = [dataclasses.replace(d, metadata={**d.metadata, "reviewed": True}) for d in base[:100]]
        row["update_metadata"] = _timed(lambda: engine.add(changed, progress=False))
        row["delete"] = _timed(lambda: engine.delete([d.id for d in base[100:200]]))
        row["compact"] = _timed(lambda: engine.compact())
        row["documents_after"] = len(engine)
        hits = engine.search(held[0].text, k=3, mode="dense")
        row["held_out_doc_found_by_its_text"] = hits[0].id == held[0].id
        results["factories"][factory] = row
        print(factory, json.dumps(row, indent=1))
    from machine import machine

    results["machine"] = machine()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "factories"}, indent=1))


def _timed(step) -> dict:
    t = time.perf_counter()
    report = step()
    out = {"seconds": round(time.perf_counter() - t, 3)}
    for key in ("added", "updated", "unchanged", "embedded", "from_cache", "deleted", "bytes_before",
                "bytes_after", "vectors_dropped"):
        if hasattr(report, key):
            out[key] = getattr(report, key)
    return out


if __name__ == "__main__":
    main()
