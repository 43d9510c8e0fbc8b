"""The named errors twinkit raises; every message says what was wrong and what to do."""

from __future__ import annotations

from dataclasses import dataclass


class TwinkitError(Exception):
    """Base class of every error twinkit raises on purpose."""

    #: process exit code the CLI uses for this error (1 user error, 2 integrity failure)
    exit_code = 1


class NotFoundError(TwinkitError):
    """A twin, model version or quarantined row that does not exist."""


class AmbiguousTwinError(TwinkitError):
    """A bare twin id that several owners use: the owner must be named (``owner/id``)."""


class AlreadyExistsError(TwinkitError):
    """Creating something whose id is taken."""


class InvalidTwinError(TwinkitError):
    """A twin definition (id, kind, channels) that breaks the rules."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input batch, located as precisely as possible."""

    message: str
    row: int | None = None  # 1-based data row (the header is not a row)
    column: str | None = None
    #: 1-based line of the source file (an importer's files have titles and metadata
    #: lines before their data, so a line number is what the user can find)
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ValidationError(TwinkitError):
    """A batch was rejected as a whole; nothing of it was stored."""

    MAX_SHOWN = 10

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[: self.MAX_SHOWN])
        more = len(problems) - self.MAX_SHOWN
        tail = f"\n  ... and {more} more problem(s)" if more > 0 else ""
        super().__init__(
            f"{source}: batch rejected, nothing was stored "
            f"({len(problems)} problem(s)):\n{shown}{tail}"
        )

    def __reduce__(self) -> tuple[type[ValidationError], tuple[str, list[Problem]]]:
        # as made, so that it crosses a process boundary (the service's ingest processes)
        return (type(self), (self.source, self.problems))


class TooLargeError(TwinkitError):
    """A batch with more rows, columns or cells than allowed; refused whole, before decoding.

    ``what`` is ``"rows"``, ``"columns"`` or ``"cells"``; ``setting`` names the limit where
    the caller can say how it is set (the service's ``TWINKIT_MAX_UPLOAD_ROWS``, say).
    """

    def __init__(self, source: str, what: str, limit: int, setting: str | None = None) -> None:
        self.source = source
        self.what = what
        self.limit = limit
        self.setting = setting
        named = f"the limit, {setting}" if setting else "the limit"
        super().__init__(
            f"{source}: the upload has more than {limit} {what} ({named}); nothing was stored: "
            f"split it into smaller batches"
        )

    def __reduce__(self) -> tuple[type[TooLargeError], tuple[str, str, int, str | None]]:
        return (type(self), (self.source, self.what, self.limit, self.setting))

    def naming(self, setting: str) -> TooLargeError:
        """The same error, its message naming the setting that sets the limit."""
        return TooLargeError(self.source, self.what, self.limit, setting)


class ForecastInputError(TwinkitError):
    """Data handed to a forecaster that it cannot use (missing target, too short, NaN...)."""


class ImplausibleDataError(ForecastInputError):
    """A twin's stored data hold times that no reading can have (written before the time
    window was enforced): that twin cannot be fitted or forecast until they are retracted."""


class IntegrityError(TwinkitError):
    """The ledger, the stored data or an artifact does not match what was recorded."""

    exit_code = 2


class SchemaVersionError(TwinkitError):
    """The store was written by a newer twinkit than this one."""

    exit_code = 2


class PromotionError(TwinkitError):
    """A promote or rollback that cannot be done (no such version, nothing to roll back to)."""


class TwinGoneError(NotFoundError):
    """The twin that work was started for was deleted (and maybe created again) meanwhile:
    nothing was written; a job of it ends as cancelled."""


class QuotaExceededError(TwinkitError):
    """An owner asked for more work than its quota allows at once; ask again later."""

    #: seconds after which asking again may succeed (a hint for Retry-After; the job
    #: book sets it from how long the owner's jobs run)
    retry_after_s = 30


class MissingExtraError(TwinkitError, ImportError):
    """A part of twinkit whose libraries are not installed (an install without an extra)."""
