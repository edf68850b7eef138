"""Market data through HTTP: imports as events, bars in the reference table, queries."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from api.cli.dev import load_sample_market_data
from tests.e2e.test_models_api import is_problem
from tests.helpers import Api

BASE = "/api/v1/market-data"


def bar(day: str, close: float = 10.5, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "date": day, "open": 10.0, "high": 11.0, "low": 9.5, "close": close, "volume": 1000,
    }  # fmt: skip
    row.update(over)
    return row


ROWS = [bar("2024-01-02"), bar("2024-01-03", 10.8), bar("2024-01-04", 10.2)]


async def events(api: Api) -> list[asyncpg.Record]:
    return await api.fetch(
        "SELECT originator_version, topic FROM predictions_events ORDER BY notification_id"
    )


async def post_bars(
    api: Api, ticker: str, rows: list[Any], role: str = "operator", **body: Any
) -> Any:
    return await api.client.post(
        f"{BASE}/{ticker}/bars", json={"rows": rows, **body}, headers=api.auth(role)
    )


async def bars(api: Api, ticker: str, wait: str | None = None, **query: Any) -> Any:
    params = {**query, **({"wait_for": wait} if wait else {})}
    return await api.client.get(f"{BASE}/{ticker}", params=params, headers=api.auth("viewer"))


async def test_import_then_identical_reimport_appends_nothing(api: Api) -> None:
    first = await post_bars(api, "acme", ROWS)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["ticker"] == "ACME" and body["event"] == "BarsImported"
    assert (body["first_date"], body["last_date"], body["row_count"]) == (
        "2024-01-02", "2024-01-04", 3,
    )  # fmt: skip
    assert body["content_hash"].startswith("sha256:")
    stored = await events(api)
    assert [r["topic"].rpartition(".")[2] for r in stored] == ["Created", "BarsImported"]
    meta = await api.fetch("SELECT state FROM predictions_events ORDER BY notification_id")
    assert b'"principal"' in bytes(meta[-1]["state"])
    assert b'"correlation_id"' in bytes(meta[-1]["state"])

    got = await bars(api, "ACME", first.headers["Aimm-Position"])
    assert got.status_code == 200, got.text
    page = got.json()
    assert [b["date"] for b in page["items"]] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert page["items"][1]["close"] == 10.8 and page["row_count"] == 3

    again = await post_bars(api, "ACME", list(reversed(ROWS)))
    assert again.status_code == 200, again.text
    assert again.json()["changed"] is False and again.json()["event"] is None
    assert len(await events(api)) == 2

    # new dates alongside identical ones: one more import event, the union is served
    more = await post_bars(api, "ACME", [*ROWS, bar("2024-01-05")])
    assert more.status_code == 201 and more.json()["new_dates"] == 1
    listing = await api.client.get(
        BASE, params={"wait_for": more.headers["Aimm-Position"]}, headers=api.auth("viewer")
    )
    assert listing.status_code == 200
    assert listing.json()["items"] == [
        {
            "ticker": "ACME", "first_date": "2024-01-02", "last_date": "2024-01-05",
            "row_count": 4, "imports": 2, "version": 3,
            "updated_at": listing.json()["items"][0]["updated_at"],
        }
    ]  # fmt: skip


async def test_contradicting_rows_are_409_unless_replace_records_a_correction(api: Api) -> None:
    first = await post_bars(api, "ACME", ROWS)
    position = first.headers["Aimm-Position"]
    changed = [bar("2024-01-03", 10.9), bar("2024-01-04", 10.2), bar("2024-01-08")]
    refused = is_problem(await post_bars(api, "ACME", changed), 409)
    assert refused["dates"] == ["2024-01-03"]
    assert "2024-01-03" in str(refused["detail"])
    assert len(await events(api)) == 2
    table = (await bars(api, "ACME", position)).json()["items"]
    assert [b["date"] for b in table] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert table[1]["close"] == 10.8

    fixed = await post_bars(api, "ACME", changed, replace=True)
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["event"] == "BarsCorrected"
    assert fixed.json()["replaced_dates"] == ["2024-01-03"]
    assert fixed.json()["new_dates"] == 1
    stored = await events(api)
    assert stored[-1]["topic"].endswith("MarketData.BarsCorrected")
    table = (await bars(api, "ACME", fixed.headers["Aimm-Position"])).json()["items"]
    assert [(b["date"], b["close"]) for b in table] == [
        ("2024-01-02", 10.5), ("2024-01-03", 10.9), ("2024-01-04", 10.2), ("2024-01-08", 10.5),
    ]  # fmt: skip


async def test_bad_rows_are_400_with_row_numbers_and_nothing_is_kept(api: Api) -> None:
    rows = [
        bar("2024-01-02"),
        bar("2024-01-03", high=9.0),  # high < low
        bar("2024-01-04", close=12.0),  # close above high
        bar("2024-01-05", volume=-1),
        bar("02/01/2024"),  # not ISO
        bar("2024-01-02"),  # repeats row 1
    ]
    problem = is_problem(await post_bars(api, "ACME", rows), 400)
    assert problem["rows"] == [2, 3, 4, 5, 6]
    assert "2, 3, 4, 5, 6" in str(problem["detail"])
    fields = [e["field"] for e in problem["errors"]]  # type: ignore[union-attr]
    assert fields == ["rows[2]", "rows[3]", "rows[4]", "rows[5]", "rows[6]"]
    assert await events(api) == []
    assert await api.fetch("SELECT * FROM market_data_payloads") == []
    assert await api.fetch("SELECT * FROM rm_market_bars") == []
    is_problem(await post_bars(api, "ACME", []), 400)
    is_problem(await post_bars(api, "not a ticker!", ROWS), 400)


async def test_csv_upload_imports_the_same_bars(api: Api) -> None:
    csv = "Date,Open,High,Low,Close,Adj Close,Volume\n" + "".join(
        f"{r['date']},{r['open']},{r['high']},{r['low']},{r['close']},0,{r['volume']}\n"
        for r in ROWS
    )
    headers = {**api.auth("operator"), "Content-Type": "text/csv"}
    response = await api.client.post(f"{BASE}/ACME/bars", content=csv, headers=headers)
    assert response.status_code == 201, response.text
    # the same rows as JSON are identical: nothing recorded
    assert (await post_bars(api, "ACME", ROWS)).json()["changed"] is False
    bad = "date,open,high,low,close,volume\n2024-01-09,1,2,3,1,5\n"
    problem = is_problem(
        await api.client.post(f"{BASE}/ACME/bars", content=bad, headers=headers), 400
    )
    assert problem["rows"] == [1]


async def test_parquet_upload_imports_the_same_bars(api: Api) -> None:
    import io
    from datetime import date

    import polars as pl

    frame = pl.DataFrame(
        {
            "Date": [date.fromisoformat(r["date"]) for r in ROWS],
            "Open": [r["open"] for r in ROWS],
            "High": [r["high"] for r in ROWS],
            "Low": [r["low"] for r in ROWS],
            "Close": [r["close"] for r in ROWS],
            "Volume": [r["volume"] for r in ROWS],
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    headers = {**api.auth("operator"), "Content-Type": "application/vnd.apache.parquet"}
    response = await api.client.post(
        f"{BASE}/ACME/bars", content=buffer.getvalue(), headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["row_count"] == 3
    assert (await post_bars(api, "ACME", ROWS)).json()["changed"] is False
    # not Parquet, or a Parquet file without a volume column: 400, nothing recorded
    before = await events(api)
    is_problem(await api.client.post(f"{BASE}/ACME/bars", content=b"PAR1", headers=headers), 400)
    buffer = io.BytesIO()
    frame.drop("Volume").write_parquet(buffer)
    problem = is_problem(
        await api.client.post(f"{BASE}/ACME/bars", content=buffer.getvalue(), headers=headers),
        400,
    )
    assert "volume" in problem["detail"]
    assert await events(api) == before
    unsupported = {**api.auth("operator"), "Content-Type": "application/xml"}
    is_problem(
        await api.client.post(f"{BASE}/ACME/bars", content=b"<a/>", headers=unsupported), 415
    )


async def test_viewer_cannot_import_and_unknown_ticker_is_404(api: Api) -> None:
    is_problem(await post_bars(api, "ACME", ROWS, role="viewer"), 403)
    is_problem(await post_bars(api, "ACME", ROWS, role="auditor"), 403)
    assert await events(api) == []
    is_problem(await bars(api, "NOPE"), 404)
    is_problem(await bars(api, "not a ticker!"), 400)  # malformed: the path pattern
    assert (await post_bars(api, "ACME", ROWS, role="admin")).status_code == 201


async def test_range_query_is_ordered_and_paginated(api: Api) -> None:
    rows = [bar(f"2024-02-{d:02d}", 10.0 + d / 100) for d in range(1, 29)]
    response = await post_bars(api, "ACME", rows)
    position = response.headers["Aimm-Position"]
    got = (await bars(api, "ACME", position, start="2024-02-10", end="2024-02-20")).json()
    assert [b["date"] for b in got["items"]] == [f"2024-02-{d}" for d in range(10, 21)]
    assert got["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"start": "2024-02-05", "limit": 10}
        if cursor:
            query["cursor"] = cursor
        page = (await bars(api, "ACME", **query)).json()
        seen += [b["date"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"2024-02-{d:02d}" for d in range(5, 29)]
    is_problem(await bars(api, "ACME", limit=0), 400)
    is_problem(await bars(api, "ACME", limit=5001), 400)
    is_problem(await bars(api, "not a ticker!"), 400)
    empty = await bars(api, "ACME", start="2024-02-10", end="2024-02-01")
    assert empty.status_code == 200, empty.text
    assert (empty.json()["items"], empty.json()["next_cursor"]) == ([], None)


async def test_if_match_on_the_tickers_market_data(api: Api) -> None:
    path, operator = f"{BASE}/ACME/bars", api.auth("operator")
    stale = await api.client.post(
        path, json={"rows": ROWS}, headers={**operator, "If-Match": '"3"'}
    )
    assert is_problem(stale, 409)["current_version"] == 0
    assert await events(api) == []
    first = await api.client.post(
        path, json={"rows": ROWS}, headers={**operator, "If-Match": '"0"'}
    )
    assert first.status_code == 201, first.text
    assert first.headers["etag"] == f'"{first.json()["version"]}"' == '"2"'
    more = {"rows": [bar("2024-01-05")]}
    again = await api.client.post(path, json=more, headers={**operator, "If-Match": '"1"'})
    problem = is_problem(again, 409)
    assert (problem["current_version"], problem["expected_version"]) == (2, 1)
    assert len(await events(api)) == 2
    ok = await api.client.post(path, json=more, headers={**operator, "If-Match": '"2"'})
    assert ok.status_code == 201 and ok.headers["etag"] == '"3"', ok.text


async def test_idempotency_key_replays_the_first_import(api: Api) -> None:
    headers = {**api.auth("operator"), "Idempotency-Key": "import-1"}
    first = await api.client.post(f"{BASE}/ACME/bars", json={"rows": ROWS}, headers=headers)
    again = await api.client.post(f"{BASE}/ACME/bars", json={"rows": ROWS}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


async def test_a_crash_between_payload_and_event_leaves_no_bars(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are stored (by content hash) before the event: a crash in between leaves
    an unreferenced payload and no visible bar; the retry records the import."""
    app = api.client.app.state.contexts.predictions

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("simulated crash before the event is saved")

    monkeypatch.setattr(app, "save_command", crash)
    is_problem(await post_bars(api, "ACME", ROWS), 500)
    monkeypatch.undo()
    assert await events(api) == []
    assert len(await api.fetch("SELECT * FROM market_data_payloads")) == 1
    is_problem(await bars(api, "ACME"), 404)
    retry = await post_bars(api, "ACME", ROWS)
    assert retry.status_code == 201
    page = (await bars(api, "ACME", retry.headers["Aimm-Position"])).json()
    assert len(page["items"]) == 3


async def test_sample_data_loads_once_and_is_served(api: Api) -> None:
    await asyncio.to_thread(load_sample_market_data, api.url)
    first = await events(api)
    assert len(first) == 4  # Created + BarsImported for SP500 and NASDAQ
    await asyncio.to_thread(load_sample_market_data, api.url)  # identical rows: nothing
    assert len(await events(api)) == 4
    head = await api.fetch("SELECT max(notification_id) AS n FROM predictions_events")
    listing = await api.client.get(
        BASE, params={"wait_for": f"predictions:{head[0]['n']}"}, headers=api.auth("viewer")
    )
    summary = {t["ticker"]: t for t in listing.json()["items"]}
    assert set(summary) == {"NASDAQ", "SP500"}
    assert summary["SP500"]["first_date"] == "1999-01-04"
    assert summary["SP500"]["last_date"] == "2018-12-31"
    assert summary["SP500"]["row_count"] > 5000
    got = (await bars(api, "SP500", start="2018-12-24", end="2018-12-31")).json()
    assert [b["date"] for b in got["items"]][-1] == "2018-12-31"


async def test_the_endpoints_are_in_the_openapi_schema(api: Api) -> None:
    response = await api.client.get("/schema/openapi.json", headers=api.auth("viewer"))
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {f"{BASE}/{{ticker}}/bars", f"{BASE}/{{ticker}}", BASE} <= set(paths)
