"""The fine-tuning run configuration: one validated YAML file → one run directory.

Every field has a default except ``task``, ``model`` and ``data.train``. Errors
name the field and the offending value (``ConfigurationError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kgnlp.errors import ConfigurationError

__all__ = ["DataConfig", "DistillConfig", "MethodConfig", "PretrainConfig", "RunConfig", "TrainConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where examples come from and how they are split.

    ``validation``/``test`` files win over fractions; without them a stratified
    split of ``train`` (seeded by ``split_seed``) is made, so the test part is never tuned on.
    """

    train: Path
    validation: Path | None = None
    test: Path | None = None
    text_field: str = "text"
    label_field: str = "label"
    messages_field: str = "messages"
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    split_seed: int = 13
    max_train_rows: int | None = Field(None, ge=1)
    # "module:function", called with the RunConfig to write ``train`` (and ``validation``) at the
    # start of every new run (a resume keeps what it wrote): derived data, e.g. prompts with
    # retrieved context
    prepare: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MethodConfig(_Strict):
    """How the backbone is adapted.

    ``full`` trains every weight; ``lora``/``adalora``/``ia3``/``prompt`` use peft;
    ``qlora`` is LoRA on a 4-bit base (CUDA + bitsandbytes only).
    """

    kind: Literal["full", "lora", "adalora", "ia3", "prompt", "qlora"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str | None = None  # None: peft's defaults for the architecture
    num_virtual_tokens: int = Field(16, ge=1)


class DistillConfig(_Strict):
    """Knowledge distillation from a trained classifier run (teacher logits are cached to disk)."""

    teacher: Path
    temperature: float = Field(2.0, gt=0.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)  # weight of the KL term; 1 - alpha on hard-label CE


class PretrainConfig(_Strict):
    """Domain-adaptive pre-training before fine-tuning (self-supervised; labels unused).

    The backbone first learns from the run's own training texts (never its validation/test
    part) plus any unlabelled ``texts`` file, with masked-LM for encoders or causal-LM for
    decoders; fine-tuning then starts from that model, kept in the run directory as ``pretrained/``.
    """

    objective: Literal["auto", "mlm", "clm"] = "auto"  # auto: mlm when the tokenizer has a mask token
    texts: Path | None = None  # extra unlabelled text: .txt (a text per line), .csv or .jsonl
    text_field: str = "text"
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, ge=1)
    max_len: int = Field(64, ge=8)
    # steps that train only weights the checkpoint lacks (e.g. the MLM head a sentence-transformers
    # checkpoint does not ship) before the whole model: a random head's gradients would otherwise
    # scramble the pretrained encoder first
    head_warmup_steps: int = Field(50, ge=0)


class TrainConfig(_Strict):
    """Optimisation and training practice."""

    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0, lt=1)
    head_lr: float | None = Field(None, gt=0, lt=1)  # classifier head (default: lr)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    max_len: int = Field(128, ge=8)
    group_by_length: bool = True  # batches of similar length (less padding); batch order still shuffled
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on GPU, fp32 on CPU
    seed: int = 42
    dropout: float | None = Field(None, ge=0, lt=1)  # override the backbone's hidden dropout
    eval_every: Literal["epoch"] | int = "epoch"
    metric: Literal["accuracy", "macro_f1", "loss"] = "accuracy"
    early_stopping_patience: int | None = Field(None, ge=1)
    class_weights: Literal["none", "balanced"] = "none"
    augment: Literal["none", "synonym", "noise"] = "none"
    augment_prob: float = Field(0.1, ge=0, le=1)
    fgm_epsilon: float = Field(0.0, ge=0)  # > 0: adversarial training on word embeddings
    keep_checkpoints: int = Field(1, ge=1)
    num_threads: int | None = Field(None, ge=1)


class RunConfig(_Strict):
    """A complete fine-tuning run."""

    task: Literal["classify", "sft"]
    model: str  # a model folder, or a catalog name resolved in KGNLP_HOME/models
    output_dir: Path
    data: DataConfig
    method: MethodConfig = MethodConfig()
    train: TrainConfig = TrainConfig()
    distill: DistillConfig | None = None
    pretrain: PretrainConfig | None = None
    labels: list[str] | None = None  # fixed label order (default: sorted labels of the training data)
    # copy the trained adapter to KGNLP_HOME/adapters/NAME, where the service loads adapters from
    install_adapter: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.task == "sft" and self.distill is not None:
            raise ValueError("distill: use models.distill.distill_causal_lm for causal LMs, not task 'sft'")
        if self.task == "sft" and self.train.class_weights != "none":
            raise ValueError(f"train.class_weights: {self.train.class_weights!r} only applies to task 'classify'")
        if self.install_adapter and self.method.kind == "full":
            raise ValueError("install_adapter: a full fine-tune writes a model, not an adapter")
        if self.install_adapter and self.pretrain is not None:
            raise ValueError(
                "install_adapter: an adapter trained on a domain-adapted backbone (pretrain) does not fit "
                "the served base model; drop one of the two"
            )
        if self.method.kind == "prompt" and self.train.fgm_epsilon > 0:
            raise ValueError("train.fgm_epsilon: adversarial training needs word embeddings, not prompt tuning")
        return self

    def model_path(self) -> Path:
        """Resolve ``model`` to a folder (a path, or a catalog name under ``KGNLP_HOME/models``)."""
        from kgnlp.files import default_home

        p = Path(self.model).expanduser()
        if p.exists():
            return p
        cached = default_home() / "models" / self.model
        if cached.exists():
            return cached
        raise ConfigurationError(f"model: {self.model!r} is neither a folder nor a cached model in {cached.parent}")


def _format_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        parts.append(f"{loc}: {err['msg']} (got {shown})")
    return "; ".join(parts)


def build_config(raw: dict[str, Any], base_dir: Path | None = None) -> RunConfig:
    """Validate a config mapping; relative paths are resolved against ``base_dir``.

    Args:
        raw: the parsed YAML/JSON mapping.
        base_dir: folder of the config file (relative data/output paths are taken from there).

    Returns:
        The validated ``RunConfig``.

    Raises:
        ConfigurationError: naming each invalid field and its value.
    """
    raw = {k: v for k, v in raw.items() if k != "resolved_model"}  # written into run dirs for reference
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigurationError(f"invalid run config: {_format_errors(e)}") from e
    if base_dir is None:
        return cfg

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base_dir / p)

    data = cfg.data.model_copy(
        update={"train": fix(cfg.data.train), "validation": fix(cfg.data.validation), "test": fix(cfg.data.test)}
    )
    return cfg.model_copy(update={"data": data, "output_dir": fix(cfg.output_dir)})


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config (paths relative to the current directory).

    Args:
        path: the YAML file.
        overrides: dotted keys to replace, e.g. ``{"train.epochs": 1}``.

    Returns:
        The validated ``RunConfig``.
    """
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigurationError(f"cannot read run config {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: a run config is a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return build_config(raw)
