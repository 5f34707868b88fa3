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
        """Register and load (hot, without restart); replaces a loaded adapter of the same name."""
        with self._lock:
            self.register(name, path)
            if name in self._loaded:
                self.unload(name)
            self.ensure(name)

    def unload(self, name: str) -> None:
        """Free an adapter's weights (it stays registered)."""
        with self._lock:
            if name not in self._loaded:
                return
            self._peft.delete_adapter(name)
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
        if self.rebuild is not None and self.quantize is not None:
            names = [*self._loaded, name]
            model = PeftModel.from_pretrained(self.rebuild(), str(self._paths[names[0]]), adapter_name=names[0])
            for other in names[1:]:
                model.load_adapter(str(self._paths[other]), adapter_name=other)
            self._peft = self.quantize(model.eval())
        elif self._peft is None:
            self._peft = PeftModel.from_pretrained(self.base_model, str(path), adapter_name=name)
        else:
            self._peft.load_adapter(str(path), adapter_name=name)
        self._peft.eval()
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


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name == BASE:
        raise ValidationError(f"adapter name must be 1-64 of letters, digits, '_', '.', '-', got {name!r}")
