"""The five contexts of the plan, one Application (and one events table) each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from application.assistant import AssistantApplication
from application.base import ContextApplication
from application.memory import MemoryApplication
from application.ports import Ports
from application.predictions import PredictionsApplication
from application.registry import RegistryApplication
from application.training import TrainingApplication

APPLICATION_CLASSES: tuple[type[ContextApplication], ...] = (
    RegistryApplication,
    TrainingApplication,
    PredictionsApplication,
    MemoryApplication,
    AssistantApplication,
)
CONTEXTS: tuple[str, ...] = tuple(cls.name for cls in APPLICATION_CLASSES)


class Contexts:
    """The running applications, built from one eventsourcing environment and the
    ports the composition root passes in (``infrastructure.wiring.build_contexts``)."""

    def __init__(self, env: Mapping[str, str], ports: Ports) -> None:
        self.registry = RegistryApplication(dict(env), ports)
        self.training = TrainingApplication(dict(env), ports)
        self.predictions = PredictionsApplication(dict(env), ports)
        self.memory = MemoryApplication(dict(env), ports)
        self.assistant = AssistantApplication(dict(env), ports)
        self.by_name: dict[str, ContextApplication] = {
            app.name: app
            for app in (self.registry, self.training, self.predictions, self.memory, self.assistant)
        }

    def close(self) -> None:
        for app in self.by_name.values():
            app.close()

    def __getitem__(self, name: str) -> ContextApplication:
        return self.by_name[name]

    def __iter__(self) -> Any:
        return iter(self.by_name.values())
