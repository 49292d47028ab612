"""The project's exception types. Each message says what went wrong and how to fix it."""

from __future__ import annotations


class DarlError(Exception):
    """Base class: a problem the user can act on. The edge (CLI, pages) shows ``str(err)``."""


class ConfigError(DarlError, ValueError):
    """A configuration value is out of range or inconsistent."""


class ImportFileError(DarlError):
    """An import file is invalid; nothing was written. ``row`` is 1-based: CSV data rows after the header
    (blank lines not counted), JSONL line numbers, Parquet rows."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        self.row = row
        self.column = column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)


class NotFoundError(DarlError, LookupError):
    """A named project, user, version, round or job does not exist."""


class PermissionDeniedError(DarlError, PermissionError):
    """The acting user's role does not allow this operation."""


class ConflictError(DarlError):
    """The operation would violate an invariant (duplicate name, label already given, ...)."""


class DatabaseUnavailableError(DarlError):
    """The database cannot be reached; nothing was written."""


class ModelError(DarlError):
    """A backbone or checkpoint cannot be loaded or used."""


class NotFittedError(DarlError, RuntimeError):
    """A detector or selector was used before ``fit``."""


class PoolError(DarlError, ValueError):
    """The candidate pool cannot satisfy a selection request (empty, too small, ...)."""


class StaleCardError(ConflictError):
    """An action named a card that is no longer the one on the annotator's screen (already graded,
    skipped, or replaced by another card): nothing was written; the screen should show the current card."""


class JobStopped(DarlError):
    """Raised by a job's work when it was told to stop (a cancel, or the job was taken from its runner);
    the runner records why. Services that run inside jobs raise it too, so it lives below both."""
