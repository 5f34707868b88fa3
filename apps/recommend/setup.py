"""Build and train the served recommender under ``KGNLP_HOME/recommend/<catalogue>`` (idempotent).

Training reads the catalogue from its graph (``recommend-<catalogue>``, see
:mod:`apps.recommend.catalogue_graph`) and its events from the interaction log. The built-in
catalogues are loaded into both the first time: ``synthetic`` needs nothing but the code (the
``make serve`` demo); ``lastfm`` reads ``../shared/data`` (non-commercial data, never shipped).
Any other name is a catalogue imported with ``kgnlp recommend import``. Feedback plays stored by
the service are merged into the events of the next run (new users are appended to the catalogue).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from apps.recommend.data import Catalogue, Interactions
from apps.recommend.interactions import InteractionLog
from apps.recommend.models.text import encode_items
from apps.recommend.splits import per_user_split
from apps.recommend.train import FitConfig, contexts_for, fit_base, fit_ranker_topk
from kgnlp.errors import ConfigurationError, ValidationError
from kgnlp.files import atomic_dir

__all__ = ["BUILTIN", "build_catalogue", "check_catalogue_name", "load_catalogue", "merge_feedback", "model_dir",
           "train_model"]  # fmt: skip

log = logging.getLogger("kgnlp.recommend")
BUILTIN = ("synthetic", "lastfm")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


def check_catalogue_name(name: str) -> str:
    """Return ``name`` when it is a valid catalogue name (it names a graph and a folder).

    Raises:
        ValidationError: anything but 1-48 lowercase letters, digits, ``-`` and ``_``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(f"catalogue name must be 1-48 lowercase letters, digits, '-' or '_', got {name!r}")
    return name


def model_dir(home: Path, catalogue: str) -> Path:
    """Where the served model of a catalogue lives."""
    return Path(home) / "recommend" / catalogue


def build_catalogue(name: str, source: Path | None = None) -> Catalogue:
    """The ``synthetic`` demo catalogue or the ``lastfm`` one (``source`` = the shared data root).

    Raises:
        ConfigurationError: unknown name, or ``lastfm`` without a source.
    """
    if name == "synthetic":
        from apps.recommend.synthetic import synthetic_catalogue

        return synthetic_catalogue()
    if name == "lastfm":
        if source is None:
            raise ConfigurationError("the lastfm catalogue needs --source (the shared data root, e.g. ../shared/data)")
        from apps.recommend.lastfm import load_lastfm

        return load_lastfm(source)
    raise ConfigurationError(f"catalogue must be 'synthetic' or 'lastfm', got {name!r}")


def load_catalogue(graphs: Any, interactions: InteractionLog, name: str, source: Path | None = None,
                   report: Callable[[str], None] = log.info) -> Catalogue:  # fmt: skip
    """The catalogue ``name`` as its graph and the interaction log hold it.

    A built-in catalogue whose graph holds no item yet is written into both first (idempotent).

    Args:
        graphs: a ``GraphRegistry``.
        interactions: the interaction log.
        name: catalogue name.
        source: shared data root (``lastfm``'s first load).

    Raises:
        NotFoundError: an imported catalogue that has no items.
        ConfigurationError: ``lastfm``'s first load without a source.
    """
    from apps.recommend.catalogue_graph import (
        ITEM_TYPE,
        catalogue_rows,
        catalogue_store,
        read_catalogue,
        write_catalogue,
    )

    check_catalogue_name(name)
    store = catalogue_store(graphs, name, create=True)
    if name in BUILTIN and not store.stats().entity_types.get(ITEM_TYPE):
        built = build_catalogue(name, source)
        t0 = time.perf_counter()
        write_catalogue(store, built, source=name)
        interactions.add(name, catalogue_rows(built))
        report(f"catalogue {name}: {built.n_items} items, {len(built.triples)} facts and "
               f"{len(built.interactions)} events loaded into graph {store.backend} in "
               f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
        meta = built.meta
    else:
        meta = {"source": f"imported into graph recommend-{name}"}
    return read_catalogue(store, name, interactions.rows(name), meta)


def merge_feedback(catalogue: Catalogue, events: list[tuple[str, str, float]]) -> Catalogue:
    """Append positive feedback ``(user_id, item_id, ts)`` to the catalogue's events (unknown items dropped)."""
    users, items, ts = [], [], []
    user_ids = list(catalogue.user_ids)
    index = {u: k for k, u in enumerate(user_ids)}
    for u, i, t in events:
        ii = catalogue.item_index(i)
        if ii is None:
            continue
        if u not in index:
            index[u] = len(user_ids)
            user_ids.append(u)
        users.append(index[u])
        items.append(ii)
        ts.append(t / 86400.0 if catalogue.interactions.ts.any() else 0.0)
    if not users:
        return catalogue
    old = catalogue.interactions
    inter = Interactions(np.r_[old.users, users].astype(np.int64), np.r_[old.items, items].astype(np.int64),
                         np.r_[old.weights, np.ones(len(users))].astype(np.float32), np.r_[old.ts, ts])  # fmt: skip
    return replace(catalogue, user_ids=user_ids, interactions=inter)


def _fingerprint(catalogue: Catalogue, cfg: FitConfig) -> str:
    h = hashlib.sha256()
    inter = catalogue.interactions
    for arr in (inter.users, inter.items, catalogue.triples):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps([catalogue.item_ids, catalogue.item_names, catalogue.item_tags, catalogue.item_texts,
                         catalogue.user_ids]).encode())  # fmt: skip
    h.update(repr((cfg.dim, cfg.layers, cfg.seed, cfg.bpr, cfg.lightgcn, cfg.kg, cfg.text)).encode())
    return h.hexdigest()[:16]


def train_model(home: Path, name: str, embedder: Any, source: Path | None = None,
                feedback: list[tuple[str, str, float]] | None = None, cfg: FitConfig | None = None,
                force: bool = False, report: Callable[[str], None] = log.info, graphs: Any = None,
                interactions: InteractionLog | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the served model: base models on 80 % of each user's items, the ranker on the other 20 %.

    The catalogue is read from its graph and the interaction log (see :func:`load_catalogue`).

    Args:
        home: kgnlp home.
        name: ``synthetic``, ``lastfm`` or an imported catalogue.
        embedder: a loaded SentenceTransformer (item texts).
        source: shared data root (``lastfm``).
        feedback: positive feedback events to merge in.
        cfg: model sizes and budgets (default :class:`FitConfig`).
        force: retrain even when nothing changed.
        report: progress callback.
        graphs: a ``GraphRegistry`` (default: the one the settings of ``home`` configure).
        interactions: the interaction log (default: the one in the settings' state database).

    Returns:
        ``{"status": "trained"|"unchanged", "dir", "items", "users", "interactions", "version", ...}``.
    """
    import contextlib

    cfg = cfg or FitConfig()
    with contextlib.ExitStack() as stack:
        if graphs is None or interactions is None:
            from apps.core.services import open_graph_registry
            from apps.core.settings import load_settings

            settings = load_settings(home=home)
            settings.home.mkdir(parents=True, exist_ok=True)
            graphs = graphs or stack.enter_context(open_graph_registry(settings))
            interactions = interactions or stack.enter_context(InteractionLog(settings.db_url))
        t_load = time.perf_counter()
        catalogue = load_catalogue(graphs, interactions, name, source, report)
        report(f"catalogue {name}: read {catalogue.n_items} items, {len(catalogue.triples)} facts, "
               f"{len(catalogue.interactions)} events in {time.perf_counter() - t_load:.1f}s")  # fmt: skip
    catalogue = merge_feedback(catalogue, feedback or [])
    out = model_dir(home, name)
    fp = _fingerprint(catalogue, cfg)
    meta_file = out / "meta.json"
    if not force and meta_file.is_file() and (out / "ranker.json").is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("fingerprint") == fp:
            keep = ("items", "users", "interactions", "version", "trained_at")
            return {"status": "unchanged", "dir": str(out), **{k: meta.get(k) for k in keep}}
    t0 = time.perf_counter()
    texts = [catalogue.item_text(i) for i in range(catalogue.n_items)]
    text = encode_items(texts, embedder, Path(home) / "recommend" / "cache")
    split = per_user_split(catalogue.interactions, seed=cfg.seed, ratios=(0.2, 0.0))
    rec = fit_base(catalogue, split.train, text, cfg, report)
    ctxs = contexts_for(rec, split.train)
    fit_ranker_topk(rec, ctxs, split.valid, seed=cfg.seed)
    # serve the trained vectors with the full history; recency and popularity over all events
    from apps.recommend.models.popularity import popularity_scores
    from apps.recommend.recommender import recency_scores

    rec.popularity = popularity_scores(catalogue.interactions, catalogue.n_items)
    rec.recency = recency_scores(catalogue.interactions, catalogue.n_items)
    seconds = round(time.perf_counter() - t0, 1)
    meta = {"fingerprint": fp, "catalogue": name, "items": catalogue.n_items, "users": catalogue.n_users,
            "interactions": len(catalogue.interactions), "feedback_events": len(feedback or []),
            "train_seconds": seconds, "trained_at": time.time(), "version": fp[:12]}  # fmt: skip
    with atomic_dir(out) as tmp:
        rec.save(tmp, meta)
    return {"status": "trained", "dir": str(out), **meta}
