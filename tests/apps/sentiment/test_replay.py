"""``kgnlp sentiment replay``: backfill from CSV/JSONL through the real service path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.sentiment.events_file import read_events
from kgnlp.errors import ValidationError


def test_read_events_csv_and_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "e.csv"
    csv_file.write_text("id,text,timestamp,entity\na1,$AAPL soars,2025-01-02T10:00:00Z,\na2,flat day,1735812000,MSFT\n")
    events = read_events(csv_file, default_source="backfill")
    assert [(e.id, e.entity, e.source) for e in events] == [("a1", None, "backfill"), ("a2", "MSFT", "backfill")]
    assert events[1].timestamp.year == 2025
    jl = tmp_path / "e.jsonl"
    jl.write_text(json.dumps({"id": "j1", "text": "hi", "timestamp": "2025-01-02", "source": "news"}) + "\n\n")
    assert [(e.id, e.source) for e in read_events(jl)] == [("j1", "news")]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("id,text,timestamp\nok,fine,2025-01-01\nbad,,2025-01-01\n", ":3: text"),
        ("id,text,timestamp\nok,fine,not-a-time\n", ":2: timestamp"),
    ],
)
def test_bad_rows_name_the_line_and_field(tmp_path: Path, content: str, fragment: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ValidationError, match=fragment):
        read_events(f)


def test_bad_json_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "text": "t", "timestamp": "2025-01-01"}\n[1, 2]\n')
    with pytest.raises(ValidationError, match=":2: each line must be a JSON object"):
        read_events(f)


def test_replay_command_is_idempotent(model_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.cli import app
    from apps.sentiment.training import ensure_default_model
    from kg.demo import build_demo
    from kg.registry import GraphRegistry

    ensure_default_model(model_home, model_home / "models" / "all-minilm-l6-v2")
    graphs = tmp_path / "graphs"
    with GraphRegistry(graphs) as registry:
        build_demo("finance", registry.get("finance", create=True))
    monkeypatch.setenv("KGNLP_HOME", str(model_home))
    monkeypatch.setenv("KGNLP_GRAPH__PATH", str(graphs))
    monkeypatch.setenv("KGNLP_DATABASE_URL", f"sqlite:///{tmp_path / 'replay.sqlite'}")
    f = tmp_path / "events.jsonl"
    rows = [{"id": f"r{i}", "text": f"$AAPL shares slump as iPhone sales fall ({i})", "timestamp": 1735812000 + 60 * i}
            for i in range(5)]  # fmt: skip
    f.write_text("\n".join(json.dumps(r) for r in rows))
    runner = CliRunner()
    first = runner.invoke(app, ["sentiment", "replay", str(f), "--batch", "2"])
    assert first.exit_code == 0, first.output
    assert "events=5 inserted=5 duplicates=0" in first.output
    second = runner.invoke(app, ["sentiment", "replay", str(f)])
    assert second.exit_code == 0 and "inserted=0 duplicates=5" in second.output
