"""Trained entity embeddings on disk, next to the graph store, with a FAISS index.

Layout (one folder per model and graph state, written atomically)::

    <graph dir>/embeddings/<model>-<fingerprint>/
        entities.npy      float32 (N, D) entity vectors (complex models: [re | im])
        entity_ids.json   row -> entity id
        relations.json    relation types (index order)
        model.pt          model constructor args + weights (for fold-in)
        index.faiss       IndexIDMap2(IndexFlatIP) over L2-normalised vectors, id = row
        meta.json         model, training config, graph fingerprint, metrics, folded-in ids
    <graph dir>/embeddings/LATEST   name of the newest folder

``fingerprint`` is ``graph_fingerprint(store)`` at training time, so embeddings
of an older graph state are detected (``stale``).
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgnlp.errors import NotFoundError, StoreError, ValidationError
from kgnlp.files import atomic_dir, atomic_write_text

if TYPE_CHECKING:
    from kg.embeddings.models import KGEModel

__all__ = ["EMBEDDINGS_DIR", "EmbeddingArtifact", "SimilarEntity", "find_embeddings", "load_cached"]

EMBEDDINGS_DIR = "embeddings"
LATEST = "LATEST"


@dataclass(frozen=True, slots=True)
class SimilarEntity:
    """A neighbour in embedding space (cosine similarity)."""

    id: str
    score: float


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass(slots=True)
class EmbeddingArtifact:
    """Entity vectors + id map + model weights + metadata; searchable with FAISS.

    Args:
        vectors: ``(N, D)`` float32 entity vectors.
        entity_ids: Entity id of each row.
        relations: Relation types in index order.
        meta: Model name, configs, fingerprint, metrics.
        model_blob: ``torch.save`` bytes of ``{"kind", "model_args", "state"}`` (``None``: no fold-in).
        path: Folder it was loaded from / saved to.
    """

    vectors: np.ndarray
    entity_ids: list[str]
    relations: list[str]
    meta: dict[str, Any]
    model_blob: bytes | None = None
    path: Path | None = None
    _index: Any = field(default=None, repr=False)
    _row: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.entity_ids):
            raise ValidationError(
                f"vectors must be (N, D) with N == len(entity_ids), got {self.vectors.shape} and {len(self.entity_ids)}"
            )
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self._row = {e: i for i, e in enumerate(self.entity_ids)}

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_model(
        cls, model: KGEModel, entity_ids: list[str], relations: list[str], meta: dict[str, Any]
    ) -> EmbeddingArtifact:
        """Capture a trained model's entity vectors and weights.

        Args:
            model: The trained model.
            entity_ids: Entity id per model index.
            relations: Relation types per index.
            meta: Metadata to store (model name, configs, fingerprint, metrics).

        Returns:
            The artifact (not yet saved).
        """
        import torch

        buf = io.BytesIO()
        torch.save(
            {
                "kind": model.kind,
                "model_args": model.constructor_args(),
                "state": {k: v.cpu() for k, v in model.state_dict().items()},
            },
            buf,
        )
        vec = model.entity_vectors().numpy()
        return cls(vec, list(entity_ids), list(relations), dict(meta), buf.getvalue())

    def load_model(self) -> KGEModel:
        """Rebuild the trained model (for fold-in).

        Returns:
            The model in eval mode, on CPU.
        """
        from kg.embeddings.models import RGCNModel, build_model
        from kgnlp.files import load_tensors

        if self.model_blob is None:
            raise NotFoundError("these embeddings were saved without model weights")
        ck = load_tensors(self.model_blob)  # tensors and plain data only: a pickled callable is refused
        args = dict(ck["model_args"])
        n, r, d = args.pop("num_entities"), args.pop("num_relations"), args.pop("dim")
        if ck["kind"] == RGCNModel.kind:
            st = ck["state"]
            args.pop("feature_dim", None)
            args.update(features=st["features"], edge_index=st["edge_index"], edge_type=st["edge_type"])
        model = build_model(ck["kind"], n, r, d, **args)
        model.load_state_dict(ck["state"])
        return model.eval()

    # --- search ---------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """Name of the model that produced the vectors."""
        return str(self.meta.get("model", ""))

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._row

    def vector(self, entity_id: str) -> np.ndarray:
        """The raw vector of an entity (``NotFoundError`` when absent)."""
        i = self._row.get(entity_id)
        if i is None:
            raise NotFoundError(f"entity {entity_id!r} has no embedding")
        return self.vectors[i]

    def index(self) -> Any:
        """The FAISS inner-product index over normalised vectors (built on first use)."""
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def _build_index(self) -> Any:
        try:
            import faiss
        except ImportError as e:  # pragma: no cover - core dependency
            raise StoreError("entity similarity needs 'faiss-cpu'") from e
        idx = faiss.IndexIDMap2(faiss.IndexFlatIP(self.vectors.shape[1]))
        if len(self.vectors):
            idx.add_with_ids(_normalise(self.vectors), np.arange(len(self.vectors), dtype=np.int64))
        return idx

    def similar(self, entity_id: str, k: int = 10) -> list[SimilarEntity]:
        """The ``k`` entities with the most similar vectors (cosine), excluding the entity itself.

        Args:
            entity_id: Query entity.
            k: Number of neighbours (1-1000).

        Returns:
            Neighbours, most similar first.
        """
        if not isinstance(k, int) or not 1 <= k <= 1000:
            raise ValidationError(f"k must be between 1 and 1000, got {k!r}")
        q = _normalise(self.vector(entity_id)[None, :])
        scores, ids = self.index().search(q, min(k + 1, len(self.entity_ids)))
        me = self._row[entity_id]
        out = [
            SimilarEntity(self.entity_ids[i], float(s))
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0 and i != me
        ]
        return out[:k]

    def add(self, vectors: dict[str, np.ndarray]) -> None:
        """Add (fold-in) or replace entity vectors; the index is updated in place."""
        for eid, v in vectors.items():
            v = np.asarray(v, dtype=np.float32).reshape(1, -1)
            if v.shape[1] != self.vectors.shape[1]:
                raise ValidationError(f"vector of {eid!r} has width {v.shape[1]}, expected {self.vectors.shape[1]}")
            i = self._row.get(eid)
            if i is None:
                i = len(self.entity_ids)
                self.entity_ids.append(eid)
                self._row[eid] = i
                self.vectors = np.concatenate([self.vectors, v], 0)
            else:
                self.vectors[i] = v[0]
            if self._index is not None:
                self._index.remove_ids(np.array([i], dtype=np.int64))
                self._index.add_with_ids(_normalise(v), np.array([i], dtype=np.int64))
        folded = set(self.meta.get("folded_in", []))
        folded.update(vectors)
        self.meta["folded_in"] = sorted(folded)

    # --- persistence ----------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the artifact atomically into ``folder`` (replacing it).

        Args:
            folder: Target folder.

        Returns:
            ``folder``.
        """
        import faiss

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            np.save(tmp / "entities.npy", self.vectors)
            (tmp / "entity_ids.json").write_text(json.dumps(self.entity_ids), encoding="utf-8")
            (tmp / "relations.json").write_text(json.dumps(self.relations), encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str), "utf-8")
            if self.model_blob is not None:
                (tmp / "model.pt").write_bytes(self.model_blob)
            faiss.write_index(self.index(), str(tmp / "index.faiss"))
        self.path = folder
        return folder

    @classmethod
    def load(cls, folder: Path, *, with_model: bool = True) -> EmbeddingArtifact:
        """Read an artifact folder written by ``save``.

        Args:
            folder: The folder.
            with_model: Also read ``model.pt`` (needed for fold-in).

        Returns:
            The artifact (FAISS index loaded).
        """
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise NotFoundError(f"no embeddings at {folder}")
        try:
            vec = np.load(folder / "entities.npy")
            ids = json.loads((folder / "entity_ids.json").read_text("utf-8"))
            rels = json.loads((folder / "relations.json").read_text("utf-8"))
            meta = json.loads((folder / "meta.json").read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise StoreError(f"embeddings at {folder} are unreadable: {e}") from e
        blob = (folder / "model.pt").read_bytes() if with_model and (folder / "model.pt").exists() else None
        art = cls(vec, ids, rels, meta, blob, folder)
        if (folder / "index.faiss").exists():
            import faiss

            art._index = faiss.read_index(str(folder / "index.faiss"))
        return art

    def publish(self, graph_dir: Path) -> Path:
        """Save under ``<graph_dir>/embeddings/<model>-<fingerprint>/`` and mark it LATEST.

        Args:
            graph_dir: The graph's folder.

        Returns:
            The artifact folder.
        """
        name = f"{self.model_name}-{self.meta.get('fingerprint', 'unknown')}"
        root = Path(graph_dir) / EMBEDDINGS_DIR
        out = self.save(root / name)
        atomic_write_text(root / LATEST, name + "\n")
        return out


def find_embeddings(graph_dir: Path, model: str | None = None) -> Path:
    """Folder of the newest embeddings of a graph (optionally of one model).

    Args:
        graph_dir: The graph's folder.
        model: Restrict to this model name.

    Returns:
        The artifact folder; ``NotFoundError`` when there is none.
    """
    root = Path(graph_dir) / EMBEDDINGS_DIR
    latest = root / LATEST
    if latest.exists():
        name = latest.read_text("utf-8").strip()
        if name and (root / name / "meta.json").exists() and (model is None or name.startswith(f"{model}-")):
            return root / name
    cands = [p for p in root.glob("*/meta.json") if not p.parent.name.startswith(".")]
    if model is not None:
        cands = [p for p in cands if p.parent.name.startswith(f"{model}-")]
    if not cands:
        raise NotFoundError(f"no embeddings under {root}")
    return max(cands, key=lambda p: p.stat().st_mtime).parent


_CACHE: dict[Path, tuple[float, EmbeddingArtifact]] = {}
_CACHE_LOCK = threading.Lock()


def load_cached(graph_dir: Path) -> EmbeddingArtifact:
    """The LATEST embeddings of a graph, cached until the folder changes (for the API).

    Args:
        graph_dir: The graph's folder.

    Returns:
        The artifact (without model weights).
    """
    folder = find_embeddings(graph_dir)
    stamp = (folder / "meta.json").stat().st_mtime
    key = Path(graph_dir).resolve()
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp and hit[1].path == folder:
            return hit[1]
    art = EmbeddingArtifact.load(folder, with_model=False)
    with _CACHE_LOCK:
        _CACHE[key] = (stamp, art)
    return art
