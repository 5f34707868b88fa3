"""Vector indexes with stable integer ids: FAISS (flat, HNSW, IVF, IVF-PQ) and an exact numpy reference.

Vectors are unit-norm and scored by inner product (cosine). Ids are caller-chosen
int64 keys that survive add/remove/update and save/load. FAISS is imported lazily.

HNSW graphs cannot delete nodes, so the FAISS HNSW variant marks removed slots
as tombstones and filters them at search time (oversampling to keep ``k`` results);
``compact()`` rebuilds without them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np

from kgnlp.errors import ConfigurationError, StoreError, ValidationError
from kgnlp.files import atomic_dir

__all__ = ["ExactIndex", "FaissIndex", "IndexKind", "VectorIndex", "choose_kind", "load_index"]

IndexKind = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
FLAT_MAX = 50_000
HNSW_MAX = 1_000_000


@runtime_checkable
class VectorIndex(Protocol):
    """Add/remove/search/save with stable int64 ids."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new keys; raise ``ValidationError`` when a key exists."""
        ...

    def remove(self, keys: Sequence[int] | np.ndarray) -> int:
        """Remove keys (absent ones are ignored); return how many were removed."""
        ...

    def update(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Replace (or insert) the vectors of ``keys``."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, keys)``, both ``(nq, k)``, best first, padded with ``-inf``/``-1``."""
        ...

    def keys(self) -> np.ndarray:
        """Return the live keys (sorted)."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to directory ``path`` atomically."""
        ...


def choose_kind(n: int, kind: IndexKind = "auto") -> str:
    """Pick a FAISS index family for ``n`` vectors.

    Args:
        n: Expected corpus size.
        kind: A fixed kind, or ``auto``: flat below 50k vectors, HNSW below 1M, IVF above.

    Returns:
        ``flat``, ``hnsw``, ``ivf`` or ``ivfpq``.
    """
    if kind not in _KINDS:
        raise ConfigurationError(f"index kind must be one of {_KINDS}, got {kind!r}")
    if kind != "auto":
        return kind
    return "flat" if n < FLAT_MAX else "hnsw" if n < HNSW_MAX else "ivf"


def _as_keys(keys: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(keys, dtype=np.int64).reshape(-1)
    if arr.size and arr.min() < 0:
        raise ValidationError(f"index keys must be >= 0, got {int(arr.min())}")
    if len(np.unique(arr)) != len(arr):
        raise ValidationError("index keys must be unique within one call")
    return arr


def _as_vectors(vectors: np.ndarray, dim: int, n: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValidationError(f"vectors must have shape (n, {dim}), got {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise ValidationError(f"got {x.shape[0]} vectors for {n} keys")
    if not np.isfinite(x).all():
        raise ValidationError("vectors contain NaN or infinite values")
    return x


class ExactIndex:
    """Brute-force inner-product search in numpy: the reference every FAISS index is tested against.

    Args:
        dim: Vector dimension.
    """

    kind = "exact"

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ConfigurationError(f"dim must be >= 1, got {dim!r}")
        self.dim = dim
        self._keys = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, dim), dtype=np.float32)
        self._pos: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new keys."""
        k = _as_keys(keys)
        x = _as_vectors(vectors, self.dim, len(k))
        dup = [int(i) for i in k if int(i) in self._pos]
        if dup:
            raise ValidationError(f"keys already in the index: {dup[:5]}")
        base = len(self._keys)
        self._keys = np.concatenate([self._keys, k])
        self._vecs = np.concatenate([self._vecs, x])
        self._pos.update({int(key): base + i for i, key in enumerate(k)})

    def remove(self, keys: Sequence[int] | np.ndarray) -> int:
        """Remove keys; return how many existed."""
        drop = {int(i) for i in np.asarray(keys, dtype=np.int64).reshape(-1)} & self._pos.keys()
        if not drop:
            return 0
        mask = ~np.isin(self._keys, np.fromiter(drop, dtype=np.int64))
        self._keys, self._vecs = self._keys[mask], self._vecs[mask]
        self._pos = {int(key): i for i, key in enumerate(self._keys)}
        return len(drop)

    def update(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Replace or insert the vectors of ``keys``."""
        k = _as_keys(keys)
        x = _as_vectors(vectors, self.dim, len(k))
        self.remove(k)
        self.add(k, x)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` by inner product."""
        q = _as_vectors(queries, self.dim)
        nq = q.shape[0]
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        keys = np.full((nq, k), -1, dtype=np.int64)
        n = len(self._keys)
        if n == 0 or k < 1:
            return scores, keys
        sims = q @ self._vecs.T
        kk = min(k, n)
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (nq, 1))
        part = np.take_along_axis(sims, top, axis=1)
        # ties broken by key so results are deterministic
        order = np.lexsort((self._keys[top], -part), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        scores[:, :kk] = np.take_along_axis(sims, top, axis=1)
        keys[:, :kk] = self._keys[top]
        return scores, keys

    def keys(self) -> np.ndarray:
        """Live keys, sorted."""
        return np.sort(self._keys)

    def vector(self, key: int) -> np.ndarray:
        """Return the stored vector of ``key``."""
        return self._vecs[self._pos[int(key)]].copy()

    def save(self, path: Path) -> None:
        """Write ``keys.npy``/``vectors.npy``/``meta.json`` into directory ``path`` atomically."""
        with atomic_dir(Path(path)) as tmp:
            np.save(tmp / "keys.npy", self._keys)
            np.save(tmp / "vectors.npy", self._vecs)
            (tmp / "meta.json").write_text(json.dumps({"kind": "exact", "dim": self.dim}))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        meta = _read_meta(path)
        idx = cls(int(meta["dim"]))
        keys = np.load(path / "keys.npy")
        if len(keys):
            idx.add(keys, np.load(path / "vectors.npy"))
        return idx


class FaissIndex:
    """A FAISS index with stable int64 ids, inner-product metric.

    Flat and HNSW indexes are wrapped in ``IndexIDMap2``; IVF indexes store the ids in
    their inverted lists themselves (``IndexIDMap`` cannot remove from them correctly).

    Args:
        dim: Vector dimension.
        kind: ``flat`` (exact), ``hnsw``, ``ivf`` (IVF-Flat) or ``ivfpq`` (IVF-PQ: compressed, approximate scores);
            ``auto`` picks by ``expected_size`` (see :func:`choose_kind`).
        expected_size: Corpus size used by ``auto`` and to size IVF lists.
        nlist: IVF lists (default ``4 * sqrt(expected_size)``, within 16..65536).
        nprobe: IVF lists searched per query.
        hnsw_m: HNSW neighbours per node.
        ef_search: HNSW search breadth.
        ef_construction: HNSW build breadth.
        pq_m: PQ sub-quantizers for ``ivfpq`` (must divide ``dim``).
        use_gpu: ``auto`` uses faiss-gpu when it is installed and sees a GPU; ``never`` disables it.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: IndexKind = "auto",
        expected_size: int = 0,
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 80,
        pq_m: int | None = None,
        use_gpu: Literal["auto", "never"] = "auto",
    ) -> None:
        if dim < 1:
            raise ConfigurationError(f"dim must be >= 1, got {dim!r}")
        self.dim = dim
        self.kind = choose_kind(expected_size, kind)
        self.nlist = nlist or int(min(65536, max(16, 4 * int(np.sqrt(max(expected_size, 1))))))
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.pq_m = pq_m or _default_pq_m(dim)
        if self.kind == "ivfpq" and dim % self.pq_m:
            raise ConfigurationError(f"pq_m must divide dim={dim}, got {self.pq_m}")
        if use_gpu not in ("auto", "never"):
            raise ConfigurationError(f"use_gpu must be 'auto' or 'never', got {use_gpu!r}")
        self.use_gpu = use_gpu
        self._index: Any = None  # IndexIDMap2, built on first add (IVF needs training data)
        self._dead: set[int] = set()  # HNSW tombstones: internal slots of removed/updated vectors
        self._live: dict[int, int] = {}  # key -> internal slot (HNSW only)
        self._keyset: set[int] = set()  # live keys (flat, IVF)
        self._gpu: Any = None

    # ------------------------------------------------------------------ building
    def _new_index(self, train: np.ndarray) -> Any:
        faiss = _faiss()
        ip = faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, ip)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        else:
            nlist = min(self.nlist, max(1, len(train) // 39))  # FAISS wants ~39 points per centroid
            quantizer = faiss.IndexFlatIP(self.dim)
            if self.kind == "ivf":
                inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, ip)
            else:
                inner = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, 8, ip)
            sample = train
            if len(train) > 256 * nlist:
                rng = np.random.default_rng(0)
                sample = train[rng.choice(len(train), 256 * nlist, replace=False)]
            inner.train(sample)
            inner.nprobe = min(self.nprobe, nlist)
            self.nlist = nlist
        if self.kind in ("ivf", "ivfpq"):
            # IVF lists store the ids themselves (and IndexIDMap's remove assumes compacting sub-indexes)
            return inner
        return faiss.IndexIDMap2(inner)  # the SWIG wrapper keeps ``inner`` alive

    def _inner(self) -> Any:
        return _faiss().downcast_index(self._index.index)

    def __len__(self) -> int:
        if self._index is None:
            return 0
        return int(self._index.ntotal) - len(self._dead)

    def _id_array(self) -> np.ndarray:
        faiss = _faiss()
        if self.kind in ("ivf", "ivfpq"):
            ivf = faiss.extract_index_ivf(self._index)
            lists = ivf.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(ivf.nlist)
                if lists.list_size(i)
            ]
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _contains(self, keys: np.ndarray) -> list[int]:
        if self._index is None:
            return []
        if self.kind == "hnsw":
            return [int(k) for k in keys if int(k) in self._live]
        return [int(k) for k in keys if int(k) in self._keyset]

    def add(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new keys (the first add of an IVF index trains it on these vectors).

        Args:
            keys: Unique non-negative int64 keys not yet in the index.
            vectors: ``(n, dim)`` unit-norm float32 vectors.
        """
        k = _as_keys(keys)
        x = _as_vectors(vectors, self.dim, len(k))
        if not len(k):
            return
        dup = self._contains(k)
        if dup:
            raise ValidationError(f"keys already in the index: {dup[:5]}")
        try:
            if self._index is None:
                self._index = self._new_index(x)
            base = int(self._index.ntotal)
            self._index.add_with_ids(x, k)
        except RuntimeError as e:
            raise StoreError(f"FAISS add failed: {e}") from e
        if self.kind == "hnsw":
            self._live.update({int(key): base + i for i, key in enumerate(k)})
        else:
            self._keyset.update(k.tolist())
        self._gpu = None

    def remove(self, keys: Sequence[int] | np.ndarray) -> int:
        """Remove keys (absent ones are ignored).

        Returns:
            How many keys were removed.
        """
        k = np.asarray(keys, dtype=np.int64).reshape(-1)
        if self._index is None or not len(k):
            return 0
        self._gpu = None
        if self.kind == "hnsw":
            n = 0
            for key in k:
                slot = self._live.pop(int(key), None)
                if slot is not None:
                    self._dead.add(slot)
                    n += 1
            return n
        present = np.array([x for x in k.tolist() if x in self._keyset], dtype=np.int64)
        if not len(present):
            return 0
        n = int(self._index.remove_ids(present))
        self._keyset.difference_update(present.tolist())
        return n

    def update(self, keys: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Replace (or insert) the vectors of ``keys``."""
        k = _as_keys(keys)
        x = _as_vectors(vectors, self.dim, len(k))
        self.remove(k)
        self.add(k, x)

    def keys(self) -> np.ndarray:
        """Live keys, sorted."""
        if self._index is None:
            return np.zeros(0, dtype=np.int64)
        live = self._live if self.kind == "hnsw" else self._keyset
        return np.sort(np.fromiter(live, dtype=np.int64, count=len(live)))

    def compact(self) -> None:
        """Rebuild an HNSW index without its tombstones (no-op for other kinds)."""
        if self.kind != "hnsw" or not self._dead or self._index is None:
            return
        slots = np.fromiter(self._live.values(), dtype=np.int64)
        keys = np.fromiter(self._live.keys(), dtype=np.int64)
        vecs = np.stack([self._inner().reconstruct(int(s)) for s in slots]) if len(slots) else None
        self._index, self._dead, self._live = None, set(), {}
        if vecs is not None:
            self.add(keys, vecs)

    # ------------------------------------------------------------------ search
    def _searcher(self) -> Any:
        if self.use_gpu == "never" or self.kind == "hnsw":
            return self._index
        if self._gpu is None:
            faiss = _faiss()
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                self._gpu = faiss.index_cpu_to_all_gpus(self._index)
            else:
                self._gpu = self._index
        return self._gpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate (exact for ``flat``) top-``k`` by inner product.

        Args:
            queries: ``(nq, dim)`` unit-norm vectors.
            k: Results per query.

        Returns:
            ``(scores, keys)``, ``(nq, k)`` each, best first, padded with ``-inf``/``-1``.
        """
        q = _as_vectors(queries, self.dim)
        nq = q.shape[0]
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        keys = np.full((nq, k), -1, dtype=np.int64)
        if self._index is None or len(self) == 0 or k < 1:
            return scores, keys
        if self.kind == "hnsw" and self._dead:
            return self._search_hnsw_tombstoned(q, k)
        kk = min(k, len(self))
        try:
            d, i = self._searcher().search(q, kk)
        except RuntimeError as e:
            raise StoreError(f"FAISS search failed: {e}") from e
        ok = i >= 0
        scores[:, :kk] = np.where(ok, d, -np.inf)
        keys[:, :kk] = i
        return scores, keys

    def _search_hnsw_tombstoned(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        inner = self._inner()
        ids = self._id_array()
        want = min(int(inner.ntotal), k + len(self._dead))
        inner.hnsw.efSearch = max(self.ef_search, want)
        try:
            d, slots = inner.search(q, want)
        finally:
            inner.hnsw.efSearch = self.ef_search
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        keys = np.full((len(q), k), -1, dtype=np.int64)
        for r in range(len(q)):
            c = 0
            for s, sc in zip(slots[r], d[r], strict=True):
                if s < 0 or int(s) in self._dead:
                    continue
                scores[r, c], keys[r, c] = sc, ids[s]
                c += 1
                if c == k:
                    break
        return scores, keys

    def set_nprobe(self, nprobe: int) -> None:
        """Change how many IVF lists a search visits (recall/speed trade-off)."""
        self.nprobe = nprobe
        if self._index is not None and self.kind in ("ivf", "ivfpq"):
            _faiss().extract_index_ivf(self._index).nprobe = nprobe
            self._gpu = None

    def set_ef_search(self, ef: int) -> None:
        """Change the HNSW search breadth."""
        self.ef_search = ef
        if self._index is not None and self.kind == "hnsw":
            self._inner().hnsw.efSearch = ef

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dim": self.dim,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "ef_construction": self.ef_construction,
            "pq_m": self.pq_m,
        }

    def save(self, path: Path) -> None:
        """Write ``index.faiss`` (+ tombstones) and ``meta.json`` into directory ``path`` atomically."""
        faiss = _faiss()
        with atomic_dir(Path(path)) as tmp:
            meta = self._meta()
            if self._index is not None:
                (tmp / "index.faiss").write_bytes(faiss.serialize_index(self._index).tobytes())
                meta["dead"] = sorted(self._dead)
            (tmp / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path, *, use_gpu: Literal["auto", "never"] = "auto") -> Self:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        meta = _read_meta(path)
        if meta.get("kind") not in ("flat", "hnsw", "ivf", "ivfpq"):
            raise StoreError(f"{path}/meta.json: not a FAISS index (kind={meta.get('kind')!r})")
        idx = cls(
            int(meta["dim"]),
            kind=meta["kind"],
            nlist=meta["nlist"],
            nprobe=meta["nprobe"],
            hnsw_m=meta["hnsw_m"],
            ef_search=meta["ef_search"],
            ef_construction=meta["ef_construction"],
            pq_m=meta["pq_m"],
            use_gpu=use_gpu,
        )
        f = path / "index.faiss"
        if f.exists():
            faiss = _faiss()
            try:
                idx._index = faiss.deserialize_index(np.frombuffer(f.read_bytes(), dtype=np.uint8))
            except RuntimeError as e:
                raise StoreError(f"cannot read FAISS index {f}: {e}") from e
            idx._dead = {int(s) for s in meta.get("dead", [])}
            if idx.kind == "hnsw":
                ids = idx._id_array()
                idx._live = {int(key): s for s, key in enumerate(ids) if s not in idx._dead}
                idx._inner().hnsw.efSearch = idx.ef_search
            else:
                idx._keyset = set(idx._id_array().tolist())
                if idx.kind in ("ivf", "ivfpq"):
                    faiss.extract_index_ivf(idx._index).nprobe = idx.nprobe
        return idx


def load_index(path: Path) -> ExactIndex | FaissIndex:
    """Load whichever index type was saved in ``path``."""
    meta = _read_meta(Path(path))
    return ExactIndex.load(path) if meta.get("kind") == "exact" else FaissIndex.load(path)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((path / "meta.json").read_text()))
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot read vector index metadata {path}/meta.json: {e}") from e


def _default_pq_m(dim: int) -> int:
    for m in (dim // 4, 64, 48, 32, 16, 8, 4, 2, 1):
        if m and m <= 96 and dim % m == 0:
            return m
    return 1


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - core dependency
        raise ConfigurationError("vector search needs the 'faiss-cpu' package (or the 'gpu' extra)") from e
    return faiss
