"""``kgnlp bench``'s harness on planted benchmarks: a result, a failure, a silent run, a missing dataset."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_harness", REPO / "benchmarks" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_harness", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    bench_dir = tmp_path / "repo" / "benchmarks"
    bench_dir.mkdir(parents=True)
    (bench_dir / "good.py").write_text("import sys\nprint('table')\nprint(f'MRR=0.5 H@10=0.9 args={len(sys.argv)}')\n")
    (bench_dir / "bad.py").write_text("print('MRR=0.1 x=1')\nraise SystemExit(3)\n")
    (bench_dir / "silent.py").write_text("print('done, no summary')\n")
    (bench_dir / "selfskip.py").write_text("print('skipped: dataset folder not found')\n")
    suite = (
        module.Bench("good", "planted", "good.py", ["--a", "1"], [],
                     metrics=(module.Metric("MRR", "MRR", ".37", "paper"),)),
        module.Bench("bad", "planted", "bad.py", [], []),
        module.Bench("silent", "planted", "silent.py", [], []),
        module.Bench("selfskip", "planted", "selfskip.py", [], []),
        module.Bench("needs", "planted", "good.py", [], [], needs=("absent_dataset",)),
        module.Bench("full_only", "planted", "good.py", None, [], note="an hour"),
    )  # fmt: skip
    monkeypatch.setattr(module, "REPO", tmp_path / "repo")
    monkeypatch.setattr(module, "SUITE", suite)
    monkeypatch.setenv("KGNLP_SHARED_DATA", str(tmp_path / "shared"))
    return module


def test_summary_line_is_the_last_line_of_name_value_pairs(harness: ModuleType) -> None:
    out = "CPU: x | avx2\nMRR=0.1 H@1=0.0\nsome table\nMRR=0.37 H@10=0.56 target_R@1>=0.95=met\n"
    assert harness.summary_of(out) == {"MRR": "0.37", "H@10": "0.56", "target_R@1>": "0.95=met"}
    assert harness.summary_of("no summary here\nrate = 5") == {}
    assert harness.summary_of("") == {}


def test_a_quick_run_reports_each_outcome_and_fails_on_a_failure(harness: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    code = harness.main(["--quick", "--out", str(out)])
    assert code == 1  # "bad" failed
    report = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in report["benchmarks"]}
    assert rows["good"]["status"] == "ok" and rows["good"]["values"] == {"MRR": "0.5", "H@10": "0.9", "args": "3"}
    assert rows["bad"]["status"] == "failed" and "exit 3" in rows["bad"]["reason"]
    assert rows["silent"]["status"] == "failed" and "summary" in rows["silent"]["reason"]
    assert rows["selfskip"]["status"] == "skipped" and "skipped itself" in rows["selfskip"]["reason"]
    assert rows["needs"]["status"] == "skipped" and "absent_dataset" in rows["needs"]["reason"]
    assert rows["full_only"]["status"] == "skipped" and "an hour" in rows["full_only"]["reason"]
    assert report["run"]["profile"] == "quick" and report["run"]["cpu"]
    md = (out / "REPORT.md").read_text()
    assert "| good | planted | MRR | 0.5 | .37 | paper |" in md and "**failed**" in md
    assert (out / "good.log").read_text().startswith("$ .venv/bin/python benchmarks/good.py --a 1")


def test_only_and_unknown_names(harness: ModuleType, tmp_path: Path) -> None:
    assert harness.main(["--only", "good", "--out", str(tmp_path / "b")]) == 0
    assert [r["name"] for r in json.loads((tmp_path / "b" / "report.json").read_text())["benchmarks"]] == ["good"]
    with pytest.raises(SystemExit):
        harness.main(["--only", "nope", "--out", str(tmp_path / "c")])
