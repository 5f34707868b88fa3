"""Settings from the environment and the console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apps.core.settings import load_settings
from kgnlp.errors import ConfigurationError


def test_env_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KGNLP_HOME", str(tmp_path))
    monkeypatch.setenv("KGNLP_SERVER__PORT", "9123")
    monkeypatch.setenv("KGNLP_MODELS__QUANTIZATION", "int8-dynamic")
    monkeypatch.setenv("KGNLP_GRAPH__NEO4J_PASSWORD", "s3cret")
    s = load_settings()
    assert s.home == tmp_path and s.server.port == 9123 and s.models.quantization == "int8-dynamic"
    assert "s3cret" not in repr(s) and s.graph.neo4j_password.get_secret_value() == "s3cret"
    assert s.server.is_loopback


def test_invalid_setting_names_field_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGNLP_SERVER__PORT", "99999")
    with pytest.raises(ConfigurationError, match=r"KGNLP_SERVER__PORT='99999'"):
        load_settings()


def _kgnlp() -> list[str]:
    exe = shutil.which("kgnlp", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from apps.cli import main; main()"]


def test_cli_help_lists_sub_apps() -> None:
    out = subprocess.run([*_kgnlp(), "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    for sub in ("models", "kg", "serve"):
        assert sub in out


def test_cli_models_info_reports_integrity(model_home: Path) -> None:
    import json
    import os

    env = {**os.environ, "KGNLP_HOME": str(model_home)}
    out = subprocess.run([*_kgnlp(), "models", "info", "all-minilm-l6-v2"], capture_output=True, text=True,
                         timeout=60, check=True, env=env).stdout  # fmt: skip
    info = json.loads(out)
    assert info["cached"] and info["intact"] and info["license"] == "MIT"


def test_serve_keeps_model_load_progress_bars_out_of_the_json_log(tmp_path: Path) -> None:
    """``kgnlp serve`` logs JSON lines; transformers' "Loading weights: 100%|..." bars would break them."""
    import os

    code = (
        "import uvicorn\n"
        "def run(*a, **k):\n"
        "    from transformers.utils import logging\n"
        "    print('bars', logging.is_progress_bar_enabled())\n"
        "uvicorn.run = run\n"
        "from apps.cli import main; main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"} | {"KGNLP_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code, "serve"], capture_output=True, text=True, timeout=120,
                         check=True, env=env).stdout  # fmt: skip
    assert out.split() == ["bars", "False"]
