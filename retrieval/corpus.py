"""Named corpora on disk: documents → passages → dense index + BM25, built and replaced atomically.

Layout of ``KGNLP_HOME/indexes/NAME/``::

    manifest.json     name, model, dim, counts, index kind, source checksum, build time
    passages.jsonl    one Passage per line (key, id, doc_id, text, offsets, metadata, entities)
    vectors.npy       passage vectors (float32, row i = i-th line of passages.jsonl)
    dense/            FaissIndex
    bm25/             BM25Index

Built-in sources: ``retail`` (Bitext customer-support answers, metadata intent and
category; document ids match the ``retail`` demo graph's Document entities),
``banking77`` (train utterances, metadata intent). Any other corpus reads
``documents.jsonl`` (``{"id", "text", "title"?, "metadata"?}`` per line) from ``--source``.
"""

from __future__ import annotations

import csv
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from kgnlp.errors import ConfigurationError, ConflictError, NotFoundError, StoreError, ValidationError
from kgnlp.files import atomic_dir, recover_dir, sha256_file
from retrieval.chunking import chunk_documents
from retrieval.embedder import Embedder, EmbeddingCache, SentenceEmbedder
from retrieval.graph_context import EntityRanker, ExampleVoter, GraphContext
from retrieval.lexical import BM25Index
from retrieval.retriever import Retriever, RetrieverConfig
from retrieval.types import Document, Passage
from retrieval.vector_index import FaissIndex, IndexKind

__all__ = [
    "CORPUS_NAME",
    "Corpus",
    "as_embedder",
    "build_corpus",
    "corpus_dir",
    "corpus_lock",
    "corpus_revision",
    "link_passages",
    "load_retriever",
    "read_banking77",
    "read_bitext",
    "read_documents",
    "unlink_passages",
    "update_corpus",
]

CORPUS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
REPO_DATA = Path(__file__).resolve().parents[1] / "data"
SEED_TYPES = {"retail": ("Intent", "SupportCategory")}
VOTE_TYPES = {"retail": ("Intent",)}
FORMAT_VERSION = 1


def corpus_dir(home: Path, name: str) -> Path:
    """``home/indexes/NAME`` after validating the name."""
    if not isinstance(name, str) or not CORPUS_NAME.match(name):
        raise ValidationError(f"corpus name must match {CORPUS_NAME.pattern}, got {name!r}")
    return Path(home) / "indexes" / name


def _read_revision(path: Path) -> str | None:
    """The ``revision`` stamped in a corpus folder's manifest (None: absent or unreadable)."""
    try:
        rev = json.loads((Path(path) / "manifest.json").read_text()).get("revision")
    except (OSError, ValueError, AttributeError):
        return None
    return rev if isinstance(rev, str) else None


def corpus_revision(home: Path, name: str) -> str | None:
    """The revision of the built corpus ``name`` now on disk: the pointer that every worker and
    replica polls to notice that another process changed the corpus (None: not built)."""
    return _read_revision(corpus_dir(home, name))


def corpus_lock(home: Path, name: str, timeout_s: float = 120.0) -> FileLock:
    """The cross-process lock that corpus updates hold: two admins on two workers or replicas (one
    ``KGNLP_HOME``) apply their changes one after the other, so neither is lost."""
    path = corpus_dir(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{name}.lock"), timeout=timeout_s)


def as_embedder(model: Any, home: Path | None = None, name: str | None = None) -> Embedder:
    """Wrap a loaded ``SentenceTransformer`` (or a model path) as an ``Embedder``; pass embedders through.

    Args:
        model: An ``Embedder``, a ``SentenceTransformer`` or a model folder.
        home: When given, vectors are cached in ``home/cache/embeddings.sqlite``.
        name: Model name for cache keys (default: derived from the model).

    Returns:
        An embedder.
    """
    if hasattr(model, "embed") and hasattr(model, "dim"):
        return model
    cache = EmbeddingCache(Path(home) / "cache" / "embeddings.sqlite") if home is not None else None
    return SentenceEmbedder(model, name=name, cache=cache)


# ---------------------------------------------------------------------- sources
def read_bitext(path: Path) -> list[Document]:
    """Bitext customer-support answers as documents (one per distinct response).

    Ids follow the ``retail`` demo graph (``cs:faq:<intent>:<n>``, n counting distinct
    responses of the intent in file order) so graph Document entities map to passages.

    Args:
        path: The Bitext CSV.

    Returns:
        Documents with metadata ``intent``, ``category``, ``question``.
    """
    docs: list[Document] = []
    seen: set[str] = set()
    n: Counter[str] = Counter()
    try:
        with Path(path).open(encoding="utf-8", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    intent, cat = row["intent"].strip(), row["category"].strip()
                    resp = row["response"].replace("\r\n", "\n").strip()
                except (KeyError, AttributeError) as e:
                    raise ValidationError(f"{path}:{i}: missing Bitext column {e}") from e
                if not resp or resp in seen:
                    continue
                seen.add(resp)
                n[intent] += 1
                docs.append(
                    Document(
                        f"cs:faq:{intent}:{n[intent]}",
                        resp,
                        metadata={"intent": intent, "category": cat, "question": row.get("instruction", "").strip()},
                        source="bitext customer support (CDLA-Sharing-1.0)",
                    )
                )
    except OSError as e:
        raise NotFoundError(f"cannot read Bitext CSV {path}: {e}") from e
    return docs


def read_banking77(path: Path) -> list[Document]:
    """BANKING77 utterances (``text,category`` CSV) as documents with metadata ``intent``."""
    docs: list[Document] = []
    try:
        with Path(path).open(encoding="utf-8", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                docs.append(
                    Document(
                        f"b77:{i}",
                        row["text"].strip(),
                        metadata={"intent": row["category"]},
                        source="banking77 (CC BY 4.0)",
                    )
                )
    except OSError as e:
        raise NotFoundError(f"cannot read banking77 CSV {path}: {e}") from e
    return docs


def read_documents(path: Path) -> list[Document]:
    """Documents from a JSON-lines file: ``{"id", "text", "title"?, "metadata"?, "source"?}``."""
    docs: list[Document] = []
    ids: set[str] = set()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise NotFoundError(f"cannot read documents {path}: {e}") from e
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            doc = Document(
                str(d["id"]),
                str(d["text"]),
                str(d.get("title", "")),
                dict(d.get("metadata") or {}),
                str(d.get("source", "")),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValidationError(f"{path}:{i}: expected an object with 'id' and 'text': {e}") from e
        if doc.id in ids:
            raise ValidationError(f"{path}:{i}: duplicate document id {doc.id!r}")
        ids.add(doc.id)
        docs.append(doc)
    return docs


def _source_file(name: str, source: Path | None) -> tuple[Path, str]:
    """The file a corpus is built from and its format."""
    if name == "retail":
        cands = (
            [
                Path(source) / "bitext_customer_support.csv",
                Path(source) / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv",
                Path(source) / "Bitext_Sample_Customer_Support_Training_Dataset.csv",
            ]
            if source
            else [
                REPO_DATA / "retail" / "bitext_customer_support.csv",
                REPO_DATA.parent.parent
                / "shared"
                / "data"
                / "bitext_customer_support"
                / "Bitext_Sample_Customer_Support_Training_Dataset.csv",
            ]
        )
        fmt = "bitext"
    elif name == "banking77":
        base = Path(source) if source else REPO_DATA.parent.parent / "shared" / "data"
        cands = [base / "train.csv", base / "banking77" / "train.csv"]
        fmt = "banking77"
    else:
        if source is None:
            raise ConfigurationError(f"corpus {name!r} is not built in; pass --source DIR with documents.jsonl")
        cands = [Path(source) / "documents.jsonl", Path(source)]
        fmt = "jsonl"
    for c in cands:
        if c.is_file():
            return c, fmt
    raise NotFoundError(f"no source for corpus {name!r}; looked for {', '.join(map(str, cands))}")


# ---------------------------------------------------------------------- corpus
class Corpus:
    """Passages with their vectors, dense index and BM25 index (in memory).

    Args:
        name: Corpus name.
        passages: Passages by key.
        vectors: ``(keys, matrix)`` aligned rows.
        dense: The FAISS index.
        lexical: The BM25 index.
        manifest: Build information.
    """

    def __init__(
        self,
        name: str,
        passages: dict[int, Passage],
        vectors: tuple[np.ndarray, np.ndarray],
        dense: FaissIndex,
        lexical: BM25Index,
        manifest: dict[str, Any],
    ) -> None:
        self.name = name
        self.passages = passages
        self.vectors = vectors
        self.dense = dense
        self.lexical = lexical
        self.manifest = manifest

    @classmethod
    def build(
        cls,
        name: str,
        docs: Sequence[Document],
        embedder: Embedder,
        *,
        index_kind: IndexKind = "auto",
        max_words: int = 200,
        overlap: int = 40,
    ) -> Corpus:
        """Chunk, embed and index documents.

        Args:
            name: Corpus name.
            docs: The documents (ids unique).
            embedder: Passage embedder.
            index_kind: FAISS index family (``auto`` chooses by size).
            max_words: Chunk size in words.
            overlap: Chunk overlap in words.

        Returns:
            The corpus (not yet saved).
        """
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            dup = [i for i, c in Counter(ids).items() if c > 1][:5]
            raise ValidationError(f"duplicate document ids in corpus {name!r}: {dup}")
        passages = list(chunk_documents(docs, max_words=max_words, overlap=overlap))
        keys = np.array([p.key for p in passages], dtype=np.int64)
        mat = embedder.embed([p.text for p in passages]) if passages else np.zeros((0, embedder.dim), np.float32)
        dense = FaissIndex(embedder.dim, kind=index_kind, expected_size=len(passages))
        dense.add(keys, mat)
        lexical = BM25Index()
        lexical.add(keys, [p.text for p in passages])
        manifest = {
            "name": name,
            "format": FORMAT_VERSION,
            "model": getattr(embedder, "name", ""),
            "dim": embedder.dim,
            "documents": len(docs),
            "passages": len(passages),
            "index": dense.kind,
            "chunk": {"max_words": max_words, "overlap": overlap},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return cls(name, {p.key: p for p in passages}, (keys, mat), dense, lexical, manifest)

    def add_documents(self, docs: Sequence[Document], embedder: Embedder) -> int:
        """Add (or replace, by id) documents incrementally.

        Returns:
            Number of passages added.
        """
        self.delete_documents([d.id for d in docs])
        start = max(self.passages, default=-1) + 1
        chunk = self.manifest.get("chunk", {})
        new = list(
            chunk_documents(
                docs, max_words=chunk.get("max_words", 200), overlap=chunk.get("overlap", 40), first_key=start
            )
        )
        if not new:
            return 0
        keys = np.array([p.key for p in new], dtype=np.int64)
        mat = embedder.embed([p.text for p in new])
        self.dense.add(keys, mat)
        self.lexical.add(keys, [p.text for p in new])
        self.passages.update({p.key: p for p in new})
        self.vectors = (np.concatenate([self.vectors[0], keys]), np.concatenate([self.vectors[1], mat]))
        self._recount()
        return len(new)

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete documents by id (absent ids are ignored).

        Returns:
            Number of passages removed.
        """
        drop = set(doc_ids)
        keys = [k for k, p in self.passages.items() if p.doc_id in drop]
        if not keys:
            return 0
        self.dense.remove(keys)
        self.lexical.remove(keys)
        for k in keys:
            del self.passages[k]
        mask = ~np.isin(self.vectors[0], np.asarray(keys, dtype=np.int64))
        self.vectors = (self.vectors[0][mask], self.vectors[1][mask])
        self._recount()
        return len(keys)

    def _recount(self) -> None:
        self.manifest["passages"] = len(self.passages)
        self.manifest["documents"] = len({p.doc_id for p in self.passages.values()})

    def save(self, path: Path) -> None:
        """Write the corpus to directory ``path`` atomically (readers see the old or the new one).

        Each save stamps a fresh ``revision`` (and counts ``version`` up): the version pointer
        other processes poll (:func:`corpus_revision`) and the check that a load was not torn.
        """
        self.manifest["version"] = int(self.manifest.get("version", 0)) + 1
        self.manifest["revision"] = uuid.uuid4().hex
        with atomic_dir(Path(path)) as tmp:
            keys, mat = self.vectors
            row = {int(k): i for i, k in enumerate(keys)}
            order = sorted(self.passages)
            with (tmp / "passages.jsonl").open("w", encoding="utf-8") as f:
                for k in order:
                    f.write(json.dumps(self.passages[k].to_json(), ensure_ascii=False) + "\n")
            np.save(tmp / "vectors.npy", mat[[row[k] for k in order]] if order else mat)
            self.dense.save(tmp / "dense")
            self.lexical.save(tmp / "bm25")
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path, *, attempts: int = 5) -> Corpus:
        """Read a corpus written by :meth:`save`.

        Another process may swap in a new version while this one reads the files one by one:
        the manifest's revision is read before and after, and a load that straddled a swap is
        read again (a seqlock), so the result is never a mix of two versions.
        """
        path = Path(path)
        recover_dir(path)  # a build killed mid-swap (non-Linux) leaves the previous copy beside it
        for _ in range(attempts):
            before = _read_revision(path)
            try:
                corpus = cls._load_files(path)
            except StoreError:
                if _read_revision(path) != before:
                    continue  # a file went away under us: a new version is in place, read that one
                raise
            if before is None or (corpus.manifest.get("revision") == before == _read_revision(path)):
                return corpus
        raise StoreError(f"corpus index {path} kept changing while it was read ({attempts} attempts)")

    @classmethod
    def _load_files(cls, path: Path) -> Corpus:
        if not (path / "manifest.json").exists():
            raise NotFoundError(f"no corpus index at {path}")
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            with (path / "passages.jsonl").open(encoding="utf-8") as f:
                passages = [Passage.from_json(json.loads(line)) for line in f if line.strip()]
            mat = np.load(path / "vectors.npy")
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"corpus index {path} is unreadable: {e}") from e
        if len(passages) != len(mat):
            raise StoreError(f"corpus index {path}: {len(passages)} passages but {len(mat)} vectors")
        keys = np.array([p.key for p in passages], dtype=np.int64)
        try:
            dense = FaissIndex.load(path / "dense")
            lexical = BM25Index.load(path / "bm25")
        except (OSError, NotFoundError) as e:  # swapped away mid-read: the seqlock reads again
            raise StoreError(f"corpus index {path} is unreadable: {e}") from e
        return cls(manifest["name"], {p.key: p for p in passages}, (keys, mat), dense, lexical, manifest)

    def retriever(
        self, embedder: Embedder, *, graph: GraphContext | None = None, config: RetrieverConfig | None = None
    ) -> Retriever:
        """A retriever over this corpus.

        Args:
            embedder: Query embedder; must match the corpus dimension.
            graph: Optional graph context.
            config: Fusion settings.

        Returns:
            The retriever.
        """
        if embedder.dim != self.dense.dim:
            raise ConfigurationError(
                f"corpus {self.name!r} was embedded with dim {self.dense.dim} "
                f"({self.manifest.get('model')}), the embedder gives {embedder.dim}"
            )
        return Retriever(
            self.passages,
            embedder,
            self.dense,
            self.lexical,
            vectors=self.vectors,
            graph=graph,
            config=config,
            name=self.name,
        )


def link_passages(passages: Iterable[Passage], store: Any, linker: Any, *, source: str = "") -> int:
    """Record the entities each passage mentions, on the passage and in the graph as ``MENTIONS`` edges.

    Passages whose id is not yet an entity are added as ``Passage`` entities (existing
    entities, such as the retail graph's documents, are left as they are).

    Args:
        passages: Passages to link (their ``entities`` lists are filled in).
        store: The graph store to write to.
        linker: An entity linker over that graph.
        source: Provenance recorded on the edges.

    Returns:
        Number of ``MENTIONS`` edges written.
    """
    from kg.store import Entity, Relation

    plist = list(passages)
    rels: list[Relation] = []
    for p in plist:
        ids = list(dict.fromkeys(m.entity_id for m in linker.link(p.text)))
        p.entities = ids
        rels += [Relation(p.id, "MENTIONS", e, source=source) for e in ids if e != p.id]
    if not rels:
        return 0
    heads = {r.head for r in rels}
    existing = store.get_many(heads)
    new = [
        Entity(p.id, "Passage", "", attributes={"doc_id": p.doc_id}, description=p.text[:300], source=source)
        for p in plist
        if p.id in heads and p.id not in existing
    ]
    store.upsert(new, rels)
    return len(rels)


def build_corpus(
    name: str,
    home: Path,
    embedder: Any,
    source: Path | None = None,
    *,
    force: bool = False,
    graphs: Any = None,
    index_kind: IndexKind = "auto",
) -> dict[str, Any]:
    """Build (or rebuild) the named corpus under ``home/indexes/NAME`` atomically; idempotent.

    Args:
        name: Corpus name (``retail`` and ``banking77`` are built in).
        home: kgnlp home.
        embedder: An ``Embedder``, a loaded ``SentenceTransformer`` or a model folder.
        source: Source folder (default: ``data/retail`` or ``../shared/data``).
        force: Rebuild even when the source and model are unchanged.
        graphs: Optional ``kg.registry.GraphRegistry``; when it holds a graph of the same
            name, passages are linked to its entities and ``MENTIONS`` edges are written.
        index_kind: FAISS index family.

    Returns:
        ``{"corpus", "status": "built"|"unchanged", "documents", "passages", "seconds", "path", ...}``.
    """
    t0 = time.perf_counter()
    path = corpus_dir(home, name)
    src, fmt = _source_file(name, source)
    digest = sha256_file(src)
    emb = as_embedder(embedder, home)
    if not force and (path / "manifest.json").exists():
        try:
            old = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("source_sha256") == digest and old.get("model") == emb.name and old.get("format") == FORMAT_VERSION:
            return {
                "corpus": name,
                "status": "unchanged",
                "documents": old.get("documents"),
                "passages": old.get("passages"),
                "path": str(path),
                "seconds": round(time.perf_counter() - t0, 3),
            }
    docs = read_bitext(src) if fmt == "bitext" else read_banking77(src) if fmt == "banking77" else read_documents(src)
    corpus = Corpus.build(name, docs, emb, index_kind=index_kind)
    corpus.manifest.update({"source": str(src), "source_sha256": digest})
    mentions = 0
    if graphs is not None and graphs.exists(name):
        mentions = link_passages(
            corpus.passages.values(), graphs.get(name), graphs.linker(name), source=f"kgnlp index build --corpus {name}"
        )
        graphs.refresh(name)
    corpus.manifest["mentions"] = mentions
    corpus.save(path)
    return {
        "corpus": name,
        "status": "built",
        "documents": corpus.manifest["documents"],
        "passages": corpus.manifest["passages"],
        "index": corpus.dense.kind,
        "mentions": mentions,
        "path": str(path),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def update_corpus(
    name: str,
    home: Path,
    embedder: Any,
    *,
    add: Sequence[Document] = (),
    delete: Iterable[str] = (),
    graphs: Any = None,
) -> dict[str, Any]:
    """Add (or replace, by id) and delete documents of a built corpus, then save it atomically.

    Runs under the corpus's cross-process lock (:func:`corpus_lock`), so concurrent updates from
    several workers or replicas apply one after the other. When a graph of the same name exists,
    the graph changes in the same operation: the passages that leave (deleted or replaced
    documents) lose their ``Passage`` entities and ``MENTIONS`` edges, and new passages are linked
    (``MENTIONS`` edges) like a full build does. The graph is written before the index is saved:
    a crash in between leaves a passage the graph does not expand to, never deleted text in the
    graph. Readers of the old index keep working; a crash leaves the old or the new one.

    Returns:
        ``{"corpus", "added_passages", "deleted_passages", "documents", "passages", "mentions",
        "unlinked_passages"}``.

    Raises:
        NotFoundError: the corpus is not built.
        ConflictError: the corpus has a graph that this process opened read-only.
    """
    path = corpus_dir(home, name)
    with corpus_lock(home, name):
        if not (path / "manifest.json").exists():
            raise NotFoundError(f"corpus {name!r} is not built (kgnlp index build --corpus {name})")
        store = graphs.get(name) if graphs is not None and graphs.exists(name) else None
        if store is not None and getattr(store, "read_only", False):
            raise ConflictError(
                f"corpus {name!r} is linked to graph {name!r}, which this process opened read-only (several "
                "workers, or another process holds the embedded graph for writing); update the corpus through "
                "a single-worker service that owns the graph, or use Neo4j (KGNLP_GRAPH__BACKEND=neo4j)"
            )
        corpus = Corpus.load(path)
        emb = as_embedder(embedder, home, name=corpus.manifest.get("model") or None)
        leaving = set(delete) | {d.id for d in add}
        gone = [p for p in corpus.passages.values() if p.doc_id in leaving]
        deleted = corpus.delete_documents(delete)
        added = corpus.add_documents(list(add), emb) if add else 0
        mentions = unlinked = 0
        if store is not None:
            unlinked = unlink_passages(gone, store)
            added_ids = {d.id for d in add}  # (a replaced document's passages may reuse freed keys)
            new = [p for p in corpus.passages.values() if p.doc_id in added_ids]
            if new:
                mentions = link_passages(new, store, graphs.linker(name), source=f"admin update of {name}")
            graphs.refresh(name)
        corpus.manifest["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        corpus.save(path)
    return {"corpus": name, "added_passages": added, "deleted_passages": deleted, "mentions": mentions,
            "unlinked_passages": unlinked, "documents": corpus.manifest["documents"],
            "passages": corpus.manifest["passages"]}  # fmt: skip


def unlink_passages(passages: Iterable[Passage], store: Any) -> int:
    """Take passages that leave a corpus out of its graph: their ``Passage`` entities (with the
    text they carry) are deleted, and entities the graph had anyway (the retail graph's documents)
    lose only their ``MENTIONS`` edges.

    Returns:
        Number of passages that were in the graph.
    """
    ids = list(dict.fromkeys(p.id for p in passages))
    if not ids:
        return 0
    present = store.get_many(ids)
    own = [i for i, e in present.items() if e.type == "Passage"]
    for entity_id in own:
        store.delete_entity(entity_id)
    store.delete_relations([i for i in present if i not in own], "MENTIONS")
    return len(present)


def graph_context_for(name: str, store: Any, linker: Any, embedder: Embedder) -> GraphContext:
    """The graph context a corpus uses: linker seeds, embedding seeds over its seed types and,
    where the graph stores example texts for its vote types (intent examples, the questions
    its documents answer), k-NN voting over those examples."""
    ranker = None
    types = SEED_TYPES.get(name)
    if types:
        ents = [e for t in types for e in store.find(type=t, limit=10_000)]
        ranker = EntityRanker(ents, embedder) if ents else None
    vote_types = VOTE_TYPES.get(name)
    voter = ExampleVoter.from_store(store, embedder, entity_types=vote_types) if vote_types else None
    return GraphContext(store, linker, entity_ranker=ranker, example_voter=voter, vote_types=vote_types, graph=name)


def load_retriever(
    name: str,
    home: Path,
    embedder: Any,
    graphs: Any = None,
    config: RetrieverConfig | None = None,
) -> Retriever:
    """Load a built corpus as a retriever (the API lifespan calls this once per corpus).

    Args:
        name: Corpus name.
        home: kgnlp home.
        embedder: An ``Embedder`` or a loaded ``SentenceTransformer``.
        graphs: Optional ``kg.registry.GraphRegistry``; a graph of the same name enables graph modes.
        config: Fusion settings.

    Returns:
        The retriever.

    Raises:
        NotFoundError: the corpus has not been built (the message says how to build it).
    """
    path = corpus_dir(home, name)
    if not (path / "manifest.json").exists():
        raise NotFoundError(
            f"corpus {name!r} is not built under {path.parent} (build it with: kgnlp index build --corpus {name})"
        )
    corpus = Corpus.load(path)
    emb = as_embedder(embedder, home, name=corpus.manifest.get("model") or None)
    graph = None
    if graphs is not None and graphs.exists(name):
        graph = graph_context_for(name, graphs.get(name), graphs.linker(name), emb)
    return corpus.retriever(emb, graph=graph, config=config)
