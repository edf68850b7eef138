"""The rules of ``api/contract.py`` that every context shares, on the real app."""

from __future__ import annotations

import uuid

from tests.helpers import Api


async def test_options_lists_every_method_of_a_path(api: Api) -> None:
    """Litestar's own OPTIONS answer knows only the first handler of a path."""
    memory = f"/api/v1/memory/{uuid.uuid4()}"
    answer = await api.client.options(memory, headers=api.auth("viewer"))
    assert answer.status_code == 204
    assert answer.headers["allow"] == "DELETE, GET, OPTIONS"
    audit = await api.client.options("/api/v1/audit/verify", headers=api.auth("viewer"))
    assert audit.status_code == 204, audit.text  # a guard of the whole controller lets it by


async def test_a_wait_for_past_the_end_of_the_log_is_a_503_at_once(api: Api) -> None:
    created = await api.client.post(
        "/api/v1/ai/models",
        json={"name": "waited", "kind": "ml", "task": "t"},
        headers=api.auth("operator"),
    )
    context, _, position = created.headers["Aimm-Position"].partition(":")
    ahead = f"{context}:{int(position) + 1000}"
    answer = await api.client.get(
        "/api/v1/ai/models", params={"wait_for": ahead}, headers=api.auth("viewer")
    )
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "past the end" in answer.json()["detail"]
    reached = await api.client.get(
        "/api/v1/ai/models",
        params={"wait_for": created.headers["Aimm-Position"]},
        headers=api.auth("viewer"),
    )
    assert reached.status_code == 200
    assert [m["name"] for m in reached.json()["items"]] == ["waited"]


async def test_request_bodies_are_closed_in_the_schema_and_in_fact(api: Api) -> None:
    schema = (await api.client.get("/schema/openapi.json", headers=api.auth())).json()
    components = schema["components"]["schemas"]
    for name in ("ModelCreate", "TrainRequest", "HyperparametersIn", "MemoryIn", "ForgetIn"):
        assert components[name]["additionalProperties"] is False, name
    # a zero bound of an optional field is documented (Litestar alone drops it)
    assert components["ForgetIn"]["properties"]["max_strength"]["minimum"] == 0
    typo = await api.client.post(
        "/api/v1/ai/models",
        json={"name": "typo", "kind": "ml", "task": "t", "tagz": ["x"]},
        headers=api.auth("operator"),
    )
    assert typo.status_code == 400
    assert typo.headers["content-type"].startswith("application/problem+json")
    assert "tagz" in typo.json()["detail"]
