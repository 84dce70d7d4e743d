"""The span processor behind :mod:`rwsplit.integrations.otel`'s statement spans.

Imported only for an SDK ``TracerProvider`` (it subclasses the SDK's ``SpanProcessor``).
"""

from __future__ import annotations

from contextvars import ContextVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

Pending = ContextVar[dict[str, str] | None]


class StatementSpans(SpanProcessor):
    """Puts a statement's routing attributes on the spans started while it executes."""

    def __init__(self, pending: Pending) -> None:
        self._pending = pending

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = self._pending.get()
        if attributes is not None:
            span.set_attributes(attributes)
