"""One exception root for the whole product.

Library code raises these; third-party errors are translated at the boundary
(``raise StoreError(...) from e``). Only ``apps/`` maps them to HTTP statuses.
"""

from __future__ import annotations


class KgnlpError(Exception):
    """Root of every error kgnlp raises on purpose."""


class ConfigurationError(KgnlpError):
    """A setting or config file has an invalid value (the message names field and value)."""


class ValidationError(KgnlpError):
    """Input data is malformed (the message says where: file:line, field, value)."""


class NotFoundError(KgnlpError):
    """A named thing (entity, model, adapter, document) does not exist."""


class ModelUnavailableError(KgnlpError):
    """A model is neither cached nor fetchable; the message says what, where and how to fix."""


class StoreError(KgnlpError):
    """The graph store, index or database failed."""


class ConflictError(KgnlpError):
    """The request cannot be done in this configuration or state (the message says what to do instead)."""


class IngestError(ValidationError):
    """A batch could not be ingested; nothing from it was written."""


class OverloadedError(KgnlpError):
    """A bounded queue is full; the caller should retry later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
