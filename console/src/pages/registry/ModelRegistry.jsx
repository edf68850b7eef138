import { lazy, memo, Suspense, useCallback, useEffect, useMemo, useState } from "react";
import { useNavigate, useParams } from "react-router-dom";
import { get } from "../../api.js";
import Problem from "../../components/Problem.jsx";
import "./registry.css";

// the card draws with Cytoscape and uPlot: loaded only when a model is opened, so the
// list (the page's first paint, 1,000 models) carries neither library
const ModelCard = lazy(() => import("./ModelCard.jsx"));

const MODELS = "/api/v1/ai/models";
const PAGE = 500; // the API's largest page: 1,000 models are two requests
const ENVIRONMENTS = ["production", "staging"];
const count = (n, one, many) => `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;

/** Text inputs are applied a moment after the last key, selects at once. */
function useDebounced(value, ms) {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/**
 * Every model matching the filters, page after page: each page is shown as it arrives
 * (the first 500 rows paint while the next page loads). Returns the rows, whether more
 * are coming, the error, a reload, and `patch` to update one row in place.
 */
function useModelList(filters) {
  const [state, setState] = useState({ items: [], loading: true, error: null });
  const [token, setToken] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    let items = [];
    setState((s) => ({ ...s, loading: true, error: null }));
    (async () => {
      let cursor;
      do {
        const page = await get(MODELS, { ...filters, limit: PAGE, cursor }, { signal: controller.signal });
        items = items.concat(page.data.items);
        cursor = page.data.next_cursor;
        setState({ items, loading: Boolean(cursor), error: null });
      } while (cursor);
    })().catch((error) => {
      if (error?.name !== "AbortError") setState((s) => ({ ...s, loading: false, error }));
    });
    return () => controller.abort();
  }, [filters, token]);
  const reload = useCallback(() => setToken((t) => t + 1), []);
  const patch = useCallback((id, change) => {
    setState((s) => ({ ...s, items: s.items.map((m) => (m.id === id ? { ...m, ...change } : m)) }));
  }, []);
  return { ...state, reload, patch };
}

export default function ModelRegistry() {
  const params = useParams();
  const selectedId = (params["*"] || "").split("/")[0] || null;
  const navigate = useNavigate();

  const [q, setQ] = useState("");
  const [tag, setTag] = useState("");
  const [kind, setKind] = useState("");
  const [status, setStatus] = useState("");
  const settledQ = useDebounced(q.trim(), 250);
  const settledTag = useDebounced(tag.trim(), 250);
  const filters = useMemo(
    () => ({ q: settledQ, tag: settledTag, kind, status }),
    [settledQ, settledTag, kind, status],
  );
  const list = useModelList(filters);
  const filtered = Boolean(settledQ || settledTag || kind || status);

  function clear() {
    setQ("");
    setTag("");
    setKind("");
    setStatus("");
  }

  return (
    <div className="registry">
      <div className="registry-head">
        <h1>Model registry</h1>
        <p className="hint">
          Models with their latest version and the version active in each environment. Open one
          for its versions, metrics, lineage, deployments and history.
        </p>
      </div>
      <div className="registry-panes">
        <section className="registry-list" aria-labelledby="models-title">
          <h2 id="models-title" className="visually-hidden">
            Models
          </h2>
          <form className="toolbar" role="search" aria-label="Filter models" onSubmit={(e) => e.preventDefault()}>
            <div className="field">
              <label htmlFor="model-q">Search</label>
              <input
                id="model-q"
                type="search"
                placeholder="name, task, description"
                value={q}
                onChange={(e) => setQ(e.target.value)}
              />
            </div>
            <div className="field">
              <label htmlFor="model-kind">Kind</label>
              <select id="model-kind" value={kind} onChange={(e) => setKind(e.target.value)}>
                <option value="">any</option>
                <option value="ml">ml</option>
                <option value="llm">llm</option>
              </select>
            </div>
            <div className="field">
              <label htmlFor="model-status">Has a version</label>
              <select id="model-status" value={status} onChange={(e) => setStatus(e.target.value)}>
                <option value="">in any status</option>
                <option value="active">active</option>
                <option value="staging">staging</option>
                <option value="archived">archived</option>
              </select>
            </div>
            <div className="field">
              <label htmlFor="model-tag">Tag</label>
              <input id="model-tag" value={tag} size={10} onChange={(e) => setTag(e.target.value)} />
            </div>
            {(q || tag || kind || status) && (
              <button type="button" className="quiet" onClick={clear}>
                Clear filters
              </button>
            )}
          </form>
          <p className="registry-count">
            <span data-testid="model-count" data-loading={list.loading ? "true" : "false"}>
              {count(list.items.length, "model", "models")}
            </span>
            {filtered && <span className="hint"> match the filters</span>}
            <span role="status" className="hint">
              {list.loading ? " · loading…" : ""}
            </span>
          </p>
          <Problem error={list.error} onReload={list.reload} />
          {selectedId && (
            <button type="button" className="quiet skip-inline" onClick={() => document.getElementById("card-title")?.focus()}>
              Skip the list to the model card
            </button>
          )}
          <ModelTable models={list.items} selectedId={selectedId} />
        </section>
        <section className="registry-card" aria-label="Model card">
          {selectedId ? (
            <Suspense fallback={<p role="status">Loading the model card…</p>}>
              <ModelCard
                key={selectedId}
                modelId={selectedId}
                onChanged={(change) => list.patch(selectedId, change)}
                onClose={() => navigate("/registry")}
              />
            </Suspense>
          ) : (
            <div className="panel registry-empty">
              <p>Select a model in the list to see its card: versions and their metrics, a comparison, the lineage graph, deploy and rollback, and the deployment history.</p>
            </div>
          )}
        </section>
      </div>
    </div>
  );
}

/** A plain table: one row per model, nothing computed per row but two lookups. */
function ModelTable({ models, selectedId }) {
  return (
    <div className="registry-scroll" tabIndex={0} role="region" aria-label="Models (scrollable)">
      <table className="dense" data-testid="model-table">
        <thead>
          <tr>
            <th scope="col">Name · task · tags</th>
            <th scope="col">Kind</th>
            <th scope="col" className="num">
              Latest
            </th>
            {ENVIRONMENTS.map((env) => (
              <th scope="col" key={env}>
                {env}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {models.map((m) => (
            <ModelRow key={m.id} model={m} selected={m.id === selectedId} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** One model's row; unchanged rows are not drawn again when the next page arrives. */
const ModelRow = memo(function ModelRow({ model: m, selected }) {
  return (
    <tr data-testid="model-row" className={selected ? "selected" : undefined}>
      <th scope="row">
        <a href={`#/registry/${m.id}`} aria-current={selected ? "true" : undefined}>
          {m.name}
        </a>
        {(m.task || m.tags.length > 0) && (
          <div className="hint clip">
            {m.task}
            {m.task && m.tags.length > 0 ? " · " : ""}
            {m.tags.join(", ")}
          </div>
        )}
      </th>
      <td>{m.kind}</td>
      <td className="num">{m.latest_version ? `v${m.latest_version}` : "—"}</td>
      {ENVIRONMENTS.map((env) => (
        <td key={env}>
          {m.active?.[env] ? <span className="badge ok">v{m.active[env]}</span> : <span className="hint">—</span>}
        </td>
      ))}
    </tr>
  );
});
