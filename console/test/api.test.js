// The API client's own tests (node --test): the SSE reader and the request rules, against
// a real HTTP server on a loopback port, with the chunk boundaries a network may make.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";

// the browser's session storage, for the key (api.js reads it per call)
const store = new Map();
globalThis.sessionStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
globalThis.window = new EventTarget();

const { ApiError, get, post, query, setKey, stream, versionOf } = await import("../src/api.js");

let server;
let base;
const seen = [];
// what each path answers: a list of chunks written with a pause between them
const routes = {
  "/sse/split": ["id: 1\r", "\nevent: point\r\ndata: {\"step\": 1}\r\n\r", "\n", ": keep-alive\r\n\r\nid: 2\r\nevent: point\r\n",
    "data: {\"step\":", " 2}\r\n\r\nevent: status\ndata: done\n\n"],
};

before(async () => {
  server = http.createServer(async (req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    if (req.url.startsWith("/sse/")) {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      for (const chunk of routes[req.url]) {
        res.write(chunk);
        await new Promise((r) => setTimeout(r, 5));
      }
      res.end();
    } else if (req.url.startsWith("/conflict")) {
      res.writeHead(409, { "Content-Type": "application/problem+json" });
      res.end(JSON.stringify({ title: "Conflict", status: 409, detail: "version 3 is current", current_version: 3 }));
    } else {
      let body = "";
      for await (const part of req) body += part;
      res.writeHead(req.method === "POST" ? 201 : 200, {
        "Content-Type": "application/json",
        ETag: '"4"',
        "Aimm-Position": "registry:7",
      });
      res.end(JSON.stringify({ echo: body ? JSON.parse(body) : null }));
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
  setKey("test-key");
});

after(() => server.close());

test("events split anywhere, CRLF included, arrive whole and in order", async () => {
  const events = [];
  await stream(`${base}/sse/split`, { onEvent: (e) => events.push(e) });
  assert.deepEqual(events, [
    { event: "point", data: { step: 1 }, id: "1" },
    { event: "point", data: { step: 2 }, id: "2" },
    { event: "status", data: "done", id: null },
  ]);
  assert.equal(seen.at(-1).headers.authorization, "Bearer test-key");
  assert.equal(seen.at(-1).headers["last-event-id"], undefined);
});

test("a resumed stream sends Last-Event-ID", async () => {
  await stream(`${base}/sse/split`, { onEvent: () => {}, lastEventId: "2" });
  assert.equal(seen.at(-1).headers["last-event-id"], "2");
});

test("a command carries an Idempotency-Key and If-Match; the next read waits for its position", async () => {
  const created = await post(`${base}/things`, { name: "a" }, { ifMatch: '"3"' });
  assert.equal(created.status, 201);
  assert.deepEqual(created.data, { echo: { name: "a" } });
  assert.equal(created.position, "registry:7");
  const sent = seen.at(-1).headers;
  assert.match(sent["idempotency-key"], /^[0-9a-f-]{36}$/);
  assert.equal(sent["if-match"], '"3"');
  assert.equal(sent["content-type"], "application/json");
  await get(`${base}/things`, { limit: 5 });
  assert.equal(seen.at(-1).url, "/things?limit=5&wait_for=registry%3A7");
  // once a read has seen it, it is not sent again
  await get(`${base}/things`);
  assert.equal(seen.at(-1).url, "/things");
});

test("a refusal is an ApiError with the problem; a stale version is a conflict", async () => {
  await assert.rejects(get(`${base}/conflict`), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 409);
    assert.equal(err.problem.current_version, 3);
    assert.equal(err.message, "version 3 is current");
    return true;
  });
});

test("query strings drop empty values and repeat arrays; ETags become versions", () => {
  assert.equal(query({ a: 1, b: "", c: null, d: undefined, e: ["x", "y"] }), "?a=1&e=x&e=y");
  assert.equal(query({}), "");
  assert.equal(versionOf('W/"12"'), "12");
  assert.equal(versionOf('"3"'), "3");
  assert.equal(versionOf(null), null);
});
