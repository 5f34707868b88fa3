"""kgnlp core: the pieces every package shares (exception root, home directory, atomic files)."""

from kgnlp.errors import (
    ConfigurationError,
    IngestError,
    KgnlpError,
    ModelUnavailableError,
    NotFoundError,
    OverloadedError,
    StoreError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "IngestError",
    "KgnlpError",
    "ModelUnavailableError",
    "NotFoundError",
    "OverloadedError",
    "StoreError",
    "ValidationError",
    "__version__",
]
