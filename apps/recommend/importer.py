"""``kgnlp recommend import``: a user's catalogue from CSV or JSONL files into its graph and interaction log.

Three files, each CSV (header row) or JSONL (one object per line), chosen by suffix:

- **items** (required): ``item_id, name, text, tags`` (CSV tags separated by ``;``); every other
  CSV column (or the JSONL ``attributes`` object) is an attribute that becomes a fact
  ``item -column-> column:value`` (brand, category, artist …); JSONL may also give ``facts``.
- **relations** (optional): ``head, relation, tail, tail_name``: facts between any entities
  (``category:tv -subcategory_of-> category:video``). A head must be an item or an entity named
  by some fact; a tail is created when new.
- **interactions** (optional): ``user_id, item_id, weight, ts, event_id``; ``ts`` in unix seconds
  or ISO 8601. The item must be in the catalogue.

Every row of every file is validated before anything is written; errors name ``file:line``.
The graph write is one transaction and the events another, so a bad file writes nothing, and
importing the same files again changes nothing (items and facts are upserts, events are keyed).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from apps.recommend.catalogue_graph import ITEM_TYPE, entity_type, item_entity
from apps.recommend.interactions import InteractionLog, InteractionRow
from apps.recommend.schemas import InteractionIn, ItemIn, RelationIn
from kg.store import Entity, GraphStore, Relation
from kgnlp.errors import RowErrors, ValidationError

__all__ = ["CatalogueFiles", "ImportBatch", "apply_import", "read_import", "write_files"]

MAX_ERRORS = 20
_ITEM_COLUMNS = {"item_id", "name", "text", "tags"}
_MAX_ITEM_FACTS = 100  # ItemIn.facts' cap


@dataclass(frozen=True)
class CatalogueFiles:
    """The files of one import (``relations`` and ``interactions`` optional)."""

    items: Path | None = None
    relations: Path | None = None
    interactions: Path | None = None


@dataclass
class ImportBatch:
    """Validated rows, ready to write."""

    items: list[ItemIn] = field(default_factory=list)
    relations: list[RelationIn] = field(default_factory=list)
    interactions: list[InteractionRow] = field(default_factory=list)


def _rows(path: Path, errors: RowErrors) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, row)`` of a CSV or JSONL file (empty lines skipped)."""
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ValidationError(f"{path}: expected a .csv or .jsonl file")
    try:
        fh = path.open(encoding="utf-8", newline="")
    except OSError as e:
        raise ValidationError(f"{path}: cannot read: {e.strerror or e}") from e
    with fh:
        try:
            if suffix == ".csv":
                reader = csv.DictReader(fh)
                for row in reader:
                    where = f"{name}:{reader.line_num}"
                    if None in row:
                        errors.add(where, f"{len(row[None])} value(s) more than the header's columns")
                        continue
                    yield where, {k.strip(): v for k, v in row.items() if k is not None and v not in (None, "")}
            else:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        errors.add(f"{name}:{n}", f"not JSON: {e.msg}")
                        continue
                    if not isinstance(obj, dict):
                        errors.add(f"{name}:{n}", "expected a JSON object")
                        continue
                    yield f"{name}:{n}", obj
        except UnicodeDecodeError as e:
            raise ValidationError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
        except csv.Error as e:
            raise ValidationError(f"{path}: malformed CSV: {e}") from e


def _check(model: type[BaseModel], where: str, row: dict[str, Any], errors: RowErrors) -> Any:
    try:
        return model.model_validate(row)
    except PydanticError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "row"
        errors.add(where, f"{loc}: {first['msg']}")
        return None


def _item_row(row: dict[str, Any], csv_file: bool) -> dict[str, Any]:
    if not csv_file:
        return row
    out = {k: row[k] for k in _ITEM_COLUMNS if k in row}
    if "tags" in out:
        out["tags"] = [t.strip() for t in str(out["tags"]).split(";") if t.strip()]
    attrs = {k: v for k, v in row.items() if k not in _ITEM_COLUMNS}
    if attrs:
        out["attributes"] = attrs
    return out


def _ts(value: Any) -> Any:
    """Unix seconds from a number or an ISO 8601 string (left as is when neither: the model rejects it)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return value
            return dt.timestamp()
    return value


def read_import(files: CatalogueFiles, store: GraphStore) -> ImportBatch:
    """Read and validate every row; nothing is written.

    Args:
        files: the files to import.
        store: the catalogue's graph (ids already there count as known).

    Raises:
        ValidationError: any invalid row (up to 20 listed as ``file:line: what``), duplicate ids, an
            interaction or relation naming an unknown item or entity.
    """
    errors = RowErrors(MAX_ERRORS)
    batch = ImportBatch()
    first_line: dict[str, str] = {}
    if files.items is not None:
        for where, row in _rows(files.items, errors):
            it = _check(ItemIn, where, _item_row(row, files.items.suffix.lower() == ".csv"), errors)
            if it is None:
                continue
            if it.item_id in first_line:
                errors.add(where, f"item_id {it.item_id!r} already given at {first_line[it.item_id]}")
                continue
            first_line[it.item_id] = where
            batch.items.append(it)
    new_items = {it.item_id for it in batch.items}
    named = {eid for it in batch.items for _, eid, _ in it.all_facts()}
    relation_rows: list[tuple[str, RelationIn]] = []
    if files.relations is not None:
        for where, row in _rows(files.relations, errors):
            rel = _check(RelationIn, where, row, errors)
            if rel is not None:
                relation_rows.append((where, rel))
                named.add(rel.tail)
    interaction_rows: list[tuple[str, InteractionIn]] = []
    if files.interactions is not None:
        for where, row in _rows(files.interactions, errors):
            if "ts" in row:
                row = {**row, "ts": _ts(row["ts"])}
            x = _check(InteractionIn, where, row, errors)
            if x is not None:
                interaction_rows.append((where, x))
    # ids the rows refer to must exist in the batch or in the graph
    unknown = {r.head for _, r in relation_rows} - new_items - named
    unknown |= {x.item_id for _, x in interaction_rows} - new_items
    existing = store.get_many(unknown) if unknown else {}
    for where, r in relation_rows:
        if r.head not in new_items and r.head not in named and r.head not in existing:
            errors.add(where, f"head {r.head!r} is neither an item nor an entity of the catalogue")
        else:
            batch.relations.append(r)
    for where, x in interaction_rows:
        if x.item_id not in new_items and (x.item_id not in existing or existing[x.item_id].type != ITEM_TYPE):
            errors.add(where, f"unknown item {x.item_id!r}")
        else:
            batch.interactions.append(InteractionRow(x.user_id, x.item_id, x.weight, x.ts or 0.0, x.event_id))
    errors.raise_any()
    return batch


def apply_import(batch: ImportBatch, store: GraphStore, log: InteractionLog, catalogue: str) -> dict[str, int]:
    """Write a validated batch: the graph in one transaction, then the events in one.

    Returns:
        Counts: items, facts and events in the files, and what was new.
    """
    entities: dict[str, Entity] = {}
    relations: list[Relation] = []
    for it in batch.items:
        facts = it.all_facts()
        entities[it.item_id] = item_entity(it.item_id, it.name.strip(), it.tags, it.text, source="import")
        for rel, eid, ename in facts:
            relations.append(Relation(it.item_id, rel, eid, source="import"))
            entities.setdefault(eid, Entity(id=eid, type=entity_type(eid), name=ename or eid, source="import"))
    for r in batch.relations:
        relations.append(Relation(r.head, r.relation, r.tail, source="import"))
        entities.setdefault(r.tail, Entity(id=r.tail, type=entity_type(r.tail), name=r.tail_name or r.tail,
                                           source="import"))  # fmt: skip
    # an entity already in the graph keeps its name and type; items are always (re)written
    present = store.get_many([e for e, v in entities.items() if v.type != ITEM_TYPE])
    write = [v for e, v in entities.items() if v.type == ITEM_TYPE or e not in present]
    res = store.upsert(write, relations, create_missing=False)
    added = log.add(catalogue, batch.interactions) if batch.interactions else 0
    return {"items": len(batch.items), "facts": len(relations), "interactions": len(batch.interactions),
            "entities_added": res.entities_added, "entities_updated": res.entities_updated,
            "facts_added": res.relations_added, "interactions_added": added}  # fmt: skip


def write_files(catalogue: Any, folder: Path) -> CatalogueFiles:
    """Write a :class:`~apps.recommend.data.Catalogue` as the three import files (the format by example).

    Item facts go into ``items.jsonl`` (``facts``, up to the per-item cap; the rest and the facts
    between other entities into ``relations.csv``), events into ``interactions.csv``.
    """
    from kgnlp.files import atomic_write_bytes

    c = catalogue
    n = c.n_items
    gid = [*c.item_ids, *c.entity_ids[n:]]
    facts: list[list[dict[str, str]]] = [[] for _ in range(n)]
    other: list[tuple[str, str, str, str]] = []
    for h, r, t in c.triples.tolist():
        name = c.entity_names[t] if t < len(c.entity_names) else ""
        if h < n and len(facts[h]) < _MAX_ITEM_FACTS:
            facts[h].append({"relation": c.relations[r], "entity_id": gid[t], "entity_name": name})
        else:  # facts between entities, and an item's facts beyond the per-item cap
            other.append((gid[h], c.relations[r], gid[t], name))
    items = [json.dumps({"item_id": c.item_ids[i], "name": c.item_names[i], "tags": c.item_tags[i][:50],
                         **({"text": c.item_texts[i]} if c.item_texts and c.item_texts[i] else {}),
                         "facts": facts[i]}, ensure_ascii=False) for i in range(n)]  # fmt: skip
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "items.jsonl", ("\n".join(items) + "\n").encode("utf-8"))

    def csv_bytes(header: list[str], rows: list[Any]) -> bytes:
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue().encode("utf-8")

    atomic_write_bytes(folder / "relations.csv", csv_bytes(["head", "relation", "tail", "tail_name"], other))
    inter = c.interactions
    rows = [(c.user_ids[u], c.item_ids[i], f"{w:g}", f"{t * 86400.0:.0f}" if t else "")
            for u, i, w, t in zip(inter.users.tolist(), inter.items.tolist(), inter.weights.tolist(),
                                  inter.ts.tolist(), strict=True)]  # fmt: skip
    atomic_write_bytes(folder / "interactions.csv", csv_bytes(["user_id", "item_id", "weight", "ts"], rows))
    return CatalogueFiles(folder / "items.jsonl", folder / "relations.csv", folder / "interactions.csv")
