"""Edit the served catalogue at run time and retrain without downtime.

Every edit is written to the catalogue's graph (items, facts) or the interaction log (events)
first, then applied to the model in service by building a new :class:`RecommendService` and
swapping it onto ``services.recommend`` in one assignment, so a request sees either the old or
the new catalogue, never half of it. New items are recommendable at once (see
:mod:`apps.recommend.cold_start`); deleted ones are hidden at once; the next training run learns both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.recommend.catalogue_graph import ITEM_TYPE, catalogue_store, entity_type, item_entity
from apps.recommend.cold_start import NewItem, add_items, text_tower_map
from apps.recommend.interactions import InteractionLog, InteractionRow
from apps.recommend.jobs import Progress, TrainingJobs
from apps.recommend.recommender import Recommender, model_info
from kg.store import Entity, Relation
from kgnlp.errors import ModelUnavailableError, NotFoundError, StoreError

__all__ = ["CatalogueAdmin"]

log = logging.getLogger("kgnlp.recommend")

# training's report lines -> (stage, fraction done when the line is printed)
_STAGES = (("catalogue", "catalogue", 0.05), ("bpr", "bpr", 0.3), ("lightgcn", "lightgcn", 0.45), ("kg", "kg", 0.6),
           ("text_tower", "text_tower", 0.75), ("base models", "ranker", 0.8))  # fmt: skip


class CatalogueAdmin:
    """Catalogue edits and training jobs of the served catalogue.

    Args:
        services: the service container (``services.recommend`` is swapped).
        catalogue: catalogue name.
        graphs: the ``GraphRegistry``.
        interactions: the interaction log.
        embedder: the sentence embedder the model was trained with (None: no cold items).
        home: kgnlp home (where models are trained).
        fit: model sizes and budgets of training jobs (default ``FitConfig()``).
    """

    def __init__(self, services: Any, catalogue: str, graphs: Any, interactions: InteractionLog, embedder: Any,
                 home: Path, fit: Any = None) -> None:  # fmt: skip
        self.services = services
        self.name = catalogue
        self.graphs = graphs
        self.interactions = interactions
        self.embedder = embedder
        self.home = Path(home)
        self.fit = fit
        self.jobs = TrainingJobs(self._train)
        self._edit = threading.Lock()  # one read-modify-swap at a time
        self._tower: tuple[int, np.ndarray] | None = None  # (id of the recommender, its text-tower map)
        self._seen = self.signature()  # the model and catalogue versions this process serves

    def close(self) -> None:
        self.interactions.close()

    @property
    def store(self) -> Any:
        """The catalogue's graph for writing; seeded from the served model when it has no items yet.

        (A model trained before catalogues lived in graphs, or served from a copied folder: the
        first edit must not leave a graph that holds only the edited items.)
        """
        store = catalogue_store(self.graphs, self.name, create=True)
        if not store.stats().entity_types.get(ITEM_TYPE):
            from apps.recommend.catalogue_graph import catalogue_rows, write_catalogue

            served = self.services.recommend.catalogue
            write_catalogue(store, served, source=f"model:{self.name}")
            if self.interactions.count(self.name) == 0:
                self.interactions.add(self.name, catalogue_rows(served))
            log.info("recommend: graph %s seeded from the served model (%d items)", store.backend, served.n_items)
        return store

    # -- items ------------------------------------------------------------------------------
    def _encode(self, items: Sequence[NewItem], rec: Recommender) -> np.ndarray:
        if self.embedder is None:
            raise ModelUnavailableError("no sentence embedder is loaded: new items cannot be scored by their text")
        from apps.recommend.data import item_text

        texts = [item_text(it.name, it.tags, it.text) for it in items]
        vecs = np.asarray(self.embedder.encode(texts, normalize_embeddings=True, show_progress_bar=False), np.float32)
        if vecs.shape[1] != rec.text.shape[1]:
            raise ModelUnavailableError(
                f"the loaded embedder gives {vecs.shape[1]}-d vectors, the model was trained on "
                f"{rec.text.shape[1]}-d ones: serve with the training embedder (all-minilm-l6-v2)"
            )
        return vecs

    def _apply(self, svc: Any, items: Sequence[NewItem], hidden: set[str]) -> Any:
        rec = svc.rec
        if items:
            if self._tower is None or self._tower[0] != id(rec):
                self._tower = (id(rec), text_tower_map(rec.text, rec.models["text_tower"].items))
            rec = add_items(rec, items, self._encode(items, rec), self._tower[1])
            self._tower = (id(rec), self._tower[1])
        return svc.rebuilt(rec, hidden)

    def upsert_items(self, items: Sequence[NewItem]) -> dict[str, int]:
        """Write items and their facts to the graph (atomically), then serve them at once.

        A known item's name, tags and text are replaced; facts are added to the ones it has.
        """
        with self._edit:
            svc = self.services.recommend
            known = {it.item_id for it in items if svc.catalogue.item_index(it.item_id) is not None}
            self._encode(items[:1], svc.rec)  # fail before writing when new items cannot be served
            entities: list[Entity] = []
            relations: list[Relation] = []
            for it in items:
                entities.append(item_entity(it.item_id, it.name, it.tags, it.text, source="api"))
                for rel, eid, ename in it.facts:
                    entities.append(Entity(id=eid, type=entity_type(eid), name=ename or eid, source="api"))
                    relations.append(Relation(it.item_id, rel, eid, source="api"))
            store = self.store
            store.upsert(_dedupe_entities(store, entities), relations, create_missing=False)  # all or nothing
            hidden = svc.hidden_ids - {it.item_id for it in items}
            self.services.recommend = self._apply(svc, items, hidden)
            self._edited()
            return {"added": len(items) - len(known), "updated": len(known), "items": self._count_items(hidden)}

    def delete_item(self, item_id: str) -> None:
        """Delete an item from the graph and stop recommending it at once.

        Raises:
            NotFoundError: unknown item.
        """
        with self._edit:
            svc = self.services.recommend
            store = self.store
            try:
                entity = store.get(item_id)
            except NotFoundError:
                entity = None
            if entity is None or entity.type != ITEM_TYPE:
                raise NotFoundError(f"unknown item id: {item_id!r}")
            store.delete_entity(item_id)
            self.services.recommend = svc.rebuilt(svc.rec, svc.hidden_ids | {item_id})
            self._edited()

    def _count_items(self, hidden: set[str]) -> int:
        return self.services.recommend.catalogue.n_items - len(hidden)

    # -- interactions -----------------------------------------------------------------------
    def add_interactions(self, rows: Sequence[InteractionRow]) -> int:
        """Store events for the next training (unknown items: ``NotFoundError``, nothing stored)."""
        svc = self.services.recommend
        for r in rows:
            i = svc.catalogue.item_index(r.item_id)
            if i is None or svc.hidden[i]:
                raise NotFoundError(f"unknown item id in interactions: {r.item_id!r}")
        return self.interactions.add(self.name, rows)

    # -- catalogue vs model -----------------------------------------------------------------
    def reconcile(self, svc: Any) -> Any:
        """``svc`` with the graph's current items: those added since training served cold, deleted ones hidden.

        A catalogue without a graph (a model trained before catalogues lived in graphs, or a
        read-only replica before the graph exists) is served as trained.
        """
        try:
            store = catalogue_store(self.graphs, self.name)
        except (NotFoundError, StoreError) as err:
            log.warning("recommend: catalogue graph unavailable, serving the model as trained (%s)", err)
            return svc
        graph_items = {ent.id: ent for ent in store.iter_entities() if ent.type == ITEM_TYPE}
        if not graph_items:  # a model without its graph (trained before graphs held catalogues)
            return svc
        c = svc.catalogue
        hidden = {x for x in c.item_ids if x not in graph_items}

        def fields(ent: Entity) -> tuple[str, list[str], str]:
            return (
                ent.name or ent.id,
                [str(t) for t in ent.attributes.get("tags") or []],
                str(ent.attributes.get("text") or ""),
            )

        changed = []
        for ent in graph_items.values():
            i = c.item_index(ent.id)
            if i is None or (c.item_names[i], c.item_tags[i], c.item_texts[i] if c.item_texts else "") != fields(ent):
                changed.append(ent)
        items = []
        if changed:
            ids = {ent.id for ent in changed}
            facts: dict[str, list[tuple[str, str]]] = {x: [] for x in ids}
            for h, r, t in store.iter_triples():
                if h in ids:
                    facts[h].append((r, t))
            names = {k: v.name for k, v in store.get_many({t for f in facts.values() for _, t in f}).items()}
            items = [NewItem(ent.id, *fields(ent), [(r, t, names.get(t, "")) for r, t in facts[ent.id]])
                     for ent in changed]  # fmt: skip
        if items and self.embedder is None:
            log.warning("%d catalogue items changed since training, but no embedder is loaded to serve them",
                        len(items))  # fmt: skip
            items = []
        if items:
            log.info("recommend: %d items added or edited since training are served cold", len(items))
        return self._apply(svc, items, hidden)

    # -- training ---------------------------------------------------------------------------
    def start_training(self) -> Any:
        """Start a training job (``ConflictError`` when one runs)."""
        return self.jobs.start()

    def _train(self, progress: Progress) -> dict[str, Any]:
        from apps.recommend.setup import train_model

        def report(line: str) -> None:
            log.info("recommend training: %s", line)
            for prefix, stage, frac in _STAGES:
                if line.startswith(prefix):
                    progress(stage, frac)

        progress("catalogue", 0.0)
        feedback = self.services.recommend.feedback.positives()
        info = train_model(self.home, self.name, self.embedder, feedback=feedback, cfg=self.fit, report=report,
                           graphs=self.graphs, interactions=self.interactions)  # fmt: skip
        progress("swap", 0.95)
        with self._edit:
            self._load_model()
        return {k: info.get(k) for k in ("status", "version", "items", "users", "interactions", "train_seconds")}

    # -- other workers and replicas ----------------------------------------------------------
    def _model_folder(self) -> Path:
        from apps.recommend.setup import model_dir

        return Path(self.services.settings.recommend.model_dir or model_dir(self.home, self.name))

    def signature(self) -> tuple[tuple[int, int, int] | None, int]:
        """(the served model folder's ``meta.json`` identity, the catalogue's edit revision)."""
        try:
            st = (self._model_folder() / "meta.json").stat()
            model = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            model = None
        return model, self.interactions.revision(self.name)

    def _edited(self) -> None:
        self.interactions.bump(self.name)
        self._seen = self.signature()

    def _load_model(self) -> None:
        """Load the model now in the folder and serve it with the graph's current items (under ``_edit``)."""
        folder = self._model_folder()
        rec = Recommender.load(folder)
        svc = self.services.recommend
        self.services.recommend = self.reconcile(svc.rebuilt(rec, set(), model_info(folder)))
        self._seen = self.signature()
        comp = self.services.components.get("recommend")
        if comp is not None:
            comp.detail.update(self.services.recommend.model_info)
            comp.detail["items"] = rec.catalogue.n_items - len(self.services.recommend.hidden_ids)

    def sync(self) -> bool:
        """Apply a model retrained or a catalogue edited by another worker or replica (the propagation poll).

        Returns whether anything changed here.
        """
        sig = self.signature()
        if sig == self._seen or self.jobs.running is not None:
            return False
        with self._edit:
            if sig[0] != self._seen[0] and sig[0] is not None:
                self._load_model()
                log.info("recommend: model retrained by another process, now serving %s",
                         self.services.recommend.model_info.get("version"))  # fmt: skip
            else:
                self.services.recommend = self.reconcile(self.services.recommend)
                self._seen = sig
                log.info("recommend: catalogue edited by another process (revision %d)", sig[1])
        return True


def _dedupe_entities(store: Any, entities: list[Entity]) -> list[Entity]:
    """Items as given; other entities only when new (an existing genre keeps its name and type)."""
    out: dict[str, Entity] = {}
    others = [e.id for e in entities if e.type != ITEM_TYPE]
    existing = store.get_many(others) if others else {}
    for e in entities:
        if e.type == ITEM_TYPE or (e.id not in existing and e.id not in out):
            out[e.id] = e
    return list(out.values())
