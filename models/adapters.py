"""LoRA adapters on one shared base model: registered by name, hot-loaded, LRU-capped.

One base stays in memory; each adapter adds a few MB. Requests name their
adapter and peft's mixed-adapter forward (``adapter_names=[...]``) routes each
row of a batch through its own adapter, so no global "active adapter" state is
switched between requests.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kgnlp.errors import ConfigurationError, NotFoundError, ValidationError
from kgnlp.files import atomic_dir

__all__ = ["BASE", "AdapterSet", "adapter_folders", "merge_and_export", "read_adapter_config"]

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


def read_adapter_config(path: Path) -> dict[str, Any]:
    """Read and minimally validate a peft adapter folder."""
    cfg_file = Path(path) / "adapter_config.json"
    if not cfg_file.is_file():
        raise NotFoundError(f"{path} is not a peft adapter folder (no adapter_config.json)")
    try:
        cfg: dict[str, Any] = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise ValidationError(f"{cfg_file}: invalid JSON ({e})") from e
    if cfg.get("peft_type") != "LORA":
        raise ValidationError(f"{cfg_file}: peft_type {cfg.get('peft_type')!r} is not supported (LORA only)")
    return cfg


def adapter_folders(root: Path) -> list[Path]:
    """The peft adapter folders directly under ``root`` (none when it does not exist), by name."""
    if not Path(root).is_dir():
        return []
    return [sub for sub in sorted(Path(root).iterdir()) if (sub / "adapter_config.json").is_file()]


class AdapterSet:
    """The adapters known to, and loaded on, one base model.

    peft cannot add an adapter to an int8-quantized layer, so for a quantized base
    ``rebuild`` gives a fresh float base: adding an adapter then reloads the base,
    attaches every loaded adapter in float and quantizes the result again (about a
    second for a 135M model) — still without a restart.

    Args:
        base_model: the loaded base (float, or quantized when ``rebuild`` is given).
        max_loaded: at most this many adapters stay in memory; the least recently used is unloaded.
        rebuild: for a quantized base, ``() -> float base`` and ``quantize: model -> model``.
        quantize: see ``rebuild``.
    """

    def __init__(
        self,
        base_model: Any,
        max_loaded: int = 4,
        rebuild: Callable[[], Any] | None = None,
        quantize: Callable[[Any], Any] | None = None,
    ) -> None:
        if max_loaded < 1:
            raise ConfigurationError(f"max_loaded must be >= 1, got {max_loaded}")
        if (rebuild is None) != (quantize is None):
            raise ConfigurationError("rebuild and quantize must be given together")
        self.base_model = base_model
        self.max_loaded = max_loaded
        self.rebuild = rebuild
        self.quantize = quantize
        self._paths: dict[str, Path] = {}
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._peft_names: dict[str, str] = {}  # loaded adapter → its name inside peft (differs after a reload)
        self._reloads = 0
        self._peft: Any = None
        self._lock = threading.RLock()

    @property
    def model(self) -> Any:
        """What to call ``generate`` on: the peft wrapper once any adapter was loaded."""
        return self._peft if self._peft is not None else self.base_model

    @property
    def wrapped(self) -> bool:
        return self._peft is not None

    def register(self, name: str, path: Path) -> None:
        """Make adapter ``name`` available (loaded on first use)."""
        _check_name(name)
        read_adapter_config(path)
        with self._lock:
            self._paths[name] = Path(path)

    def register_directory(self, root: Path) -> list[str]:
        """Register every adapter folder under ``root`` by its folder name."""
        found = adapter_folders(root)
        for sub in found:
            self.register(sub.name, sub)
        return [sub.name for sub in found]

    def available(self) -> list[str]:
        return sorted(self._paths)

    def peft_name(self, name: str | None) -> str:
        """The name peft routes a request for adapter ``name`` (None: the base) by."""
        return BASE if name is None else self._peft_names.get(name, name)

    def loaded(self) -> list[str]:
        """Loaded adapters, least recently used first."""
        return list(self._loaded)

    def ensure(self, name: str) -> None:
        """Load ``name`` if needed and mark it most recently used.

        Raises:
            NotFoundError: the adapter is not registered.
        """
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return
            if name not in self._paths:
                known = ", ".join(self.available()) or "none"
                raise NotFoundError(f"unknown adapter {name!r}; available: {known}")
            while len(self._loaded) >= self.max_loaded:
                self.unload(next(iter(self._loaded)))
            self._load(name, self._paths[name])

    def load(self, name: str, path: Path) -> None:
        """Register and load (hot, without restart); replaces an adapter of the same name.

        The new weights load beside the adapter they replace, which is dropped only once they
        have: a broken or mismatched adapter leaves the old one serving, unchanged.

        Raises:
            NotFoundError: ``path`` is not an adapter folder.
            ValidationError: its config or weights could not be loaded (the old adapter stays).
        """
        _check_name(name)
        read_adapter_config(path)
        path = Path(path)
        with self._lock:
            previous = self._paths.get(name)
            try:
                if name not in self._loaded:
                    self._paths[name] = path
                    self.ensure(name)
                elif self.rebuild is not None:
                    self._rebuild({**{n: self._paths[n] for n in self._loaded}, name: path})
                else:
                    self._replace(name, path)
            except Exception as e:
                if previous is None:
                    self._paths.pop(name, None)
                else:
                    self._paths[name] = previous
                if isinstance(e, NotFoundError | ValidationError):
                    raise
                raise ValidationError(
                    f"adapter {name!r} from {path} could not be loaded ({type(e).__name__}: {e}); "
                    f"{'the previous one stays in use' if previous is not None else 'nothing was registered'}"
                ) from e
            self._paths[name] = path
            self._loaded.move_to_end(name)

    def _replace(self, name: str, path: Path) -> None:
        """Load ``path`` under a fresh peft name, then drop the weights it replaces."""
        _read_weights(path)
        self._reloads += 1
        staged = f"{name}-reload{self._reloads}"
        try:
            self._peft.load_adapter(str(path), adapter_name=staged)
        except Exception:
            if staged in getattr(self._peft, "peft_config", {}):  # peft injects layers before loading weights
                self._peft.delete_adapter(staged)
            raise
        self._peft.delete_adapter(self.peft_name(name))
        self._peft_names[name] = staged
        self._peft.eval()

    def _rebuild(self, paths: dict[str, Path]) -> None:
        """Quantized base: a fresh float base with ``paths`` attached, quantized; swapped in on success."""
        from peft import PeftModel

        assert self.rebuild is not None and self.quantize is not None
        names = list(paths)
        model = PeftModel.from_pretrained(self.rebuild(), str(paths[names[0]]), adapter_name=names[0])
        for other in names[1:]:
            model.load_adapter(str(paths[other]), adapter_name=other)
        self._peft = self.quantize(model.eval())
        self._peft.eval()
        self._peft_names = {n: n for n in names}

    def unload(self, name: str) -> None:
        """Free an adapter's weights (it stays registered)."""
        with self._lock:
            if name not in self._loaded:
                return
            self._peft.delete_adapter(self.peft_name(name))
            self._peft_names.pop(name, None)
            del self._loaded[name]
            if not self._loaded:  # peft would keep the deleted one active: drop the wrapper
                self.base_model = self._peft.unload()
                self._peft = None

    def forget(self, name: str) -> None:
        """Unload and unregister."""
        with self._lock:
            self.unload(name)
            self._paths.pop(name, None)

    def _load(self, name: str, path: Path) -> None:
        from peft import PeftModel

        read_adapter_config(path)
        _read_weights(path)  # a missing or corrupt file fails here, before peft changes the model
        if self.rebuild is not None and self.quantize is not None:
            self._rebuild({**{n: self._paths[n] for n in self._loaded}, name: path})
        elif self._peft is None:
            self._peft = PeftModel.from_pretrained(self.base_model, str(path), adapter_name=name)
        else:
            try:
                self._peft.load_adapter(str(path), adapter_name=name)
            except Exception:
                if name in getattr(self._peft, "peft_config", {}):  # peft injects layers before loading weights
                    self._peft.delete_adapter(name)
                raise
        self._peft.eval()
        self._peft_names[name] = name
        self._loaded[name] = None


def merge_and_export(base_path: Path, adapter_path: Path, out_dir: Path) -> Path:
    """Fold an adapter into a float copy of its base and save a standalone model.

    Args:
        base_path: directory of the base model.
        adapter_path: peft adapter folder.
        out_dir: where the merged model (safetensors + tokenizer) is written, atomically.

    Returns:
        ``out_dir``.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    read_adapter_config(adapter_path)
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_path)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    with atomic_dir(Path(out_dir)) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    return Path(out_dir)


def _read_weights(path: Path) -> None:
    """Read an adapter's weights once, so that a missing or corrupt file fails before any model changes."""
    from peft.utils import load_peft_weights

    if not any((Path(path) / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise ValidationError(f"{path} has no adapter_model.safetensors (nor adapter_model.bin)")
    load_peft_weights(str(path), device="cpu")


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name == BASE:
        raise ValidationError(f"adapter name must be 1-64 of letters, digits, '_', '.', '-', got {name!r}")
