"""Train embeddings for a graph in a store and publish them next to it; fold in new entities.

``train_graph_embeddings`` reads the store, splits its triples (train / valid /
test), trains a model with the preset for that model, evaluates filtered
metrics, and writes ``<graph dir>/embeddings/<model>-<fingerprint>/``.
``fold_in_new_entities`` embeds entities added to the store since.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kg.embeddings.artifacts import EmbeddingArtifact, find_embeddings
from kg.embeddings.data import KGData, graph_fingerprint
from kgnlp.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from kg.store import Entity, GraphStore

__all__ = ["GRAPH_PRESETS", "TextEncoder", "entity_text", "fold_in_new_entities", "train_graph_embeddings"]

TextEncoder = Callable[[list[str]], np.ndarray]
"""Maps texts to an ``(n, F)`` float array (e.g. a MiniLM sentence embedder's ``encode``)."""

# model options, training options (TrainConfig fields) per model, sized for graphs of 1k-50k entities
GRAPH_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "complex": ({"dim": 200}, {"lr": 0.1, "reg_weight": 1e-2, "batch_size": 512, "epochs": 50}),
    "distmult": ({"dim": 200}, {"lr": 0.1, "reg_weight": 1e-2, "batch_size": 512, "epochs": 50}),
    "rotate": (
        {"dim": 200, "gamma": 6.0, "reciprocal": False},
        {
            "loss": "negative",
            "optimizer": "adam",
            "lr": 2e-3,
            "regularizer": "none",
            "batch_size": 512,
            "num_negatives": 64,
            "epochs": 50,
        },
    ),
    "transe": (
        {"dim": 100, "gamma": 6.0, "reciprocal": False},
        {
            "loss": "negative",
            "optimizer": "adam",
            "lr": 2e-3,
            "regularizer": "none",
            "batch_size": 512,
            "num_negatives": 64,
            "epochs": 50,
        },
    ),
    "rgcn": (
        {"dim": 128, "decoder": "complex", "layers": 1, "num_bases": 8},
        {"optimizer": "adam", "lr": 5e-3, "reg_weight": 1e-3, "batch_size": 512, "epochs": 50},
    ),
}


def entity_text(e: Entity) -> str:
    """The text embedded as an entity's features: ``"<type>: <name>. <description>"``."""
    text = f"{e.type}: {e.display_name()}"
    if e.aliases:
        text += f" ({', '.join(e.aliases[:3])})"
    return f"{text}. {e.description}".strip() if e.description else text


def _features(store: GraphStore, ids: list[str], text_encoder: TextEncoder) -> np.ndarray:
    ents = store.get_many(ids)
    texts = [entity_text(ents[i]) if i in ents else i for i in ids]
    out = np.asarray(text_encoder(texts), dtype=np.float32)
    if out.ndim != 2 or len(out) != len(ids):
        raise ValidationError(f"text_encoder must return ({len(ids)}, F) vectors, got shape {out.shape}")
    return out


def train_graph_embeddings(
    store: GraphStore,
    graph_dir: Path,
    model: str = "complex",
    *,
    graph: str = "",
    text_encoder: TextEncoder | None = None,
    dim: int | None = None,
    train_options: dict[str, Any] | None = None,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> EmbeddingArtifact:
    """Train a model on a store's triples and publish the entity vectors next to the graph.

    Args:
        store: The graph store.
        graph_dir: Folder of the graph (embeddings go to ``graph_dir/embeddings/``).
        model: ``complex`` | ``distmult`` | ``rotate`` | ``transe`` | ``rgcn``.
        graph: Graph name (recorded in the metadata).
        text_encoder: Text -> vectors, used as R-GCN input features (MiniLM of name/description).
        dim: Override the preset's vector width.
        train_options: Override ``TrainConfig`` fields (e.g. ``epochs``, ``max_minutes``, ``device``).
        valid_fraction: Share of triples held out for early stopping.
        test_fraction: Share held out for the reported metrics.
        seed: Seed for the split, initialisation and training.
        progress: Show a progress bar.
        log: Line logger.

    Returns:
        The published artifact (``artifact.path`` is its folder).
    """
    import torch

    from kg.embeddings.evaluation import FilterIndex, evaluate
    from kg.embeddings.models import build_model
    from kg.embeddings.training import TrainConfig, seed_everything, train

    if model not in GRAPH_PRESETS:
        raise ConfigurationError(f"model must be one of {sorted(GRAPH_PRESETS)}, got {model!r}")
    t0 = time.perf_counter()
    fingerprint = graph_fingerprint(store)
    data = KGData.from_store(store, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed, name=graph)
    if len(data.train) == 0:
        raise ValidationError(f"graph {graph!r} has no relations to train on")
    mopts, topts = (dict(x) for x in GRAPH_PRESETS[model])
    topts.update(train_options or {})
    topts["seed"] = seed
    cfg = TrainConfig.from_dict(topts)
    d = int(dim or mopts.pop("dim"))
    mopts.pop("dim", None)
    use_text = False
    if model == "rgcn":
        tr = data.train
        mopts.update(edge_index=tr[:, [0, 2]].t().contiguous(), edge_type=tr[:, 1].contiguous())
        if text_encoder is not None:
            mopts["features"] = torch.from_numpy(_features(store, data.entities, text_encoder))
            use_text = True
        else:
            mopts["learn_entity"] = True
    seed_everything(seed)
    net = build_model(model, data.num_entities, data.num_relations, d, **mopts)
    res = train(net, data, cfg, progress=progress, log=log)
    test = (
        evaluate(net, data.test, FilterIndex(data.all_triples()), batch_size=cfg.eval_batch_size)
        if len(data.test)
        else None
    )
    args = {k: v for k, v in net.constructor_args().items()}
    meta = {
        "model": model,
        "graph": graph,
        "fingerprint": fingerprint,
        "state_fingerprint": fingerprint,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_args": args,
        "train_config": cfg.as_dict(),
        "text_features": use_text,
        "data": data.summary(),
        "split": {"valid_fraction": valid_fraction, "test_fraction": test_fraction, "seed": seed},
        "metrics": {
            "valid": res.best_valid.as_dict() if res.best_valid else None,
            "test": test.as_dict() if test else None,
            "ranking": "filtered, both directions, realistic ties",
        },
        "training": {
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "stopped": res.stopped,
            "seconds": round(res.seconds, 1),
            "history": res.history,
        },
        "folded_in": [],
    }
    art = EmbeddingArtifact.from_model(net, data.entities, data.relations, meta)
    art.publish(graph_dir)
    if log:
        log(f"wrote {art.path} in {time.perf_counter() - t0:.1f} s")
    return art


def fold_in_new_entities(
    store: GraphStore,
    graph_dir: Path,
    *,
    text_encoder: TextEncoder | None = None,
    model: str | None = None,
    steps: int = 100,
) -> tuple[EmbeddingArtifact, list[str]]:
    """Embed entities that are in the store but not in the latest embeddings, and save.

    Args:
        store: The graph store (its current state).
        graph_dir: Folder of the graph.
        text_encoder: Needed when the embeddings come from R-GCN with text features.
        model: Use the latest embeddings of this model.
        steps: Optimisation steps per entity for shallow models.

    Returns:
        The updated artifact and the ids that got a vector.
    """
    from kg.embeddings.foldin import fold_in

    art = EmbeddingArtifact.load(find_embeddings(graph_dir, model))
    new = sorted(e.id for e in store.iter_entities() if e.id not in art)
    if not new:
        return art, []
    new_set = set(new)
    triples = [t for t in store.iter_triples() if t[0] in new_set or t[2] in new_set]
    net = art.load_model()
    trained_ids = art.entity_ids[: net.num_entities]
    feats = None
    if art.meta.get("text_features"):
        if text_encoder is None:
            raise ConfigurationError("these R-GCN embeddings use text features: pass a text_encoder for fold-in")
        feats = _features(store, new, text_encoder)
    vecs = fold_in(net, trained_ids, art.relations, new, triples, feats, steps=steps)
    if vecs:
        art.add(vecs)
        art.meta["state_fingerprint"] = graph_fingerprint(store)
        assert art.path is not None
        art.save(art.path)
    return art, sorted(vecs)
