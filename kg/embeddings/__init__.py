"""Knowledge-graph embeddings: TransE, DistMult, ComplEx, RotatE, R-GCN; filtered evaluation.

Modules: ``data`` (triples as tensors, store fingerprint), ``models``, ``training``,
``evaluation`` (filtered ranking), ``artifacts`` (on-disk vectors + FAISS),
``foldin`` (new entities without retraining), ``pipeline`` (train a store's graph).
Importing this package is cheap: torch, PyG and FAISS load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EmbeddingArtifact",
    "FilterIndex",
    "KGData",
    "RankingMetrics",
    "TrainConfig",
    "build_model",
    "evaluate",
    "find_embeddings",
    "fold_in",
    "fold_in_new_entities",
    "graph_fingerprint",
    "load_tsv_dataset",
    "train",
    "train_graph_embeddings",
]

_WHERE = {
    "EmbeddingArtifact": "artifacts",
    "find_embeddings": "artifacts",
    "FilterIndex": "evaluation",
    "RankingMetrics": "evaluation",
    "evaluate": "evaluation",
    "KGData": "data",
    "graph_fingerprint": "data",
    "load_tsv_dataset": "data",
    "TrainConfig": "training",
    "train": "training",
    "build_model": "models",
    "fold_in": "foldin",
    "fold_in_new_entities": "pipeline",
    "train_graph_embeddings": "pipeline",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'kg.embeddings' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kg.embeddings.{mod}"), name)
