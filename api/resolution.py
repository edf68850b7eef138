"""What a role runs for a unit now, read from the read models (``GET …/resolve``).

Every agent call goes through ``resolve``, so it is served like the other queries: one
read of the read models (``projections.assistant.resolution``: the role, its prompt's
``production`` version and the role's running experiment with its variants' versions,
in one statement, so one snapshot), no aggregate loaded. A unit of a running experiment
is assigned by the experiment's definition (``ExperimentDefinition.assign``: a hash of
salt and unit against the weights); definitions never change, so each is parsed once
per process. Only a unit the read model has not seen exposed costs a write: its
``Exposure`` (``AssistantApplication.expose``), exactly once whatever races it.

Freshness is the read models': a label moved or an experiment started a moment ago is
seen once the projector has applied it (milliseconds). A client that must see its own
change passes ``wait_for`` with the ``Aimm-Position`` of that change, as on every
other query. An exposure read from a stale view of an experiment that has just been
concluded is recorded but not counted (see ``domain.assistant.experiment``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from api.assistant_views import settings_of
from api.contract import jsonb
from domain.assistant.experiment import ExperimentConflictError
from domain.assistant.experiments import ExperimentDefinition
from domain.assistant.prompts import ModelSettings, merge
from domain.errors import NotFoundError

MAX_DEFINITIONS = 1024


class Resolver:
    """Turns a ``resolution`` row into the answer; keeps parsed experiment definitions."""

    def __init__(self) -> None:
        self._definitions: dict[Any, ExperimentDefinition] = {}
        self._lock = threading.Lock()

    def definition(self, experiment_id: Any, text: Any) -> ExperimentDefinition:
        """The experiment's definition, parsed once (it never changes)."""
        found = self._definitions.get(experiment_id)
        if found is None:
            found = ExperimentDefinition.from_dict(jsonb(text))
            with self._lock:
                if len(self._definitions) >= MAX_DEFINITIONS:
                    self._definitions.clear()
                self._definitions[experiment_id] = found
        return found

    def answer(self, role: str, unit: str, row: Mapping[str, Any] | None) -> dict[str, Any]:
        """What ``role`` runs for ``unit``: the experiment's variant while one runs, else
        the production version. 404 unknown role, 409 neither runs."""
        if row is None:
            raise NotFoundError(f"role {role!r} not found")
        role_settings = settings_of(jsonb(row["settings"]))
        experiment_id = row["experiment_id"]
        if experiment_id is not None:
            definition = self.definition(experiment_id, row["definition"])
            index = definition.assign(unit)
            variant = definition.variants[index]
            version = jsonb(row["variant_versions"])[index]
            settings = merge(merge(role_settings, version["overrides"]), variant.settings)
            return _answer(
                role, unit, row, "experiment", index, variant.prompt_id,
                variant.prompt_version, version["model"], settings,
            )  # fmt: skip
        number = row["production_version"]
        if row["prompt_id"] is None or number is None:
            raise ExperimentConflictError(
                f"role {role!r} runs no prompt version in production and no experiment"
            )
        settings = merge(role_settings, jsonb(row["production_overrides"]))
        return _answer(
            role, unit, row, "production", None, str(row["prompt_id"]), number,
            row["production_model"], settings,
        )  # fmt: skip


def _answer(  # noqa: PLR0913
    role: str,
    unit: str,
    row: Mapping[str, Any],
    source: str,
    variant: int | None,
    prompt_id: str,
    prompt_version: int,
    model: str | None,
    settings: ModelSettings,
) -> dict[str, Any]:
    experiment_id = row["experiment_id"]
    return {
        "role": role,
        "unit": unit,
        "source": source,
        "experiment_id": str(experiment_id) if experiment_id is not None else None,
        "variant": variant,
        "prompt_id": prompt_id,
        "prompt_version": prompt_version,
        "model": model or row["model"],
        "settings": settings.as_dict(),
    }
