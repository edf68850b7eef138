"""The first registry slice through HTTP: auth, validation, concurrency, idempotency."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.helpers import Api

MODELS = "/api/v1/ai/models"


async def event_count(api: Api) -> int:
    conn = await asyncpg.connect(api.url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM registry_events"))
    finally:
        await conn.close()


async def register(
    api: Api, name: str, role: str = "operator", **fields: object
) -> dict[str, object]:
    response = await api.client.post(
        MODELS, json={"name": name, "kind": "ml", **fields}, headers=api.auth(role)
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def is_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["detail"]
    return body


async def test_without_a_key_every_endpoint_but_health_is_401(api: Api) -> None:
    for path in (
        MODELS,
        "/metrics",
        "/schema/openapi.json",
        f"{MODELS}/00000000-0000-0000-0000-000000000000",
    ):
        problem = is_problem(await api.client.get(path), 401)
        assert "key" in str(problem["detail"])
    for path in ("/health/live", "/health/ready"):
        assert (await api.client.get(path)).status_code == 200


async def test_an_unknown_or_revoked_key_is_401(api: Api) -> None:
    bad = {"Authorization": "Bearer aimm_not-a-real-key"}
    is_problem(await api.client.get(MODELS, headers=bad), 401)
    key = await api.key_for("viewer", name="soon-revoked")
    conn = await asyncpg.connect(api.url)
    try:
        key_id = await conn.fetchval("SELECT key_id FROM aimm_api_keys WHERE name = 'soon-revoked'")
        assert (
            await api.client.get(MODELS, headers={"Authorization": f"Bearer {key}"})
        ).status_code == 200
        await conn.execute("UPDATE aimm_api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    # Servers cache key lookups and drop them on the key table's NOTIFY: a revocation
    # takes effect as soon as that notification arrives (bounded here by 100 tries).
    for _ in range(100):
        response = await api.client.get(MODELS, headers={"Authorization": f"Bearer {key}"})
        if response.status_code == 401:
            break
        await asyncio.sleep(0.01)
    is_problem(response, 401)


async def test_a_viewer_reads_but_cannot_register(api: Api) -> None:
    before = await event_count(api)
    problem = is_problem(
        await api.client.post(MODELS, json={"name": "m", "kind": "ml"}, headers=api.auth("viewer")),
        403,
    )
    assert "operator" in str(problem["detail"])
    assert await event_count(api) == before
    assert (await api.client.get(MODELS, headers=api.auth("viewer"))).status_code == 200


async def test_an_auditor_and_an_agent_cannot_register_models(api: Api) -> None:
    agent = await api.key_for("agent", agent_id="agent-7")
    for headers in (api.auth("auditor"), {"Authorization": f"Bearer {agent}"}):
        is_problem(
            await api.client.post(MODELS, json={"name": "m", "kind": "ml"}, headers=headers), 403
        )


async def test_registering_records_the_principal_and_correlation_id(api: Api) -> None:
    response = await api.client.post(
        MODELS,
        json={"name": "lstm", "kind": "ml", "tags": ["Daily"]},
        headers={**api.auth("operator"), "X-Correlation-ID": "req-42"},
    )
    assert response.status_code == 201
    assert response.headers["x-correlation-id"] == "req-42"
    assert response.headers["location"] == f"{MODELS}/{response.json()['id']}"
    assert response.json()["created_by"] == "test-operator"
    conn = await asyncpg.connect(api.url)
    try:
        state = await conn.fetchval(
            "SELECT convert_from(state, 'utf8') FROM registry_events "
            "WHERE topic LIKE '%Model.Registered'"
        )
    finally:
        await conn.close()
    assert '"principal":"test-operator"' in state
    assert '"correlation_id":"req-42"' in state


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5, "kind": "ml"}, "name"),
        ({"kind": "ml"}, "name"),
        ({"name": "m", "kind": "quantum"}, "kind"),
        ({"name": "m", "kind": "ml", "tags": "not-a-list"}, "tags"),
        ({"name": "m", "kind": "ml", "colour": "red"}, "colour"),
        ({"name": "m" * 101, "kind": "ml"}, "name"),
    ],
)
async def test_a_malformed_body_is_400_naming_the_field_and_appends_nothing(
    api: Api, body: dict[str, object], field: str
) -> None:
    before = await event_count(api)
    problem = is_problem(await api.client.post(MODELS, json=body, headers=api.auth()), 400)
    assert field in str(problem["detail"])
    assert await event_count(api) == before


async def test_malformed_json_is_400(api: Api) -> None:
    response = await api.client.post(
        MODELS,
        content=b'{"name": "m", ',
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    is_problem(response, 400)


async def test_a_name_the_domain_refuses_is_422_and_a_taken_name_409(api: Api) -> None:
    is_problem(
        await api.client.post(MODELS, json={"name": "Has Space", "kind": "ml"}, headers=api.auth()),
        422,
    )
    await register(api, "unique-name")
    before = await event_count(api)
    problem = is_problem(
        await api.client.post(
            MODELS, json={"name": "unique-name", "kind": "llm"}, headers=api.auth()
        ),
        409,
    )
    assert "unique-name" in str(problem["detail"])
    assert await event_count(api) == before


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=100000",
        "cursor=%%%",
        "kind=quantum",
        "wait_for=nowhere:1",
        "limit=abc",
        "q=a%00b",
        "tag=x%00",
    ],
)
async def test_bad_query_parameters_are_400(api: Api, query: str) -> None:
    is_problem(await api.client.get(f"{MODELS}?{query}", headers=api.auth("viewer")), 400)


async def test_an_unknown_model_is_404(api: Api) -> None:
    missing = "5b0c1c39-9f7b-4a8e-9f60-3b1d2f0c2a11"
    is_problem(await api.client.get(f"{MODELS}/{missing}", headers=api.auth("viewer")), 404)
    is_problem(
        await api.client.patch(
            f"{MODELS}/{missing}", json={"description": "x"}, headers=api.auth()
        ),
        404,
    )


async def test_read_your_writes_with_wait_for_and_etag(api: Api) -> None:
    created = await api.client.post(MODELS, json={"name": "rw", "kind": "llm"}, headers=api.auth())
    position = created.headers["aimm-position"]
    response = await api.client.get(
        f"{MODELS}/{created.json()['id']}?wait_for={position}", headers=api.auth("viewer")
    )
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["name"] == "rw"


async def test_a_stale_if_match_is_409_with_the_current_version_and_appends_nothing(
    api: Api,
) -> None:
    model = await register(api, "versioned")
    path = f"{MODELS}/{model['id']}"
    first = await api.client.patch(
        path, json={"description": "v2"}, headers={**api.auth(), "If-Match": '"1"'}
    )
    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    before = await event_count(api)
    stale = await api.client.patch(
        path, json={"description": "v3"}, headers={**api.auth(), "If-Match": '"1"'}
    )
    problem = is_problem(stale, 409)
    assert problem["current_version"] == 2
    assert stale.headers["etag"] == '"2"'
    body_stale = await api.client.patch(
        path, json={"description": "v3", "expected_version": 1}, headers=api.auth()
    )
    is_problem(body_stale, 409)
    assert await event_count(api) == before
    disagree = await api.client.patch(
        path,
        json={"description": "v3", "expected_version": 1},
        headers={**api.auth(), "If-Match": '"2"'},
    )
    # two versions cannot both be current: a conflict, and nothing is appended
    is_problem(disagree, 409)
    assert await event_count(api) == before


async def test_concurrent_conflicting_updates_one_wins_the_rest_get_409(api: Api) -> None:
    model = await register(api, "contended")
    path = f"{MODELS}/{model['id']}"
    before = await event_count(api)
    responses = await asyncio.gather(
        *(
            api.client.patch(
                path, json={"description": f"writer {i}"}, headers={**api.auth(), "If-Match": '"1"'}
            )
            for i in range(8)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 7
    assert await event_count(api) == before + 1


async def test_concurrent_registrations_of_one_name_register_it_once(api: Api) -> None:
    responses = await asyncio.gather(
        *(
            api.client.post(MODELS, json={"name": "race", "kind": "ml"}, headers=api.auth())
            for _ in range(6)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5


async def test_an_idempotent_retry_returns_the_first_answer_and_appends_nothing(api: Api) -> None:
    headers = {**api.auth(), "Idempotency-Key": "order-123"}
    first = await api.client.post(MODELS, json={"name": "idem", "kind": "ml"}, headers=headers)
    assert first.status_code == 201
    before = await event_count(api)
    again = await api.client.post(MODELS, json={"name": "idem", "kind": "ml"}, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await event_count(api) == before
    other = await api.client.post(MODELS, json={"name": "idem-2", "kind": "ml"}, headers=headers)
    is_problem(other, 422)
    assert await event_count(api) == before


async def test_concurrent_retries_with_one_key_register_once(api: Api) -> None:
    headers = {**api.auth(), "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(
            api.client.post(MODELS, json={"name": "burst", "kind": "ml"}, headers=headers)
            for _ in range(5)
        )
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1


async def test_listing_pages_through_every_model_once_with_filters(api: Api) -> None:
    for i in range(7):
        await register(
            api, f"model-{i}", kind="llm" if i % 2 else "ml", tags=["even"] if i % 2 == 0 else []
        )
    last = await api.client.post(
        MODELS,
        json={"name": "model-last", "kind": "ml", "description": "carries volatility features"},
        headers=api.auth(),
    )
    wait = f"wait_for={last.headers['aimm-position']}"
    seen: list[str] = []
    cursor = None
    while True:
        query = f"limit=3&{wait}" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.client.get(f"{MODELS}?{query}", headers=api.auth("viewer"))).json()
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*sorted(f"model-{i}" for i in range(7)), "model-last"]
    llm = (await api.client.get(f"{MODELS}?kind=llm&limit=50", headers=api.auth())).json()["items"]
    assert {m["name"] for m in llm} == {"model-1", "model-3", "model-5"}
    tagged = (await api.client.get(f"{MODELS}?tag=even", headers=api.auth())).json()["items"]
    assert {m["name"] for m in tagged} == {"model-0", "model-2", "model-4", "model-6"}
    found = (await api.client.get(f"{MODELS}?q=volatility", headers=api.auth())).json()["items"]
    assert [m["name"] for m in found] == ["model-last"]


async def test_metrics_and_openapi_are_served(api: Api) -> None:
    await register(api, "metered")
    metrics = await api.client.get("/metrics", headers=api.auth("viewer"))
    assert metrics.status_code == 200
    assert (
        'aimm_projection_lag_events{context="registry",projection="registry_models"}'
        in metrics.text
    )
    schema = (await api.client.get("/schema/openapi.json", headers=api.auth("viewer"))).json()
    assert schema["openapi"].startswith("3.1")
    assert "/api/v1/ai/models" in schema["paths"]
    ready = (await api.client.get("/health/ready")).json()
    assert ready["checks"]["database"] == "ok"
