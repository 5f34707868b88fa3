"""Run-time changes reach every worker and replica: corpora and LoRA adapters are versioned
artefacts under ``KGNLP_HOME``, and each process polls their pointers and swaps in what changed.
The recommend app's model folder and catalogue revision are polled the same way
(``apps.recommend.catalogue_admin.CatalogueAdmin.sync``).

- A corpus is the folder ``indexes/NAME``, replaced whole by one atomic directory swap; its
  manifest's ``revision`` (fresh on every save) is the pointer (``retrieval.corpus.corpus_revision``).
- An adapter is the folder ``adapters/NAME`` (``KGNLP_MODELS__ADAPTER_DIR``), published by one
  atomic directory swap (``POST /admin/adapters`` copies it there) and removed by one rename;
  the pointer is the folder's file signature (inode, size, mtime of each file).

Why polling rather than PostgreSQL LISTEN/NOTIFY: the artefacts are files every process already
shares, so a stat or a 1 kB read per artefact and second notices a change on every database
(SQLite with ``--workers``, PostgreSQL with replicas) and after a missed notification alike; a
change reaches every process within ``server.reload_poll_s`` plus the time to load it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Propagation", "adapter_signature", "propagation", "with_generator_lock"]

log = logging.getLogger("kgnlp.propagation")
T = TypeVar("T")
Signature = tuple[tuple[str, int, int, int], ...]


def adapter_signature(folder: Path) -> Signature | None:
    """What identifies one version of an adapter folder (None: no adapter there)."""
    try:
        files = sorted(f for f in Path(folder).iterdir() if f.is_file())
        if not any(f.name == "adapter_config.json" for f in files):
            return None
        return tuple((f.name, (st := f.stat()).st_ino, st.st_size, st.st_mtime_ns) for f in files)
    except OSError:
        return None


def with_generator_lock(generator: Any, fn: Callable[[], T]) -> T:
    """Run ``fn`` (which changes the shared model) once the decode in progress, if any, is done."""
    lock = getattr(generator, "_lock", None)
    if lock is None:
        return fn()
    with lock:
        return fn()


class Propagation:
    """Notices corpus and adapter versions written by any process and applies them to this one.

    Args:
        services: this process's ``apps.core.services.Services`` (its retrievers and generator are swapped).
        adapter_dir: the shared adapter folder (None: adapters are not propagated).
        interval_s: how often :meth:`run` polls.
    """

    def __init__(self, services: Any, adapter_dir: Path | None, interval_s: float = 1.0) -> None:
        from retrieval.corpus import corpus_revision

        self.services = services
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.interval_s = interval_s
        self._lock = threading.Lock()
        home = services.settings.home
        self.corpora: dict[str, str | None] = {n: corpus_revision(home, n) for n in services.retrievers}
        self.adapters: dict[str, Signature | None] = self._adapters_on_disk() if self._local_adapters() else {}

    # ------------------------------------------------------------------ corpora
    def reload_corpus(self, name: str) -> bool:
        """Load the corpus version now on disk, warm it, and swap it in (requests in flight finish on
        the old one). Returns whether anything changed."""
        from retrieval.corpus import corpus_revision, load_retriever
        from retrieval.retriever import RetrieverConfig

        s = self.services
        with self._lock:
            revision = corpus_revision(s.settings.home, name)
            if name in self.corpora and self.corpora[name] == revision:
                return False
            r = s.settings.retrieval
            new = load_retriever(name, s.settings.home, s.embedder, s.graphs,
                                 RetrieverConfig(fusion=r.fusion, token_budget=r.token_budget))  # fmt: skip
            new.warm()  # before the swap: requests keep the old, warm one meanwhile
            old = s.retrievers.get(name)
            s.retrievers[name] = new  # one reference swap
            cs = s.customer_service
            if cs is not None and old is not None and cs.retriever is old:
                cs.retriever = new
            self.corpora[name] = revision
            log.info("corpus %r: now at revision %s", name, revision)
            return True

    # ----------------------------------------------------------------- adapters
    def _local_adapters(self) -> Any:
        gen = self.services.generator
        return getattr(gen, "adapters", None) if gen is not None and self.adapter_dir is not None else None

    def _adapters_on_disk(self) -> dict[str, Signature | None]:
        from models.adapters import adapter_folders

        assert self.adapter_dir is not None
        return {d.name: adapter_signature(d) for d in adapter_folders(self.adapter_dir)}

    def publish_adapter(self, name: str, source: Path) -> Path:
        """Copy an adapter (already loaded here from ``source``) into the shared folder in one swap,
        so every process and the next start find it; returns the published folder."""
        from kgnlp.files import atomic_dir

        assert self.adapter_dir is not None
        final = self.adapter_dir / name
        if Path(source).resolve() != final.resolve():
            with atomic_dir(final) as tmp:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
        with self._lock:
            self.adapters[name] = adapter_signature(final)
        return final

    def withdraw_adapter(self, name: str) -> None:
        """Remove an adapter from the shared folder (one rename, then the files)."""
        assert self.adapter_dir is not None
        final = self.adapter_dir / name
        if final.is_dir():
            trash = final.with_name(f".{name}.removed-{uuid.uuid4().hex[:8]}")
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        with self._lock:
            self.adapters.pop(name, None)

    def sync_adapters(self) -> list[str]:
        """Load adapters published or replaced by another process, forget the ones it removed.
        Returns the names that changed here."""
        adapters = self._local_adapters()
        if adapters is None:
            return []
        gen = self.services.generator
        changed = []
        with self._lock:
            now = self._adapters_on_disk()
            for name, sig in now.items():
                if sig is None or self.adapters.get(name) == sig:
                    continue
                self.adapters[name] = sig  # tried once per version: a broken one is not retried each poll
                path = self.adapter_dir / name  # type: ignore[operator]
                try:
                    with_generator_lock(gen, partial(adapters.load, name, path))
                except Exception as e:  # the previous version, if any, stays in use
                    log.warning("adapter %r from %s could not be loaded here: %s", name, path, e)
                    continue
                changed.append(name)
            for name in [n for n in self.adapters if n not in now]:
                del self.adapters[name]
                if name in adapters.available():
                    with_generator_lock(gen, partial(adapters.forget, name))
                    changed.append(name)
        if changed:
            log.info("adapters changed by another process: %s", ", ".join(changed))
        return changed

    # ------------------------------------------------------------------ polling
    def check(self) -> None:
        """One poll: every loaded corpus and the adapter folder (blocking; a thread runs it)."""
        from retrieval.corpus import corpus_revision

        for name in list(self.services.retrievers):
            if corpus_revision(self.services.settings.home, name) != self.corpora.get(name):
                try:
                    self.reload_corpus(name)
                except Exception as e:  # the old version keeps serving; the next poll tries again
                    log.warning("corpus %r changed on disk but could not be reloaded: %s", name, e)
        self.sync_adapters()
        admin = getattr(self.services, "recommend_admin", None)
        if admin is not None:
            try:
                admin.sync()
            except Exception as e:  # the served model stays; the next poll tries again
                log.warning("the recommend catalogue or model changed but could not be reloaded: %s", e)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # a poll that failed is logged; the next one tries again
                log.exception("polling for run-time changes failed")


def propagation(services: Any) -> Propagation:
    """The process's :class:`Propagation` (created on first use for services built by hand)."""
    prop = getattr(services, "propagation", None)
    if prop is None:
        m = services.settings.models
        adapter_dir = m.adapter_dir or services.settings.home / "adapters"
        prop = Propagation(services, adapter_dir, services.settings.server.reload_poll_s)
        services.propagation = prop
    return prop
