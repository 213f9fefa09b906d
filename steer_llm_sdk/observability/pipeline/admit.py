"""Admission on the flush thread: sanitise, then run the user's filters.

A filter is ``(record) -> record | None``: None drops the record (counted as ``filtered``), a
record (the same or a replacement) keeps it; raising or returning anything else drops it as
``filter_error``. Filters run after enrichment, so they see final ids, usage and cost.

A record whose sanitising raises (possible only for a foreign subclass with odd fields) is
dropped as ``invalid``: its values are not known to be safe for the sinks, and one such
record in a batch could fail the whole batch in an exporting sink.
"""

from typing import Any, Callable, List, Sequence, Tuple

from .._sanitize import sanitize
from ..filters import as_callable
from ..models import BaseMetrics
from .accounting import OnFailure


class Admitter:
    """Sanitises and filters batches. Used by one thread at a time.

    Args:
        filters: callables or objects with a ``filter`` method.
        max_attributes, max_attribute_length: limits applied by sanitising.
        on_failure: reports a failing filter or an internal sanitising error.
    """

    def __init__(
        self,
        filters: Sequence[Any],
        max_attributes: int,
        max_attribute_length: int,
        on_failure: OnFailure,
    ) -> None:
        self.filters: Tuple[Callable[[BaseMetrics], Any], ...] = tuple(
            as_callable(f) for f in filters
        )
        self.max_attributes = max_attributes
        self.max_attribute_length = max_attribute_length
        self.on_failure = on_failure

    def admit(self, records: List[BaseMetrics]) -> Tuple[List[BaseMetrics], int, int, int, int]:
        """Returns (kept records, how many were sanitised, filtered out, dropped by a filter
        error, dropped as invalid)."""
        max_len = self.max_attribute_length
        kept: List[BaseMetrics] = []
        sanitized = filtered = errors = invalid = 0
        for record in records:
            model = record.model
            # The common case, inlined: built by the SDK, a short model name, no attributes.
            if not (
                record._trusted
                and not record.attributes
                and (model is None or (type(model) is str and len(model) <= max_len))
            ):
                try:
                    if sanitize(record, self.max_attributes, max_len):
                        sanitized += 1
                except BaseException as exc:  # noqa: B036 - a foreign subclass's odd fields
                    self.on_failure("sanitize", record, exc)
                    invalid += 1
                    continue
            if not self.filters:
                kept.append(record)
                continue
            result = self._filter(record)
            if result is None:
                filtered += 1
            elif result is _ERROR:
                errors += 1
            else:
                kept.append(result)
        return kept, sanitized, filtered, errors, invalid

    def _filter(self, record: BaseMetrics) -> Any:
        """The record after every filter, None if one dropped it, ``_ERROR`` if one failed."""
        if type(record.attributes) is not dict:  # the shared read-only ambient mapping
            record.attributes = dict(record.attributes)  # filters may change their copy
        for flt in self.filters:
            try:
                result = flt(record)
            except BaseException as exc:  # noqa: B036 - user code: SystemExit too
                self.on_failure("filter_error", flt, exc)
                return _ERROR
            if result is None:
                return None
            if not isinstance(result, BaseMetrics):
                self.on_failure("filter_error", flt, TypeError(f"returned {type(result).__name__}"))
                return _ERROR
            record = result
        return record


_ERROR = object()
