"""The manifest: ``manifest.json``, a plain description of how an index was built.

It is written last, so a folder with a manifest is a complete index. Opening
an index reads it back and refuses what this version cannot read or what does
not match the embedder in use.

>>> m = Manifest(embedder={"kind": "fake", "dim": 8, "normalize": True}, factory="Flat", documents=3)
>>> Manifest.from_dict(m.to_dict()) == m
True
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import IndexNotFound, ManifestMismatch
from ..files import fsync_folder
from ..version import __version__
from .layout import MANIFEST_FILE

__all__ = ["Manifest", "FORMAT_VERSION", "format_version_for"]

#: The newest format this version reads. 3: vectors are passages, with ids that encode their document
#: (``passages.id_bits`` > 0; an older reader would take passage ids for document ids). 2: int8 vectors, an
#: OpenVINO embedder, or inverted lists in a separate ``vectors.ivfdata`` file (older readers know neither,
#: so they must refuse them); everything else is still written as 1, so older readers keep working.
FORMAT_VERSION = 3


def format_version_for(embedder: dict[str, Any], on_disk: bool = False, id_bits: int = 0) -> int:
    """The oldest format that describes an index with this embedder (on-disk lists or not, passage ids
    with ``id_bits``) correctly."""
    if id_bits:
        return 3
    return 2 if on_disk or embedder.get("precision") == "int8" or embedder.get("backend") == "openvino" else 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    """What an index folder holds and how it was made.

    ``embedder`` is the embedder's ``config()`` (kind, model, weights_sha256,
    pooling, normalize, max_length, dim). ``factory_requested`` is ``"auto"``
    when semsearch chose the factory. ``reranker`` is the default reranker's
    ``config()`` (model, weights_sha256, max_length, score_kind ``logit`` or
    ``probability``, first_stage_weight), or ``None``. ``lexical`` describes the BM25 side
    (``None``: dense only); ``fusion`` is the hybrid fusion (:class:`semsearch.index.fusion.Fusion`
    as a dict; ``None``: plain RRF); ``build`` holds build timings (seconds per side); ``generation``
    is the document store's generation the vector and BM25 files reflect (see :mod:`semsearch.index.update`).
    ``passages`` says how documents were split (:meth:`semsearch.index.passages.PassageSplitter.config`;
    ``None``: an index from before passages, one per document) and ``vectors`` how many passages the
    vector file holds (``None``: as many as documents).
    """

    embedder: dict[str, Any]
    factory: str
    documents: int
    factory_requested: str = "auto"
    reranker: dict[str, Any] | None = None
    lexical: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None
    build: dict[str, Any] | None = None
    generation: int = 0
    passages: dict[str, Any] | None = None
    vectors: int | None = None
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    semsearch_version: str = __version__
    created: str = field(default_factory=_now)

    @property
    def dim(self) -> int:
        return int(self.embedder["dim"])

    @property
    def vector_count(self) -> int:
        """Vectors (passages) the index holds."""
        return self.documents if self.vectors is None else int(self.vectors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        version = data.get("format_version")
        if not isinstance(version, int):
            raise ManifestMismatch("manifest has no format_version; this is not a semsearch index")
        if version > FORMAT_VERSION:
            raise ManifestMismatch(
                f"index format {version} is newer than this semsearch ({__version__}) reads "
                f"(format {FORMAT_VERSION}); upgrade semsearch"
            )
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise ManifestMismatch(f"manifest is incomplete: {exc}") from None

    def save(self, folder: str | Path) -> None:
        """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
        path = Path(folder) / MANIFEST_FILE
        tmp = path.with_name(f".{MANIFEST_FILE}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_folder(folder)

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST_FILE
        if not Path(folder).is_dir():
            folder = Path(folder)
            previous = sorted(folder.parent.glob(f".{folder.name}.old-*/{MANIFEST_FILE}"))
            hint = (f"; an overwrite was interrupted and left the previous index at {previous[-1].parent} "
                    f"(rename it back to {folder.name})") if previous else ""
            raise IndexNotFound(f"no index at {folder}: folder does not exist{hint}")
        if not path.is_file():
            raise IndexNotFound(f"no index at {folder}: {MANIFEST_FILE} is missing")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestMismatch(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestMismatch(f"{path} is not a JSON object")
        return cls.from_dict(data)
