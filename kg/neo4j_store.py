"""Graph store on Neo4j through the official driver (the scale-out backend).

Model: nodes ``(:KgEntity {graph, id, ...})`` unique on ``(graph, id)``, so many
named graphs share one database; one relationship type ``KG_REL`` whose
``type`` property holds the relation type (any vocabulary, as in ladybug).
Every query is parameterised; user input is never formatted into Cypher.
Writes run in one managed transaction (``execute_write``), which the driver
retries on transient errors; rows are sent in ``UNWIND`` batches.

No Neo4j server can be installed on the development machines: the contract
suite runs against this backend whenever ``KGNLP_NEO4J_URI`` is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Self

from kg.store import (
    DEFAULT_ENTITY_TYPE,
    Direction,
    Entity,
    GraphStats,
    ProgressFn,
    Relation,
    Subgraph,
    UpsertResult,
    check_entity,
    check_neighbor_args,
    check_relation,
)
from kg.text import normalize_key
from kg.traverse import expand
from kgnlp.errors import ConfigurationError, NotFoundError, StoreError, ValidationError

__all__ = ["Neo4jConfig", "Neo4jStore"]

_SCHEMA = (
    ("CREATE CONSTRAINT kg_entity_graph_id IF NOT EXISTS FOR (n:KgEntity) REQUIRE (n.graph, n.id) IS UNIQUE"),
    "CREATE INDEX kg_entity_graph_key IF NOT EXISTS FOR (n:KgEntity) ON (n.graph, n.key)",
    "CREATE INDEX kg_entity_graph_type IF NOT EXISTS FOR (n:KgEntity) ON (n.graph, n.type)",
    "CREATE INDEX kg_rel_type IF NOT EXISTS FOR ()-[r:KG_REL]-() ON (r.type)",
)
_ENTITY_RET = (
    "n.id AS id, n.type AS type, n.name AS name, n.aliases AS aliases, "
    "n.attributes AS attributes, n.description AS description, n.source AS source"
)
_REL_RET = "r.type AS type, r.weight AS weight, r.ts AS ts, r.attributes AS attributes, r.source AS source"


@dataclass(frozen=True)
class Neo4jConfig:
    """Connection settings; ``password`` is a secret and never shown in ``repr``."""

    uri: str = ""
    user: str = "neo4j"
    password: str = field(default="", repr=False)
    database: str | None = None
    batch_size: int = 5000

    @classmethod
    def from_env(cls) -> Neo4jConfig:
        """Read ``KGNLP_NEO4J_URI``, ``_USER``, ``_PASSWORD``, ``_DATABASE``."""
        return cls(
            uri=os.environ.get("KGNLP_NEO4J_URI", ""),
            user=os.environ.get("KGNLP_NEO4J_USER", "neo4j"),
            password=os.environ.get("KGNLP_NEO4J_PASSWORD", ""),
            database=os.environ.get("KGNLP_NEO4J_DATABASE") or None,
        )

    def replace(self, **changes: Any) -> Neo4jConfig:
        """Return a copy with some fields changed (unknown names are an error)."""
        unknown = set(changes) - {"uri", "user", "password", "database", "batch_size"}
        if unknown:
            raise ConfigurationError(f"unknown Neo4j option(s): {sorted(unknown)}")
        if "password" in changes and hasattr(changes["password"], "get_secret_value"):
            changes["password"] = changes["password"].get_secret_value()
        return replace(self, **changes)


def _entity_props(graph: str, e: Entity) -> dict[str, Any]:
    key = normalize_key(e.name or e.id)
    keys = sorted({key, *(normalize_key(a) for a in e.aliases)} - {""})
    return {
        "graph": graph,
        "id": e.id,
        "type": e.type,
        "name": e.name,
        "key": key,
        "keys": keys,
        "aliases": list(e.aliases),
        "attributes": json.dumps(e.attributes, sort_keys=True, ensure_ascii=False) if e.attributes else "",
        "description": e.description,
        "source": e.source,
    }


def _entity(rec: Any) -> Entity:
    return Entity(
        id=rec["id"],
        type=rec["type"] or DEFAULT_ENTITY_TYPE,
        name=rec["name"] or "",
        aliases=list(rec["aliases"] or []),
        attributes=json.loads(rec["attributes"]) if rec["attributes"] else {},
        description=rec["description"] or "",
        source=rec["source"] or "",
    )


def _rel_props(r: Relation) -> dict[str, Any]:
    return {
        "h": r.head,
        "t": r.tail,
        "type": r.type,
        "weight": r.weight,
        "ts": r.timestamp.isoformat() if r.timestamp else None,
        "attributes": json.dumps(r.attributes, sort_keys=True, ensure_ascii=False) if r.attributes else None,
        "source": r.source or None,
    }


def _relation(h: str, t: str, rec: Any) -> Relation:
    return Relation(
        head=h,
        type=rec["type"],
        tail=t,
        attributes=json.loads(rec["attributes"]) if rec["attributes"] else {},
        weight=rec["weight"],
        timestamp=datetime.fromisoformat(rec["ts"]) if rec["ts"] else None,
        source=rec["source"] or "",
    )


class Neo4jStore:
    """``GraphStore`` on Neo4j; one instance serves one named graph.

    Use :meth:`open` for a store that owns its driver; a ``GraphRegistry`` passes one
    shared driver to all its stores instead (a driver is a connection pool: one per
    server, not one per graph). The constructor does no I/O.

    Args:
        config: Connection settings.
        graph: Graph name (namespace of the nodes).
        driver: A shared ``neo4j.Driver`` (not closed by :meth:`close`); None until :meth:`open`.
    """

    backend = "neo4j"

    def __init__(self, config: Neo4jConfig, graph: str = "default", *, driver: Any = None) -> None:
        self.config = config
        self.graph = graph
        self._driver: Any = driver
        self._owns_driver = driver is None

    @staticmethod
    def connect(config: Neo4jConfig) -> Any:
        """Create a driver for ``config`` (lazy: it connects on its first query).

        Args:
            config: Connection settings (``uri`` required).

        Returns:
            A ``neo4j.Driver``; the caller closes it.
        """
        if not config.uri:
            raise ConfigurationError("Neo4j uri is empty: set KGNLP_NEO4J_URI")
        try:
            import neo4j
        except ImportError as e:  # pragma: no cover - core dependency
            raise StoreError("the Neo4j backend needs the 'neo4j' package") from e
        try:
            return neo4j.GraphDatabase.driver(config.uri, auth=(config.user, config.password))
        except (neo4j.exceptions.DriverError, ValueError) as e:
            raise StoreError(f"cannot use Neo4j at {config.uri}: {e}") from e

    @classmethod
    def open(cls, config: Neo4jConfig, graph: str = "default") -> Neo4jStore:
        """Connect, verify the server and create constraints/indexes.

        Args:
            config: Connection settings (``uri`` required).
            graph: Graph name.

        Returns:
            The open store (it owns its driver).
        """
        import neo4j

        store = cls(config, graph)
        store._driver = cls.connect(config)
        try:
            store._driver.verify_connectivity()
        except neo4j.exceptions.Neo4jError as e:
            store.close()
            raise StoreError(f"Neo4j at {config.uri}: {e.code}: {e.message}") from e
        except neo4j.exceptions.DriverError as e:
            store.close()
            raise StoreError(f"cannot connect to Neo4j at {config.uri}: {e}") from e
        try:
            store.ensure_schema()
        except StoreError:
            store.close()
            raise
        return store

    def ensure_schema(self) -> None:
        """Create the constraints and indexes every graph shares (idempotent DDL).

        Runs when a graph is created or opened on its own, never on a registry's read path.
        """
        for stmt in _SCHEMA:
            self._run_write(lambda tx, s=stmt: tx.run(s).consume())

    def graph_names(self) -> list[str]:
        """Names of the graphs stored in the database (through this store's driver)."""
        return sorted(r["g"] for r in self._read("MATCH (n:KgEntity) RETURN DISTINCT n.graph AS g"))

    @classmethod
    def list_graphs(cls, config: Neo4jConfig) -> list[str]:
        """Names of the graphs stored in the database."""
        s = cls.open(config, "default")
        try:
            return s.graph_names()
        finally:
            s.close()

    def close(self) -> None:
        """Close the driver when this store owns it (idempotent)."""
        if self._driver is not None and self._owns_driver:
            self._driver.close()
        self._driver = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing
    def _session(self) -> Any:
        if self._driver is None:
            raise StoreError("Neo4j store is closed")
        return self._driver.session(database=self.config.database)

    def _run_write(self, fn: Any) -> Any:
        import neo4j

        try:
            with self._session() as s:
                return s.execute_write(fn)  # retried by the driver on transient errors
        except neo4j.exceptions.Neo4jError as e:
            raise StoreError(f"Neo4j write failed, nothing was written: {e.code}: {e.message}") from e
        except neo4j.exceptions.DriverError as e:
            raise StoreError(f"Neo4j write failed, nothing was written: {e}") from e

    def _read(self, query: str, **params: Any) -> list[Any]:
        import neo4j

        def work(tx: Any) -> list[Any]:
            return list(tx.run(query, params))

        try:
            with self._session() as s:
                return s.execute_read(work)
        except neo4j.exceptions.Neo4jError as e:
            raise StoreError(f"Neo4j query failed: {e.code}: {e.message}") from e
        except neo4j.exceptions.DriverError as e:
            raise StoreError(f"Neo4j query failed: {e}") from e

    def _batches(self, rows: list[Any]) -> Iterator[list[Any]]:
        n = self.config.batch_size
        for i in range(0, len(rows), n):
            yield rows[i : i + n]

    # ---------------------------------------------------------------- writes
    def upsert(
        self,
        entities: Iterable[Entity] = (),
        relations: Iterable[Relation] = (),
        *,
        create_missing: bool = False,
        progress: ProgressFn | None = None,
        validate: bool = True,
    ) -> UpsertResult:
        """Insert or replace entities and relations in one transaction.

        Args:
            entities: Entities (last one wins per id).
            relations: Relations (identity ``(head, type, tail)``).
            create_missing: Create bare entities for unknown endpoints.
            progress: Called as ``progress(stage, done, total)`` inside the transaction.
            validate: Check every record first.

        Returns:
            Counts of added and updated records.
        """
        ents: dict[str, dict[str, Any]] = {}
        for e in entities:
            if validate:
                check_entity(e)
            ents[e.id] = _entity_props(self.graph, e)
        rels: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in relations:
            if validate:
                check_relation(r)
            rels[r.key] = _rel_props(r)
        if not ents and not rels:
            return UpsertResult()
        g = self.graph

        def work(tx: Any) -> UpsertResult:
            res = UpsertResult()
            ids = sorted(set(ents) | {k[0] for k in rels} | {k[2] for k in rels})
            existing: dict[str, dict[str, Any]] = {}
            for chunk in self._batches(ids):
                for rec in tx.run(
                    "UNWIND $ids AS x MATCH (n:KgEntity {graph: $g, id: x}) RETURN n.id AS id, properties(n) AS p",
                    ids=chunk,
                    g=g,
                ):
                    existing[rec["id"]] = dict(rec["p"])
            missing = [i for i in ids if i not in existing and i not in ents]
            if missing and not create_missing:
                sample = ", ".join(repr(m) for m in missing[:5])
                raise ValidationError(f"{len(missing)} relation endpoint(s) are not entities: {sample}")
            rows = [
                p
                for i, p in ents.items()
                if i not in existing or {**existing[i], "keys": sorted(existing[i].get("keys") or [])} != p
            ]
            for i in missing:
                rows.append(_entity_props(g, Entity(i, DEFAULT_ENTITY_TYPE, i)))
            res.entities_added = sum(1 for p in rows if p["id"] not in existing)
            res.entities_updated = len(rows) - res.entities_added
            total = len(rows) + len(rels)
            if progress:
                progress("entities", 0, total)
            for chunk in self._batches(rows):
                tx.run(
                    "UNWIND $rows AS row MERGE (n:KgEntity {graph: row.graph, id: row.id}) SET n += row", rows=chunk
                ).consume()
            if progress:
                progress("relations", len(rows), total)
            heads = sorted({k[0] for k in rels if k[0] in existing})
            old: dict[tuple[str, str, str], dict[str, Any]] = {}
            for chunk in self._batches(heads):
                for rec in tx.run(
                    "UNWIND $ids AS x MATCH (a:KgEntity {graph: $g, id: x})-[r:KG_REL]->"
                    "(b:KgEntity) RETURN a.id AS h, b.id AS t, properties(r) AS p",
                    ids=chunk,
                    g=g,
                ):
                    p = dict(rec["p"])
                    old[(rec["h"], str(p.get("type")), rec["t"])] = p
            write = []
            for k, p in rels.items():
                o = old.get(k)
                props = {x: p[x] for x in ("type", "weight", "ts", "attributes", "source")}
                if o is None:
                    res.relations_added += 1
                elif {x: o.get(x) for x in props} != props:
                    res.relations_updated += 1
                else:
                    continue
                write.append(p)
            for chunk in self._batches(write):
                tx.run(
                    "UNWIND $rows AS row "
                    "MATCH (a:KgEntity {graph: $g, id: row.h}), (b:KgEntity {graph: $g, id: row.t}) "
                    "MERGE (a)-[r:KG_REL {type: row.type}]->(b) "
                    "SET r.weight = row.weight, r.ts = row.ts, r.attributes = row.attributes, "
                    "r.source = row.source",
                    rows=chunk,
                    g=g,
                ).consume()
            if progress:
                progress("commit", total, total)
            return res

        return self._run_write(work)

    def upsert_triples(
        self,
        triples: Sequence[tuple[str, str, str]],
        *,
        source: str = "",
        create_missing: bool = True,
        progress: ProgressFn | None = None,
        assume_unique: bool = False,
    ) -> UpsertResult:
        """Add plain triples atomically; existing ones keep their properties.

        Args:
            triples: ``(head, type, tail)`` tuples.
            source: Provenance recorded on new relations.
            create_missing: Create bare entities for unknown endpoints.
            progress: Progress callback.
            assume_unique: Unused (Neo4j's MERGE deduplicates).

        Returns:
            Counts of added entities and relations.
        """
        uniq = list(dict.fromkeys(triples))
        if not uniq:
            return UpsertResult()
        g = self.graph

        def work(tx: Any) -> UpsertResult:
            ids = sorted({h for h, _, _ in uniq} | {t for _, _, t in uniq})
            existing: set[str] = set()
            for chunk in self._batches(ids):
                existing.update(
                    r["id"]
                    for r in tx.run(
                        "UNWIND $ids AS x MATCH (n:KgEntity {graph: $g, id: x}) RETURN n.id AS id", ids=chunk, g=g
                    )
                )
            missing = [i for i in ids if i not in existing]
            if missing and not create_missing:
                raise ValidationError(
                    f"{len(missing)} relation endpoint(s) are not entities: " + ", ".join(repr(m) for m in missing[:5])
                )
            if progress:
                progress("entities", 0, len(uniq))
            for chunk in self._batches([_entity_props(g, Entity(i, DEFAULT_ENTITY_TYPE, i)) for i in missing]):
                tx.run("UNWIND $rows AS row CREATE (n:KgEntity) SET n = row", rows=chunk).consume()
            if progress:
                progress("relations", len(missing), len(uniq))
            added = 0
            for chunk in self._batches([{"h": h, "type": r, "t": t} for h, r, t in uniq]):
                summary = tx.run(
                    "UNWIND $rows AS row "
                    "MATCH (a:KgEntity {graph: $g, id: row.h}), (b:KgEntity {graph: $g, id: row.t}) "
                    "MERGE (a)-[r:KG_REL {type: row.type}]->(b) "
                    "ON CREATE SET r.source = $source",
                    rows=chunk,
                    g=g,
                    source=source or None,
                ).consume()
                added += summary.counters.relationships_created
            if progress:
                progress("commit", len(uniq), len(uniq))
            return UpsertResult(entities_added=len(missing), relations_added=added)

        return self._run_write(work)

    def delete_entity(self, entity_id: str) -> None:
        """Delete an entity and its edges (``NotFoundError`` when absent)."""
        g = self.graph

        def work(tx: Any) -> int:
            rec = tx.run(
                "MATCH (n:KgEntity {graph: $g, id: $id}) DETACH DELETE n RETURN count(*) AS c", g=g, id=entity_id
            ).single()
            return int(rec["c"]) if rec else 0

        if self._run_write(work) == 0:
            raise NotFoundError(f"entity {entity_id!r} not found")

    def delete_relations(self, heads: Iterable[str], type: str) -> int:
        """Delete the ``type`` edges leaving the entities ``heads``; returns how many were deleted."""
        ids, g = list(dict.fromkeys(heads)), self.graph
        if not ids:
            return 0

        def work(tx: Any) -> int:
            rec = tx.run(
                "UNWIND $ids AS x MATCH (a:KgEntity {graph: $g, id: x})-[r:KG_REL {type: $t}]->() "
                "DELETE r RETURN count(*) AS c",
                ids=ids, g=g, t=type,
            ).single()  # fmt: skip
            return int(rec["c"]) if rec else 0

        return int(self._run_write(work))

    def drop_graph(self) -> None:
        """Delete every node and edge of this graph (batched)."""
        g = self.graph
        while True:
            n = self._run_write(
                lambda tx: tx.run(
                    "MATCH (n:KgEntity {graph: $g}) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS c", g=g
                ).single()["c"]
            )
            if not n:
                return

    # ---------------------------------------------------------------- reads
    def get(self, entity_id: str) -> Entity:
        """Return an entity by id (``NotFoundError`` when absent)."""
        rows = self._read(f"MATCH (n:KgEntity {{graph: $g, id: $id}}) RETURN {_ENTITY_RET}", g=self.graph, id=entity_id)
        if not rows:
            raise NotFoundError(f"entity {entity_id!r} not found")
        return _entity(rows[0])

    def get_many(self, entity_ids: Iterable[str]) -> dict[str, Entity]:
        """Return the entities that exist among ``entity_ids``."""
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return {}
        rows = self._read(
            f"UNWIND $ids AS x MATCH (n:KgEntity {{graph: $g, id: x}}) RETURN {_ENTITY_RET}", g=self.graph, ids=ids
        )
        return {r["id"]: _entity(r) for r in rows}

    def find(
        self,
        query: str | None = None,
        *,
        type: str | None = None,
        mode: Literal["exact", "contains"] = "exact",
        limit: int = 20,
    ) -> list[Entity]:
        """Find entities by name/alias (case/accent-insensitive) and/or type."""
        if limit < 1:
            raise ValidationError(f"limit must be >= 1, got {limit}")
        if mode not in ("exact", "contains"):
            raise ValidationError(f"mode must be 'exact' or 'contains', got {mode!r}")
        key = normalize_key(query) if query is not None else None
        if query is not None and not key:
            return []
        cond = ""
        if key is not None:
            cond = "AND $k IN n.keys " if mode == "exact" else "AND any(x IN n.keys WHERE x CONTAINS $k) "
        if type is not None:
            cond += "AND n.type = $type "
        fetch = limit if key is None or mode == "exact" else max(limit * 20, 200)
        rows = self._read(
            f"MATCH (n:KgEntity {{graph: $g}}) WHERE true {cond}"
            f"RETURN {_ENTITY_RET}, n.key AS key ORDER BY n.id LIMIT $limit",
            g=self.graph,
            k=key,
            type=type,
            limit=fetch,
        )
        if key is not None:
            rows.sort(
                key=lambda r: (
                    0 if r["key"] == key else 2 if (r["key"] or "").startswith(key) else 3,
                    len(r["key"] or ""),
                    r["id"],
                )
            )
        return [_entity(r) for r in rows[:limit]]

    def neighbors(
        self,
        entity_id: str,
        *,
        hops: int = 1,
        relation_types: Iterable[str] | None = None,
        direction: Direction = "both",
        limit: int = 100,
    ) -> Subgraph:
        """Breadth-first 1-3 hop neighbourhood with one shortest path per neighbour."""
        check_neighbor_args(hops, direction, limit)
        seed = self.get(entity_id)
        return expand(
            seed,
            hops=hops,
            direction=direction,
            relation_types=sorted(set(relation_types or ())),
            limit=limit,
            fetch=self._fetch_level,
            get_many=self.get_many,
            provenance={"backend": self.backend, "graph": self.graph},
        )

    def _fetch_level(self, ids: list[str], d: str, types: list[str], cap: int) -> list[Relation]:
        pattern = "-[r:KG_REL]->" if d == "out" else "<-[r:KG_REL]-"
        rows = self._read(
            f"UNWIND $ids AS x MATCH (a:KgEntity {{graph: $g, id: x}}){pattern}(b:KgEntity) "
            f"WHERE size($types) = 0 OR r.type IN $types "
            f"RETURN a.id AS a, b.id AS b, {_REL_RET} LIMIT $cap",
            g=self.graph,
            ids=ids,
            types=types,
            cap=cap,
        )
        if d == "out":
            return [_relation(r["a"], r["b"], r) for r in rows]
        return [_relation(r["b"], r["a"], r) for r in rows]

    def stats(self) -> GraphStats:
        """Entity and relation counts by type."""
        et = {
            r["t"]: r["c"]
            for r in self._read("MATCH (n:KgEntity {graph: $g}) RETURN n.type AS t, count(*) AS c", g=self.graph)
        }
        rt = {
            r["t"]: r["c"]
            for r in self._read(
                "MATCH (:KgEntity {graph: $g})-[r:KG_REL]->() RETURN r.type AS t, count(*) AS c", g=self.graph
            )
        }
        return GraphStats(sum(et.values()), sum(rt.values()), dict(sorted(et.items())), dict(sorted(rt.items())))

    def iter_entities(self, batch_size: int = 10_000) -> Iterator[Entity]:
        """Yield every entity ordered by id (keyset pagination)."""
        last = ""
        while True:
            rows = self._read(
                f"MATCH (n:KgEntity {{graph: $g}}) WHERE n.id > $last RETURN {_ENTITY_RET} ORDER BY n.id LIMIT $n",
                g=self.graph,
                last=last,
                n=batch_size,
            )
            yield from (_entity(r) for r in rows)
            if len(rows) < batch_size:
                return
            last = rows[-1]["id"]

    def iter_triples(self, batch_size: int = 50_000) -> Iterator[tuple[str, str, str]]:
        """Yield every relation as ``(head, type, tail)``."""
        for r in self.iter_relations(batch_size):
            yield r.key

    def iter_relations(self, batch_size: int = 50_000) -> Iterator[Relation]:
        """Yield every relation with its properties."""
        rows = self._read(
            f"MATCH (a:KgEntity {{graph: $g}})-[r:KG_REL]->(b:KgEntity) RETURN a.id AS a, b.id AS b, {_REL_RET}",
            g=self.graph,
        )
        for r in rows:
            yield _relation(r["a"], r["b"], r)
