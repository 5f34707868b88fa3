"""`kgnlp recommend import` / `export` as a user runs them (real ladybug graph, real SQLite log)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("KGNLP_DATABASE_URL", "KGNLP_GRAPH__BACKEND", "KGNLP_GRAPH__PATH"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def _kgnlp(*args: str) -> tuple[int, str]:
    """Run ``kgnlp recommend …`` in-process; a kgnlp error is what ``main`` would print in red."""
    from apps.cli import app
    from kgnlp.errors import KgnlpError

    r = CliRunner().invoke(app, ["recommend", *args])
    if isinstance(r.exception, KgnlpError):
        return 1, f"{r.output}error: {r.exception}"
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def test_export_then_import_under_a_new_name_is_idempotent(home: Path, tmp_path: Path) -> None:
    code, out = _kgnlp("export", "synthetic", "--out", str(tmp_path / "files"), "--home", str(home))
    assert code == 0, out
    names = (("items", "items.jsonl"), ("relations", "relations.csv"), ("interactions", "interactions.csv"))
    files = [f"--{k}={tmp_path / 'files' / f}" for k, f in names]
    code, out = _kgnlp("import", "shop", *files, "--home", str(home))
    assert code == 0, out
    first = json.loads(out.strip().splitlines()[-1])
    assert first["items"] == 400 and first["interactions_added"] == first["interactions"] > 0
    code, out = _kgnlp("import", "shop", *files, "--home", str(home))
    again = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and again["entities_added"] == again["facts_added"] == again["interactions_added"] == 0
    assert (home / "graphs" / "recommend-shop").exists()


def test_a_bad_file_names_file_and_line_and_imports_nothing(home: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,name,tags\nsku-1,Kettle,kitchen\nsku-2,,kitchen\n", encoding="utf-8")
    code, out = _kgnlp("import", "shop", f"--items={items}", "--home", str(home))
    assert code != 0 and "items.csv:3: name" in out and "nothing was imported" in out
    code, out = _kgnlp("import", "Bad Name!", f"--items={items}", "--home", str(home))
    assert code != 0 and "catalogue name" in out
    code, out = _kgnlp("import", "shop", "--home", str(home))
    assert code != 0 and "--items" in out
