"""Read entity/relation files, validate every row, and load them as one batch.

Formats (``--format``):

* ``triples``: ``head<TAB>relation<TAB>tail`` per line (whitespace-separated
  when there is no tab); ``#`` comments and blank lines are skipped.
* ``csv`` / ``tsv``: a header row. A table with an ``id`` column holds
  entities (``id,type,name,aliases,description,source`` + any other column as
  an attribute; aliases separated by ``|``); a table with ``head``,
  ``type`` (or ``relation``) and ``tail`` holds relations
  (``weight``, ``timestamp``, ``source`` + other columns as attributes).
* ``jsonl``: one object per line, an entity when it has ``id``, a relation
  when it has ``head``/``tail``.

A path may be a file or a directory (all files of the format, sorted by name).
Everything read from one call is validated first and written in one store
transaction: any bad row raises ``IngestError`` naming ``file:line`` and the
store is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

from kg.store import (
    DEFAULT_ENTITY_TYPE,
    Entity,
    GraphStore,
    ProgressFn,
    Relation,
    UpsertResult,
    check_entity,
    check_relation,
)
from kgnlp.errors import IngestError, RowErrors, ValidationError

__all__ = ["FORMATS", "IngestBatch", "IngestReport", "ingest_path", "read_batch"]

Format = Literal["csv", "tsv", "jsonl", "triples"]
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "jsonl": (".jsonl", ".ndjson"),
    "triples": (".txt", ".tsv", ".triples", ".nt3"),
}
MAX_ERRORS = 20
_PADDING = ("\n ", "\n\t", "\n#", " \n", "\t\n", "\n\n", " \t", "\t ", "\x0b", "\x0c")
_ENTITY_FIELDS = {"id", "type", "name", "aliases", "description", "source", "attributes"}
_RELATION_FIELDS = {"head", "type", "relation", "tail", "weight", "timestamp", "source", "attributes"}


@dataclass(slots=True)
class IngestBatch:
    """Validated records read from one or more files."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    triples: list[tuple[str, str, str]] = field(default_factory=list)
    triples_unique: bool = False
    files: list[Path] = field(default_factory=list)
    rows: int = 0


@dataclass(slots=True)
class IngestReport:
    """Outcome of :func:`ingest_path`."""

    files: list[str]
    rows: int
    entities: int
    relations: int
    result: UpsertResult
    seconds: float

    @property
    def triples_per_s(self) -> float:
        """Relations read per second, end to end."""
        return self.relations / self.seconds if self.seconds > 0 else 0.0


def _files(path: Path, fmt: str) -> list[Path]:
    if not path.exists():
        raise IngestError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    exts = FORMATS[fmt]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(exts))
    if not files:
        raise IngestError(f"{path}: no {fmt} files ({', '.join(exts)}) in directory")
    return files


def _read_text(f: Path) -> str:
    try:
        return f.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise IngestError(f"{f}: not UTF-8 ({e})") from e
    except OSError as e:
        raise IngestError(f"{f}: cannot read ({e})") from e


def _read_triples(f: Path, batch: IngestBatch, errors: RowErrors) -> None:
    text = _read_text(f)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    # fast path: every line has exactly 3 non-empty, unpadded, tab-separated fields
    if (
        text.count("\t") == 2 * len(lines)
        and set(map(str.count, lines, repeat("\t"))) == {2}
        and "\t\t" not in text
        and not text.startswith(("#", "\t", " "))
        and not any(p in text for p in _PADDING)
        and not text[-2:].strip("\n")[-1:].isspace()
    ):
        # dedupe on the raw lines (cheaper than on tuples) so the store can skip it
        batch.triples_unique = not batch.triples
        uniq = dict.fromkeys(lines)
        batch.triples.extend(map(tuple, map(str.split, uniq, repeat("\t"))))  # type: ignore[arg-type]
        batch.rows += len(lines)
        return
    batch.triples_unique = False
    name = str(f)
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        p = line.split("\t")
        if len(p) != 3:
            p = s.split()
        if len(p) != 3:
            errors.add(f"{name}:{i}", f"expected 3 fields (head, relation, tail), got {len(p)}: {line[:80]!r}")
            continue
        h, r, t = (x.strip() for x in p)
        if not h or not r or not t:
            errors.add(f"{name}:{i}", f"empty field in {line[:80]!r}")
            continue
        batch.triples.append((h, r, t))
        batch.rows += 1


def _parse_float(v: Any, where: str, errors: RowErrors) -> float | None:
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        errors.add(where, f"weight must be a number, got {v!r}")
        return None
    if not math.isfinite(x):
        errors.add(where, f"weight must be finite, got {v!r}")
        return None
    return x


def _parse_ts(v: Any, where: str, errors: RowErrors) -> datetime | None:
    if v is None or v == "":
        return None
    try:
        return datetime.fromisoformat(str(v))
    except ValueError:
        errors.add(where, f"timestamp must be ISO 8601, got {v!r}")
        return None


def _parse_aliases(v: Any, where: str, errors: RowErrors) -> list[str]:
    if v is None or v == "":
        return []
    if isinstance(v, list):
        if all(isinstance(a, str) for a in v):
            return [a for a in v if a.strip()]
        errors.add(where, f"aliases must be strings, got {v!r}")
        return []
    if isinstance(v, str):
        return [a.strip() for a in v.split("|") if a.strip()]
    errors.add(where, f"aliases must be a list or '|'-separated string, got {v!r}")
    return []


def _record(rec: dict[str, Any], where: str, batch: IngestBatch, errors: RowErrors) -> None:
    """Turn one table row / JSON object into an Entity or a Relation."""
    if "head" in rec or "tail" in rec:
        attrs = rec.get("attributes") or {}
        if not isinstance(attrs, dict):
            errors.add(where, f"attributes must be an object, got {attrs!r}")
            return
        attrs = dict(attrs)
        attrs.update({k: v for k, v in rec.items() if k not in _RELATION_FIELDS and v not in (None, "")})
        rtype = rec.get("type", rec.get("relation"))
        rel = Relation(
            head=str(rec.get("head") or "").strip(),
            type=str(rtype or "").strip(),
            tail=str(rec.get("tail") or "").strip(),
            attributes=attrs,
            weight=_parse_float(rec.get("weight"), where, errors),
            timestamp=_parse_ts(rec.get("timestamp"), where, errors),
            source=str(rec.get("source") or ""),
        )
        try:
            check_relation(rel)
        except ValidationError as e:
            errors.add(where, str(e))
            return
        batch.relations.append(rel)
    elif "id" in rec:
        attrs = rec.get("attributes") or {}
        if not isinstance(attrs, dict):
            errors.add(where, f"attributes must be an object, got {attrs!r}")
            return
        attrs = dict(attrs)
        attrs.update({k: v for k, v in rec.items() if k not in _ENTITY_FIELDS and v not in (None, "")})
        ent = Entity(
            id=str(rec.get("id") or "").strip(),
            type=str(rec.get("type") or DEFAULT_ENTITY_TYPE).strip(),
            name=str(rec.get("name") or "").strip(),
            aliases=_parse_aliases(rec.get("aliases"), where, errors),
            attributes=attrs,
            description=str(rec.get("description") or ""),
            source=str(rec.get("source") or ""),
        )
        try:
            check_entity(ent)
        except ValidationError as e:
            errors.add(where, str(e))
            return
        batch.entities.append(ent)
    else:
        errors.add(where, "row is neither an entity (needs 'id') nor a relation (needs 'head', 'type', 'tail')")
        return
    batch.rows += 1


def _read_table(f: Path, delim: str, batch: IngestBatch, errors: RowErrors) -> None:
    text = _read_text(f)
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delim)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        errors.add(f"{f}:1", "empty file (a header row is required)")
        return
    except csv.Error as e:
        errors.add(f"{f}:1", f"malformed header: {e}")
        return
    cols = set(header)
    is_entity = "id" in cols
    is_relation = {"head", "tail"} <= cols and bool(cols & {"type", "relation"})
    if not is_entity and not is_relation:
        errors.add(f"{f}:1", f"header must have 'id' (entities) or 'head,type,tail' (relations), got {header}")
        return
    if len(set(header)) != len(header):
        errors.add(f"{f}:1", f"duplicate column names in header {header}")
        return
    start = reader.line_num + 1
    try:
        for row in reader:
            where = f"{f}:{start}"
            start = reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                errors.add(where, f"expected {len(header)} fields, got {len(row)}")
                continue
            _record(dict(zip(header, row, strict=True)), where, batch, errors)
    except csv.Error as e:
        errors.add(f"{f}:{reader.line_num}", f"malformed CSV: {e}")


def _read_jsonl(f: Path, batch: IngestBatch, errors: RowErrors) -> None:
    for i, line in enumerate(_read_text(f).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{f}:{i}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            errors.add(where, f"invalid JSON: {e.msg} at column {e.colno}")
            continue
        if not isinstance(rec, dict):
            errors.add(where, f"expected a JSON object, got {type(rec).__name__}")
            continue
        _record(rec, where, batch, errors)


def read_batch(path: Path, fmt: Format, progress: ProgressFn | None = None) -> IngestBatch:
    """Read and validate every row under ``path``.

    Args:
        path: A file or a directory of files of the format.
        fmt: ``csv``, ``tsv``, ``jsonl`` or ``triples``.
        progress: Called as ``progress("read", files_done, files_total)``.

    Returns:
        The validated batch; raises ``IngestError`` listing ``file:line`` of
        every bad row (first 20) when any row is invalid.
    """
    if fmt not in FORMATS:
        raise IngestError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    path = Path(path)
    files = _files(path, fmt)
    batch = IngestBatch(files=files)
    errors = RowErrors(MAX_ERRORS)
    for n, f in enumerate(files):
        if progress:
            progress("read", n, len(files))
        if fmt == "triples":
            _read_triples(f, batch, errors)
        elif fmt == "jsonl":
            _read_jsonl(f, batch, errors)
        else:
            _read_table(f, "," if fmt == "csv" else "\t", batch, errors)
    if progress:
        progress("read", len(files), len(files))
    errors.raise_any(IngestError, "nothing was ingested")
    return batch


def ingest_path(
    store: GraphStore,
    path: Path,
    fmt: Format,
    *,
    create_missing: bool = True,
    source: str = "",
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Validate and load a file or directory into ``store`` as one atomic batch.

    Args:
        store: Target graph store.
        path: File or directory.
        fmt: ``csv``, ``tsv``, ``jsonl`` or ``triples``.
        create_missing: Create bare entities for relation endpoints not yet
            known (otherwise such rows are an error).
        source: Provenance recorded on triples that have none (``triples`` format).
        progress: Called as ``progress(stage, done, total)``.

    Returns:
        Counts of rows read and of what changed; re-ingesting identical data
        changes nothing.
    """
    t0 = time.perf_counter()
    with _no_gc():
        return _ingest(store, path, fmt, create_missing, source, progress, t0)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # millions of small tuples trigger repeated cyclic-GC passes that cost ~30% of a bulk load
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _ingest(
    store: GraphStore,
    path: Path,
    fmt: Format,
    create_missing: bool,
    source: str,
    progress: ProgressFn | None,
    t0: float,
) -> IngestReport:
    batch = read_batch(path, fmt, progress)
    try:
        if batch.triples:
            result = store.upsert_triples(
                batch.triples,
                source=source,
                create_missing=create_missing,
                progress=progress,
                assume_unique=batch.triples_unique,
            )
        else:
            result = store.upsert(
                batch.entities,
                batch.relations,
                create_missing=create_missing,
                progress=progress,
                validate=False,
            )
    except ValidationError as e:
        raise IngestError(f"{path}: {e}; nothing was ingested") from e
    return IngestReport(
        files=[str(f) for f in batch.files],
        rows=batch.rows,
        entities=len(batch.entities),
        relations=len(batch.relations) + len(batch.triples),
        result=result,
        seconds=time.perf_counter() - t0,
    )
