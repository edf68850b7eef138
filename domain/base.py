"""Base aggregate whose events all carry the acting principal and correlation ids."""

from __future__ import annotations

from typing import Any, Self

from eventsourcing.domain import Aggregate as _Aggregate

from domain.errors import DomainError
from domain.metadata import EventMeta, current_meta


class UnstorableTextError(DomainError):
    """Text with a NUL character: no read model (PostgreSQL text) could hold it."""


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise UnstorableTextError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item)


class Aggregate(_Aggregate):
    """An eventsourcing aggregate whose every event records who caused it.

    Text holding NUL is refused for every event (PostgreSQL text cannot store it).

    Event fields use plain JSON types (ids as ``str``), so the stored state stays
    flat JSON that the read side decodes without the library's transcoder.
    """

    class Event(_Aggregate.Event):
        meta: EventMeta

    class Created(Event, _Aggregate.Created):
        pass

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Self:  # noqa: A002
        kwargs.setdefault("meta", current_meta())
        _check_text(kwargs)
        return super()._create(event_class, id=id, **kwargs)

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("meta", current_meta())
        # Refused here, before it is stored, so a bad string can never poison a projection.
        _check_text(kwargs)
        super().trigger_event(event_class, **kwargs)
