"""The recommend app inside the running service: load the trained model, answer requests, take feedback."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.core.services import Component
from apps.core.settings import Settings
from apps.recommend.explain import Explainer, Explanation
from apps.recommend.feedback import FeedbackEvent, FeedbackStore
from apps.recommend.recommender import Recommender, model_info
from kgnlp.errors import KgnlpError, NotFoundError, OverloadedError, ValidationError

__all__ = ["RecommendResult", "RecommendService", "Recommendation", "load"]

log = logging.getLogger("kgnlp.recommend")

SYSTEM_PROMPT = (
    "You write one short, friendly sentence telling a listener why an artist is recommended to them. "
    "Use only the facts given. No lists, no quotes."
)


@dataclass
class Recommendation:
    item: int
    score: float
    explanation: Explanation | None
    generated: bool = False


@dataclass
class RecommendResult:
    user_id: str | None
    cold_start: bool
    history_size: int
    items: list[Recommendation]
    explain: str
    fallback_reason: str | None = None


class RecommendService:
    """Answers ``/recommend``, ``/items/{id}/similar`` and ``/feedback`` from a loaded :class:`Recommender`.

    Args:
        recommender: the trained model (catalogue included).
        feedback: the feedback store.
        generation: a ``GenerationQueue`` (None: template explanations only).
        adapter: the LoRA adapter for llm explanations (None when the generator lacks it).
        explain: default explanation mode.
        explain_timeout_s: bound on llm explanations.
        llm_items: how many top items get an llm sentence.
        max_k: largest k.
        hidden: item ids never recommended (deleted from the catalogue since the model was trained).
        model_info: what ``/health/ready`` shows about the model (version, trained_at …).
    """

    def __init__(self, recommender: Recommender, feedback: FeedbackStore, generation: Any = None,
                 adapter: str | None = None, explain: str = "template", explain_timeout_s: float = 3.0,
                 llm_items: int = 3, max_k: int = 100, hidden: set[str] | None = None,
                 model_info: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.rec = recommender
        self.catalogue = recommender.catalogue
        self.feedback = feedback
        self.generation = generation
        self.adapter = adapter
        self.default_explain = explain
        self.explain_timeout_s = explain_timeout_s
        self.llm_items = llm_items
        self.max_k = max_k
        c = self.catalogue
        self.history = c.interactions.by_user(c.n_users)
        self.item_users: list[set[int]] = [set() for _ in range(c.n_items)]
        for u, i in zip(c.interactions.users.tolist(), c.interactions.items.tolist(), strict=True):
            self.item_users[i].add(u)
        self.explainer = Explainer(c, self.item_users)
        self.item_vectors = recommender.item_vectors()
        self.tag_sets = [{t.lower() for t in tags} for tags in c.item_tags]
        self.hidden_ids = {x for x in (hidden or set()) if c.item_index(x) is not None}
        self.hidden = np.zeros(c.n_items, bool)
        self.hidden[[c.item_index(x) for x in self.hidden_ids]] = True  # type: ignore[index]
        self.model_info = dict(model_info or {})
        from threadpoolctl import ThreadpoolController

        # one request's matrix-vector products are too small for threads: on a busy host, BLAS
        # threads only contend (p50 16 ms -> 5 ms on Last.fm with 2 shared cores)
        self._blas = ThreadpoolController()

    def close(self) -> None:
        self.feedback.close()

    def rebuilt(self, recommender: Recommender, hidden: set[str], model_info: dict[str, Any] | None = None,
                ) -> RecommendService:  # fmt: skip
        """The same service over another recommender (a catalogue edit or a retrained model)."""
        return RecommendService(recommender, self.feedback, self.generation, self.adapter, self.default_explain,
                                self.explain_timeout_s, self.llm_items, self.max_k, hidden,
                                self.model_info if model_info is None else model_info)  # fmt: skip

    # -- helpers ---------------------------------------------------------------------------------
    def _items(self, ids: list[str], what: str) -> np.ndarray:
        out = []
        for x in ids:
            i = self.catalogue.item_index(x)
            if i is None or self.hidden[i]:
                raise NotFoundError(f"unknown item id in {what}: {x!r}")
            out.append(i)
        return np.array(out, np.int64)

    def user_context(self, user_id: str | None, recent: list[str]) -> tuple[Any, bool]:
        """The user's context (history + feedback + recent items) and whether it is a cold start."""
        c = self.catalogue
        u = c.user_index(user_id) if user_id is not None else None
        fb = self.feedback.user(user_id) if user_id is not None else None
        base = self.history[u] if u is not None else np.zeros(0, np.int64)
        extra = [c.item_index(x) for x in (fb.positives if fb else [])]
        skips = np.array([i for i in (c.item_index(x) for x in (fb.skips if fb else [])) if i is not None], np.int64)
        rec_items = self._items(recent, "recent_items")
        history = np.array(list(dict.fromkeys([*base.tolist(), *(i for i in extra if i is not None),
                                              *rec_items.tolist()])), np.int64)  # fmt: skip
        skips = np.setdiff1d(skips, history)
        changed = bool(fb) or len(rec_items) > 0
        ctx = self.rec.context(history, user=u, skips=skips, fold_in=changed)
        return ctx, len(history) == 0 and len(skips) == 0

    # -- API -------------------------------------------------------------------------------------
    def recommend_sync(self, user_id: str | None, recent: list[str], k: int, exclude_seen: bool = True,
                       tags: list[str] | None = None, exclude_items: list[str] | None = None,
                       explain: str = "template") -> RecommendResult:  # fmt: skip
        """Rank every item for the user and return the top ``k`` (template explanations).

        Raises:
            ValidationError: ``k`` above the limit.
            NotFoundError: an unknown id in ``recent`` (unknown ``exclude_items`` are ignored).
        """
        if not 1 <= k <= self.max_k:
            raise ValidationError(f"k must be within 1..{self.max_k}, got {k}")
        ctx, cold = self.user_context(user_id, recent)
        with self._blas.limit(limits=1, user_api="blas"):
            scores = self.rec.score(ctx).astype(np.float64)
        if exclude_seen and len(ctx.history):
            scores[ctx.history] = -np.inf
        if len(ctx.skips):
            scores[ctx.skips] = -np.inf
        scores[self.hidden] = -np.inf
        for x in exclude_items or []:
            i = self.catalogue.item_index(x)
            if i is not None:
                scores[i] = -np.inf
        if tags:
            wanted = {t.lower() for t in tags}
            keep = np.array([bool(s & wanted) for s in self.tag_sets])
            scores[~keep] = -np.inf
        n_ok = int(np.isfinite(scores).sum())
        kk = min(k, n_ok)
        top = np.argpartition(-scores, kk - 1)[:kk] if kk else np.zeros(0, np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        items = [Recommendation(int(i), float(scores[i]),
                                self.explainer.explain(int(i), ctx.history) if explain != "none" else None)
                 for i in top]  # fmt: skip
        return RecommendResult(user_id, cold, len(ctx.history), items, explain)

    async def recommend(self, user_id: str | None, recent: list[str], k: int, exclude_seen: bool = True,
                        tags: list[str] | None = None, exclude_items: list[str] | None = None,
                        explain: str | None = None) -> RecommendResult:  # fmt: skip
        """:meth:`recommend_sync`, then llm sentences for the top items when asked and possible."""
        mode = explain or self.default_explain
        needs_db = user_id is not None
        args = (user_id, recent, k, exclude_seen, tags, exclude_items, "none" if mode == "none" else "template")
        result = await asyncio.to_thread(self.recommend_sync, *args) if needs_db else self.recommend_sync(*args)
        if mode == "llm":
            result.explain = "llm"
            result.fallback_reason = await self._rewrite(result)
        return result

    async def _rewrite(self, result: RecommendResult) -> str | None:
        """Rewrite the top items' template sentences with the generator; the reason when it could not."""
        if self.generation is None or self.adapter is None:
            return "no_adapter"
        from models.generation import ChatMessage, GenerationParams

        todo = [r for r in result.items[: self.llm_items] if r.explanation is not None]

        async def one(r: Recommendation) -> None:
            assert r.explanation is not None
            facts = f"Recommended: {self.catalogue.item_names[r.item]}. Reason: {r.explanation.text}"
            msgs = [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", facts)]
            gen = await self.generation.generate(msgs, GenerationParams(max_tokens=48), self.adapter)
            text = gen.text.strip().split("\n")[0].strip()
            if text:
                r.explanation.text, r.generated = text, True

        try:
            await asyncio.wait_for(asyncio.gather(*(one(r) for r in todo)), timeout=self.explain_timeout_s)
        except TimeoutError:
            return "timeout"
        except OverloadedError:
            return "overloaded"
        except KgnlpError:
            return "generator_error"
        return None

    def similar(self, item_id: str, k: int = 10) -> list[tuple[int, float]]:
        """Items closest to ``item_id`` (KG model ⊕ text tower ⊕ text vectors, cosine).

        Raises:
            NotFoundError: unknown item.
        """
        i = self.catalogue.item_index(item_id)
        if i is None or self.hidden[i]:
            raise NotFoundError(f"unknown item id: {item_id!r}")
        with self._blas.limit(limits=1, user_api="blas"):
            sims = self.item_vectors @ self.item_vectors[i]
        sims[i] = -np.inf
        sims[self.hidden] = -np.inf
        k = min(k, int(np.isfinite(sims).sum()))
        if k == 0:
            return []
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(int(j), float(sims[j])) for j in top]

    def add_feedback(self, events: list[FeedbackEvent]) -> int:
        """Store events (unknown items → 404, nothing stored); returns how many were new."""
        for e in events:
            i = self.catalogue.item_index(e.item_id)
            if i is None or self.hidden[i]:
                raise NotFoundError(f"unknown item id in feedback: {e.item_id!r}")
        return self.feedback.add(events)


def load(settings: Settings, services: Any) -> Component:
    """Load the trained recommender onto ``services.recommend`` (``not_configured`` until built).

    The catalogue's graph is the truth: items added to it since training are served cold and
    deleted ones hidden (see :class:`apps.recommend.catalogue_admin.CatalogueAdmin`).
    """
    from apps.recommend.catalogue_admin import CatalogueAdmin
    from apps.recommend.interactions import InteractionLog
    from apps.recommend.setup import model_dir

    cfg = settings.recommend
    folder = cfg.model_dir or model_dir(settings.home, cfg.catalogue)
    if not (Path(folder) / "ranker.json").is_file():
        return Component("recommend", "not_configured",
                         {"hint": f"kgnlp recommend setup (builds the {cfg.catalogue} model in {folder})"})  # fmt: skip
    t0 = time.perf_counter()
    rec = Recommender.load(Path(folder))
    store = FeedbackStore(settings.db_url).open()
    adapter = None
    gen = getattr(services, "generator", None)
    if gen is not None and cfg.adapter in gen.adapter_names():
        adapter = cfg.adapter
    svc = RecommendService(rec, store, getattr(services, "generation", None), adapter, cfg.explain,
                           cfg.explain_timeout_s, cfg.llm_items, cfg.max_k,
                           model_info=model_info(Path(folder)))  # fmt: skip
    graphs = getattr(services, "graphs", None)
    if graphs is not None:
        admin = CatalogueAdmin(services, cfg.catalogue, graphs, InteractionLog(settings.db_url).open(),
                               getattr(services, "embedder", None), settings.home)  # fmt: skip
        services.recommend_admin = admin
        svc = admin.reconcile(svc)
    services.recommend = svc
    return Component("recommend", "ready", {
        "catalogue": rec.catalogue.name, "items": svc.catalogue.n_items - len(svc.hidden_ids),
        "users": rec.catalogue.n_users, "models": list(rec.models),
        "ranker_features": rec.ranker.features if rec.ranker else [], "explanations": cfg.explain, "adapter": adapter,
        **svc.model_info, "load_s": round(time.perf_counter() - t0, 2)})  # fmt: skip
