// The console's only way to the server: the public API, with the user's key.
//
// - The key is asked once and kept in sessionStorage (gone when the tab closes).
// - Every command (POST, PUT, PATCH, DELETE) carries an Idempotency-Key, so a retry of
//   the same click is answered with the first result; `ifMatch` sends If-Match.
// - Read-your-writes: a command's Aimm-Position is passed as `wait_for` to the next
//   reads until one of them has seen it, so a page shows its own change at once.
// - A refusal is an ApiError holding the problem+json body (RFC 9457).

const KEY = "aimm.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY);
  window.dispatchEvent(new Event("aimm:signed-out"));
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  get conflict() {
    return this.status === 409;
  }
}

let pendingPosition = null;

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(name, String(v)));
    else search.append(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      /* fall through */
    }
  }
  const text = await response.text().catch(() => "");
  return { title: response.statusText || `HTTP ${response.status}`, detail: text.slice(0, 300) };
}

/**
 * One API call. Returns { status, data, etag, location, position, headers }.
 * Throws ApiError for any 4xx/5xx answer (with its problem+json), and a TypeError when
 * the server cannot be reached.
 */
export async function request(path, options = {}) {
  const { method = "GET", body, ifMatch, params, signal, idempotencyKey, accept } = options;
  const headers = { Accept: accept || "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const command = method !== "GET" && method !== "HEAD";
  let search = params ? { ...params } : {};
  if (command) {
    headers["Idempotency-Key"] = idempotencyKey || newKey();
    if (ifMatch !== undefined && ifMatch !== null) headers["If-Match"] = String(ifMatch);
  } else if (pendingPosition && search.wait_for === undefined) {
    search.wait_for = pendingPosition;
  }
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const sentPosition = search.wait_for;
  const response = await fetch(path + query(search), { method, headers, body: payload, signal });
  if (response.status === 401) {
    const problem = await problemOf(response);
    clearKey();
    throw new ApiError(401, problem);
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (!command && sentPosition && sentPosition === pendingPosition) pendingPosition = null;
  const position = response.headers.get("aimm-position");
  if (command && position) pendingPosition = position;
  const type = response.headers.get("content-type") || "";
  let data = null;
  if (response.status !== 204) {
    data = type.includes("json") ? await response.json() : await response.text();
  }
  return {
    status: response.status,
    data,
    etag: response.headers.get("etag"),
    location: response.headers.get("location"),
    position,
    headers: response.headers,
  };
}

export const get = (path, params, options = {}) => request(path, { ...options, params });
export const post = (path, body, options = {}) => request(path, { ...options, method: "POST", body });
export const put = (path, body, options = {}) => request(path, { ...options, method: "PUT", body });
export const patch = (path, body, options = {}) => request(path, { ...options, method: "PATCH", body });
export const del = (path, options = {}) => request(path, { ...options, method: "DELETE" });

/** Every item of a cursor-paginated list (`items`, `next_cursor`), up to `max` items. */
export async function all(path, params = {}, { max = 10000, signal } = {}) {
  const items = [];
  let cursor;
  do {
    const page = await get(path, { limit: 500, ...params, cursor }, { signal });
    items.push(...page.data.items);
    cursor = page.data.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

/** An ETag header value as the version number If-Match wants (ETags may be quoted or weak). */
export function versionOf(etag) {
  if (!etag) return null;
  return etag.replace(/^W\//, "").replaceAll('"', "");
}

/**
 * Server-Sent Events with the API key: EventSource cannot send an Authorization header,
 * so the stream is read with fetch. Calls onEvent({event, data, id}) per event until the
 * stream ends or `signal` aborts; resolves when it ends. `lastEventId` (the `id` of the
 * last event received) resumes a broken stream after it, as EventSource would.
 */
export async function stream(path, { params, onEvent, signal, lastEventId }) {
  const headers = { Accept: "text/event-stream" };
  if (lastEventId !== undefined && lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path + query(params), { headers, signal });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = ""; // text with its line ends made "\n"
  let carry = ""; // a "\r" that ended the last chunk: its "\n" may start the next one
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    let text = carry + value;
    carry = "";
    if (text.endsWith("\r")) {
      carry = "\r";
      text = text.slice(0, -1);
    }
    buffer += text.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", data: "", id: null };
      const lines = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") message.event = text;
        else if (field === "data") lines.push(text);
        else if (field === "id") message.id = text;
      }
      if (!lines.length) continue;
      message.data = lines.join("\n");
      try {
        message.data = JSON.parse(message.data);
      } catch {
        /* not JSON: keep the text */
      }
      onEvent(message);
    }
  }
}
