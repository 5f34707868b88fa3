"""Triples as index tensors: vocabularies, splits, the filter set, and loaders.

A ``KGData`` holds integer ``(head, relation, tail)`` triples for train/valid/test
plus the id vocabularies. It is built from the benchmark TSV folders
(``train.txt``/``valid.txt``/``test.txt``) or from any ``GraphStore``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgnlp.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    import torch

    from kg.store import GraphStore

__all__ = ["KGData", "graph_fingerprint", "load_tsv_dataset", "read_triples"]

Triple = tuple[str, str, str]


def read_triples(path: Path) -> list[Triple]:
    """Read ``head<TAB>relation<TAB>tail`` lines (blank lines skipped).

    Args:
        path: The TSV file.

    Returns:
        The triples, in file order.
    """
    out: list[Triple] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise ValidationError(f"{path}:{n}: expected head<TAB>relation<TAB>tail, got {line[:80]!r}")
            out.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    return out


@dataclass(slots=True)
class KGData:
    """Index-encoded triples and vocabularies.

    ``train``/``valid``/``test`` are ``LongTensor[n, 3]`` of ``(h, r, t)``;
    ``entities[i]`` / ``relations[j]`` are the string ids of index ``i`` / ``j``.
    """

    entities: list[str]
    relations: list[str]
    train: Any
    valid: Any
    test: Any
    name: str = ""
    entity_index: dict[str, int] = field(default_factory=dict)
    relation_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.entity_index:
            self.entity_index = {e: i for i, e in enumerate(self.entities)}
        if not self.relation_index:
            self.relation_index = {r: i for i, r in enumerate(self.relations)}

    @property
    def num_entities(self) -> int:
        """Number of entities."""
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        """Number of (forward) relation types."""
        return len(self.relations)

    @classmethod
    def from_splits(
        cls,
        train: Sequence[Triple],
        valid: Sequence[Triple] = (),
        test: Sequence[Triple] = (),
        *,
        name: str = "",
        entities: Iterable[str] = (),
    ) -> KGData:
        """Encode string triples; the vocabularies are sorted for determinism.

        Args:
            train: Training triples.
            valid: Validation triples.
            test: Test triples.
            name: Dataset name (for reports).
            entities: Extra entity ids to include (e.g. isolated nodes).

        Returns:
            The encoded dataset.
        """
        import torch

        ents = set(entities)
        rels: set[str] = set()
        for split in (train, valid, test):
            for h, r, t in split:
                ents.add(h)
                ents.add(t)
                rels.add(r)
        e_list, r_list = sorted(ents), sorted(rels)
        ei = {e: i for i, e in enumerate(e_list)}
        ri = {r: i for i, r in enumerate(r_list)}

        def enc(split: Sequence[Triple]) -> torch.Tensor:
            return torch.tensor([(ei[h], ri[r], ei[t]) for h, r, t in split], dtype=torch.long).reshape(-1, 3)

        return cls(e_list, r_list, enc(train), enc(valid), enc(test), name, ei, ri)

    @classmethod
    def from_store(
        cls,
        store: GraphStore,
        *,
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
        seed: int = 0,
        name: str = "",
    ) -> KGData:
        """Read every triple of a store and split it randomly (reproducibly).

        Every entity of the store gets an index, also those without relations.
        Held-out triples whose head or tail appears in no training triple are
        moved back to train so evaluation only asks about known entities.

        Args:
            store: The graph store.
            valid_fraction: Share of triples held out for validation (early stopping).
            test_fraction: Share held out for the reported metrics.
            seed: Split seed.
            name: Dataset name.

        Returns:
            The encoded dataset.
        """
        if not (0 <= valid_fraction < 0.5 and 0 <= test_fraction < 0.5):
            raise ValidationError(
                f"valid_fraction and test_fraction must be in [0, 0.5), got {valid_fraction}, {test_fraction}"
            )
        triples = sorted(set(store.iter_triples()))
        ents = [e.id for e in store.iter_entities()]
        rng = random.Random(seed)
        rng.shuffle(triples)
        n_va, n_te = int(len(triples) * valid_fraction), int(len(triples) * test_fraction)
        valid, test, train = triples[:n_va], triples[n_va : n_va + n_te], triples[n_va + n_te :]
        seen = {x for h, _, t in train for x in (h, t)}
        seen_rel = {r for _, r, _ in train}
        keep_va: list[Triple] = []
        keep_te: list[Triple] = []
        for split, keep in ((valid, keep_va), (test, keep_te)):
            for tr in split:
                if tr[0] in seen and tr[2] in seen and tr[1] in seen_rel:
                    keep.append(tr)
                else:
                    train.append(tr)
        return cls.from_splits(train, keep_va, keep_te, name=name, entities=ents)

    def all_triples(self) -> torch.Tensor:
        """Train, valid and test stacked (the set filtered ranking filters against)."""
        import torch

        return torch.cat([self.train, self.valid, self.test], 0)

    def summary(self) -> dict[str, int]:
        """Counts for reports."""
        return {
            "entities": self.num_entities,
            "relations": self.num_relations,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
        }


def load_tsv_dataset(folder: Path, name: str = "") -> KGData:
    """Load a benchmark folder with ``train.txt``, ``valid.txt`` and ``test.txt``.

    Args:
        folder: The dataset folder.
        name: Dataset name (defaults to the folder name).

    Returns:
        The encoded dataset.
    """
    folder = Path(folder)
    splits = {}
    for s in ("train", "valid", "test"):
        p = folder / f"{s}.txt"
        if not p.exists():
            raise NotFoundError(f"dataset file missing: {p}")
        splits[s] = read_triples(p)
    return KGData.from_splits(splits["train"], splits["valid"], splits["test"], name=name or folder.name)


def graph_fingerprint(store: GraphStore) -> str:
    """A short hash of a store's content (entity ids and sorted triples).

    Embeddings are saved under this fingerprint so that embeddings trained on
    an older state of the graph are recognised as stale.

    Args:
        store: The graph store.

    Returns:
        16 hex characters.
    """
    h = hashlib.sha256()
    st = store.stats()
    h.update(f"{st.entities}|{st.relations}\n".encode())
    for eid in sorted(e.id for e in store.iter_entities()):
        h.update(eid.encode("utf-8") + b"\n")
    h.update(b"--\n")
    for tr in sorted(store.iter_triples()):
        h.update("\t".join(tr).encode("utf-8") + b"\n")
    return h.hexdigest()[:16]
