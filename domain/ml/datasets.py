"""The Dataset aggregate: a named, immutable selection of market data turned into features.

A dataset is registered once, under a unique name, with everything needed to trust
it later: the resolved specification (tickers, dates, features, target, split), the
row counts, the feature columns, the SHA-256 of its exact rows (the rows themselves
are an artifact stored under that hash) and, per ticker, the market-data version and
import hashes it was built from. Training reads the artifact and checks its hash, so a
later market-data correction never changes what an existing dataset (or a run on it)
means; a new dataset picks the correction up.
"""

from __future__ import annotations

from typing import Any

from domain.base import Aggregate
from domain.registry.model import check_name


class Dataset(Aggregate):
    class Registered(Aggregate.Created):
        name: str
        spec: dict[str, Any]
        feature_columns: list[str]
        target: str
        row_count: int
        train_rows: int
        validation_rows: int
        validation_start: str
        content_hash: str
        size_bytes: int
        sources: dict[str, Any]

    def __init__(  # noqa: PLR0913
        self,
        name: str,
        spec: dict[str, Any],
        feature_columns: list[str],
        target: str,
        row_count: int,
        train_rows: int,
        validation_rows: int,
        validation_start: str,
        content_hash: str,
        size_bytes: int,
        sources: dict[str, Any],
        meta: dict[str, str],
    ) -> None:
        self.name = name
        self.spec = spec
        self.feature_columns = feature_columns
        self.target = target
        self.row_count = row_count
        self.train_rows = train_rows
        self.validation_rows = validation_rows
        self.validation_start = validation_start
        self.content_hash = content_hash
        self.size_bytes = size_bytes
        self.sources = sources
        self.registered_by = meta.get("principal", "unknown")

    @classmethod
    def register(cls, **fields: Any) -> Dataset:
        fields["name"] = check_name(fields["name"])
        return cls._create(cls.Registered, **fields)
