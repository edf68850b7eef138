"""Base aggregate whose events all carry the acting principal and correlation ids."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate as _Aggregate

from domain.metadata import EventMeta, current_meta


class Aggregate(_Aggregate):
    """An eventsourcing aggregate whose every event records who caused it.

    Event fields use plain JSON types (ids as ``str``), so the stored state stays
    flat JSON that the read side decodes without the library's transcoder.
    """

    class Event(_Aggregate.Event):
        meta: EventMeta

    class Created(Event, _Aggregate.Created):
        pass

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        kwargs.setdefault("meta", current_meta())
        return super()._create(event_class, id=id, **kwargs)

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("meta", current_meta())
        super().trigger_event(event_class, **kwargs)
