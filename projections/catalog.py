"""Every read model the projector keeps, in one list (the composition of the read side)."""

from __future__ import annotations

from projections.api_keys import ApiKeys
from projections.assistant import AssistantViews
from projections.assistant_suites import AssistantSuiteViews
from projections.audit import AuditIndex
from projections.audit_chain import AuditChain
from projections.base import Projection
from projections.market_data import MarketDataBars
from projections.memory import MemoryViews
from projections.predictions import PredictionViews
from projections.registry_models import RegistryModels
from projections.registry_versions import RegistryVersions
from projections.training import TrainingViews


def all_projections() -> list[Projection]:
    return [
        ApiKeys(),
        AuditIndex(),
        AuditChain(),
        RegistryModels(),
        RegistryVersions(),
        MarketDataBars(),
        PredictionViews(),
        TrainingViews(),
        MemoryViews(),
        AssistantViews(),
        AssistantSuiteViews(),
    ]


def by_name(name: str) -> Projection:
    for projection in all_projections():
        if projection.name == name:
            return projection
    raise KeyError(name)
