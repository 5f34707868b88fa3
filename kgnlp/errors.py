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


class RowErrors:
    """The problems found in the rows of an import, reported together as one error.

    Each is ``file:line: what``; the first ``limit`` are kept, the rest counted. Importers
    validate every row before writing any, then call :meth:`raise_any`.
    """

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.count = 0

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if len(self.lines) < self.limit:
            self.lines.append(f"{where}: {message}")

    def raise_any(self, error: type[ValidationError] = ValidationError, nothing: str = "nothing was imported") -> None:
        """Raise ``error`` listing the problems, if there are any."""
        if self.count:
            more = f"\n... and {self.count - len(self.lines)} more" if self.count > len(self.lines) else ""
            raise error(f"{self.count} invalid row(s); {nothing}:\n" + "\n".join(self.lines) + more)
