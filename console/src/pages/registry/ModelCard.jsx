import { useMemo, useState } from "react";
import { all, get, post, versionOf } from "../../api.js";
import { refusal, useCaller, useMay } from "../../components/Caller.jsx";
import Chart from "../../components/Chart.jsx";
import Confirm from "../../components/Confirm.jsx";
import Graph from "../../components/Graph.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import DeploymentHistory from "./DeploymentHistory.jsx";
import { when } from "../../format.js";

const MODELS = "/api/v1/ai/models";
const ENVIRONMENTS = ["production", "staging"];
const STATUS_BADGE = { active: "ok", staging: "warn", archived: "" };
const PALETTE = ["#0b5cad", "#b3261e", "#1b6e3a", "#8a5300", "#6b3fa0", "#0e7c86", "#52606d", "#c2410c"];

const fmt = (value) =>
  typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toPrecision(4)) : JSON.stringify(value);

/**
 * One model: its environments, versions (deploy with one click, confirmed), comparison,
 * metrics history, lineage graph and deployment history; "as of" replays it at a time.
 */
export default function ModelCard({ modelId, onChanged, onClose }) {
  const [asOf, setAsOf] = useState(null);
  const base = `${MODELS}/${modelId}`;
  const model = useResource(
    (signal) => get(base, { as_of: asOf || undefined }, { signal }),
    [modelId, asOf],
  );
  const history = useResource(
    (signal) => (asOf ? Promise.resolve(null) : all(`${base}/deployments`, { limit: 500 }, { signal })),
    [modelId, asOf],
  );
  const lineage = useResource((signal) => get(`${base}/lineage`, undefined, { signal }), [modelId]);

  const [pending, setPending] = useState(null);
  const [reason, setReason] = useState("");
  const [failure, setFailure] = useState(null); // { action, error }
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);

  const detail = model.data?.data;
  const etag = model.data?.etag;
  const deployments = asOf ? detail?.deployments || [] : history.data || detail?.deployments || [];
  const past = Boolean(asOf);
  const caller = useCaller();
  const mayWrite = useMay("write");

  function reloadAll() {
    model.reload();
    history.reload();
    lineage.reload();
  }

  function reloadAfterConflict() {
    setFailure(null);
    reloadAll();
  }

  function ask(action) {
    setFailure(null);
    setNotice("");
    setReason("");
    setPending(action);
  }

  async function confirm() {
    const action = pending;
    setPending(null);
    setBusy(true);
    try {
      const body =
        action.action === "deploy"
          ? { version: action.version, environment: action.environment, reason }
          : { version: action.to, environment: action.environment, reason };
      const response = await post(`${base}/${action.action}`, body, { ifMatch: etag });
      const result = response.data;
      onChanged?.({ active: result.active, version: result.model_version });
      setNotice(
        action.action === "deploy"
          ? `v${action.version} deployed to ${action.environment}.`
          : `${action.environment} rolled back from v${action.from} to v${action.to}.`,
      );
      reloadAll();
    } catch (error) {
      setFailure({ action: action.action, error });
    } finally {
      setBusy(false);
    }
  }

  if (!detail) {
    return (
      <div className="panel">
        {model.loading && <p role="status">Loading the model…</p>}
        <Problem error={model.error} onReload={model.reload} />
        {model.error && asOf && (
          <button type="button" className="quiet" onClick={() => setAsOf(null)}>
            Back to now
          </button>
        )}
      </div>
    );
  }

  const versions = detail.versions;
  return (
    <article className="model-card" aria-labelledby="card-title" data-model-version={versionOf(etag)}>
      <header className="panel card-head">
        <div className="section-head">
          <h2 id="card-title" tabIndex={-1}>
            {detail.name}
          </h2>
          <span className="badge">{detail.kind}</span>
          {detail.tags.map((t) => (
            <span className="badge tag" key={t}>
              {t}
            </span>
          ))}
          <button type="button" className="quiet close" onClick={onClose}>
            Close card
          </button>
        </div>
        <dl className="facts">
          <div>
            <dt>Task</dt>
            <dd>{detail.task || "—"}</dd>
          </div>
          <div>
            <dt>Owner</dt>
            <dd>{detail.owner || "—"}</dd>
          </div>
          <div>
            <dt>Registered</dt>
            <dd>
              {when(detail.created_at)} by {detail.created_by}
            </dd>
          </div>
          <div>
            <dt>Model version (ETag)</dt>
            <dd data-testid="model-etag">{versionOf(etag)}</dd>
          </div>
        </dl>
        {detail.description && <p className="description" data-testid="model-description">{detail.description}</p>}
        <AsOf asOf={asOf} onAsOf={setAsOf} />
        {past && detail.as_of && !model.error && (
          <p className="as-of-banner" role="status">
            Showing the model as it was at <strong>{when(detail.as_of || asOf)}</strong>, replayed from its events.
            Deploy and rollback act on the present: go back to now to use them.
          </p>
        )}
        {model.error && (
          <>
            <Problem error={model.error} onReload={model.reload} />
            {asOf && model.error.status === 404 && (
              <p className="hint" data-testid="as-of-missing">
                The model did not exist yet at {when(asOf)}; the card below is what was shown before.
              </p>
            )}
          </>
        )}
      </header>

      <p role="status" className="notice">
        {notice}
      </p>
      {mayWrite === false && (
        <p className="hint" data-testid="read-only">
          {refusal(caller, "deploy or roll back: that needs the operator or admin role")}
        </p>
      )}

      <Environments
        detail={detail}
        deployments={deployments}
        disabled={past || busy || !mayWrite}
        onRollback={(environment, from, to) => ask({ action: "rollback", environment, from, to })}
      />
      {failure?.action === "rollback" && (
        <Problem error={failure.error} onReload={reloadAfterConflict} onDismiss={() => setFailure(null)} />
      )}

      <Versions
        detail={detail}
        disabled={past || busy || !mayWrite}
        onDeploy={(version, environment) => ask({ action: "deploy", version, environment })}
      >
        {failure?.action === "deploy" && (
          <Problem error={failure.error} onReload={reloadAfterConflict} onDismiss={() => setFailure(null)} />
        )}
      </Versions>

      <Confirm
        open={Boolean(pending)}
        title={
          pending?.action === "deploy"
            ? `Deploy v${pending.version} to ${pending.environment}?`
            : pending
              ? `Roll back ${pending.environment}?`
              : ""
        }
        confirmLabel={pending?.action === "deploy" ? "Deploy" : "Roll back"}
        danger={pending?.action === "rollback"}
        onConfirm={confirm}
        onCancel={() => setPending(null)}
      >
        {pending?.action === "deploy" && (
          <p>
            <strong>{detail.name}</strong> v{pending.version} becomes the active version in{" "}
            <strong>{pending.environment}</strong>
            {detail.active[pending.environment]
              ? `, replacing v${detail.active[pending.environment]} (which is archived unless active elsewhere).`
              : "."}
          </p>
        )}
        {pending?.action === "rollback" && (
          <p>
            <strong>{detail.name}</strong> in <strong>{pending.environment}</strong> goes back from v
            {pending.from} to v{pending.to}. The rollback is recorded as its own entry in the history.
          </p>
        )}
        <div className="field wide">
          <label htmlFor="command-reason">Reason (recorded in the history)</label>
          <input id="command-reason" value={reason} maxLength={1000} onChange={(e) => setReason(e.target.value)} />
        </div>
      </Confirm>

      <Compare modelId={modelId} versions={versions} />
      <MetricsHistory versions={versions} />
      <Lineage lineage={lineage} past={past} />
      {history.error && !past && <Problem error={history.error} onReload={history.reload} />}
      <DeploymentHistory deployments={deployments} asOf={asOf} onAsOf={setAsOf} />
    </article>
  );
}

/** A time to replay the model at (UTC, to the second), or back to now. */
function AsOf({ asOf, onAsOf }) {
  const [value, setValue] = useState("");
  function submit(event) {
    event.preventDefault();
    if (!value) return;
    onAsOf(`${value.length === 16 ? `${value}:00` : value}Z`);
  }
  return (
    <form className="toolbar as-of" onSubmit={submit} aria-label="As of">
      <div className="field">
        <label htmlFor="as-of">As of (UTC)</label>
        <input id="as-of" type="datetime-local" step="1" value={value} onChange={(e) => setValue(e.target.value)} />
      </div>
      <button type="submit" className="quiet" disabled={!value}>
        Show as of then
      </button>
      <button
        type="button"
        className="quiet"
        disabled={!asOf}
        onClick={() => {
          setValue("");
          onAsOf(null);
        }}
      >
        Back to now
      </button>
    </form>
  );
}

/** The version that a default rollback of `environment` would re-activate (as the API picks it). */
function rollbackTarget(deployments, environment, current) {
  const earlier = deployments.filter((d) => d.environment === environment).map((d) => d.version);
  for (let i = earlier.length - 1; i >= 0; i -= 1) if (earlier[i] !== current) return earlier[i];
  return null;
}

function Environments({ detail, deployments, disabled, onRollback }) {
  return (
    <section className="panel" aria-labelledby="env-title">
      <h3 id="env-title">Status per environment</h3>
      <table className="dense" data-testid="environments">
        <thead>
          <tr>
            <th scope="col">Environment</th>
            <th scope="col">Active version</th>
            <th scope="col">Since</th>
            <th scope="col">By</th>
            <th scope="col">
              <span className="visually-hidden">Rollback</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {ENVIRONMENTS.map((env) => {
            const current = detail.active[env] ?? null;
            const last = [...deployments].reverse().find((d) => d.environment === env);
            const target = current ? rollbackTarget(deployments, env, current) : null;
            return (
              <tr key={env} data-environment={env}>
                <th scope="row">{env}</th>
                <td data-testid={`active-${env}`}>
                  {current ? <span className="badge ok">v{current}</span> : <span className="hint">nothing deployed</span>}
                </td>
                <td className="when">{last && current ? when(last.deployed_at) : "—"}</td>
                <td>{last && current ? last.deployed_by : "—"}</td>
                <td>
                  <button
                    type="button"
                    className="quiet small"
                    disabled={disabled || !target}
                    title={target ? undefined : "no earlier version was active here"}
                    aria-label={target ? `Roll back to v${target} in ${env}` : `Roll back ${env} (no earlier version)`}
                    onClick={() => onRollback(env, current, target)}
                  >
                    {target ? `Roll back to v${target}` : "Roll back"}
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

function MetricList({ metrics }) {
  const names = Object.keys(metrics);
  if (!names.length) return <span className="hint">—</span>;
  return (
    <span className="metrics">
      {names.slice(0, 4).map((name) => (
        <span key={name}>
          {name} <span className="num">{fmt(metrics[name])}</span>
        </span>
      ))}
      {names.length > 4 && <span className="hint">+{names.length - 4}</span>}
    </span>
  );
}

function Versions({ detail, disabled, onDeploy, children }) {
  const versions = [...detail.versions].reverse();
  return (
    <section className="panel" aria-labelledby="versions-title">
      <h3 id="versions-title">
        Versions <span className="hint">({detail.versions.length})</span>
      </h3>
      {children}
      {versions.length === 0 ? (
        <p className="hint">No version registered yet.</p>
      ) : (
        <table className="dense" data-testid="versions">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Status</th>
              <th scope="col">Framework · artifact</th>
              <th scope="col">Latest metrics</th>
              <th scope="col">Registered</th>
              <th scope="col">Deploy to</th>
            </tr>
          </thead>
          <tbody>
            {versions.map((v) => (
              <tr key={v.version} data-version={v.version}>
                <th scope="row">v{v.version}</th>
                <td>
                  <span className={`badge ${STATUS_BADGE[v.status] ?? ""}`}>{v.status}</span>
                  {v.environments.length > 0 && <span className="hint"> {v.environments.join(", ")}</span>}
                </td>
                <td className="clip">
                  {v.framework || "—"} · <code>{v.artifact}</code>
                </td>
                <td>
                  <MetricList metrics={v.metrics} />
                </td>
                <td className="when">
                  {when(v.created_at)}
                  <div className="hint">{v.created_by}</div>
                </td>
                <td className="deploy-cell">
                  {ENVIRONMENTS.map((env) => {
                    const here = detail.active[env] === v.version;
                    return (
                      <button
                        key={env}
                        type="button"
                        className="small"
                        disabled={disabled || here}
                        aria-label={here ? `v${v.version} is active in ${env}` : `Deploy v${v.version} to ${env}`}
                        onClick={() => onDeploy(v.version, env)}
                      >
                        {env}
                      </button>
                    );
                  })}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** Metrics and parameters of chosen versions side by side (the API marks the best). */
function Compare({ modelId, versions }) {
  const numbers = versions.map((v) => v.version);
  const [chosen, setChosen] = useState(null);
  const picked = (chosen ?? numbers.slice(-2)).filter((n) => numbers.includes(n)).sort((a, b) => a - b);
  const key = picked.join(",");
  const comparison = useResource(
    (signal) =>
      picked.length >= 2
        ? get(`${MODELS}/${modelId}/versions/compare`, { versions: key }, { signal })
        : Promise.resolve(null),
    [modelId, key],
  );
  if (numbers.length < 2) return null;
  function toggle(n) {
    const next = picked.includes(n) ? picked.filter((x) => x !== n) : [...picked, n];
    setChosen(next);
  }
  const result = comparison.data?.data;
  return (
    <section className="panel" aria-labelledby="compare-title">
      <h3 id="compare-title">Compare versions</h3>
      <fieldset className="choices">
        <legend>Versions to compare (2 to 20)</legend>
        {numbers.map((n) => (
          <label key={n} className="choice">
            <input type="checkbox" checked={picked.includes(n)} onChange={() => toggle(n)} />v{n}
          </label>
        ))}
      </fieldset>
      {picked.length < 2 && <p className="hint">Choose at least two versions.</p>}
      <Problem error={comparison.error} onReload={comparison.reload} />
      {result && picked.length >= 2 && (
        <div className="row">
          <CompareTable title="Metrics" rows={result.metrics} versions={result.versions} testId="compare-metrics" best />
          <CompareTable title="Parameters" rows={result.parameters} versions={result.versions} testId="compare-parameters" />
        </div>
      )}
    </section>
  );
}

function CompareTable({ title, rows, versions, testId, best }) {
  return (
    <div className="grow">
      <table className="dense" data-testid={testId}>
        <caption>{title}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            {versions.map((v) => (
              <th scope="col" className="num" key={v}>
                v{v}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 && (
            <tr>
              <td colSpan={versions.length + 1} className="hint">
                none recorded
              </td>
            </tr>
          )}
          {rows.map((row) => (
            <tr key={row.name} className={row.differs ? "differs" : undefined}>
              <th scope="row">
                {row.name}
                {row.differs && <span className="visually-hidden"> (differs)</span>}
              </th>
              {versions.map((v) => {
                const value = row.values[String(v)];
                const isBest = best && row.best_version === v;
                return (
                  <td key={v} className={`num${isBest ? " best" : ""}`} data-best={isBest ? "true" : undefined}>
                    {value === null || value === undefined ? "—" : fmt(value)}
                    {isBest && <span className="badge ok best-badge">best</span>}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** One metric's recorded values over time, a line per version, and the same as a table. */
function MetricsHistory({ versions }) {
  const names = useMemo(() => {
    const set = new Set();
    versions.forEach((v) => v.metrics_history.forEach((h) => Object.keys(h.metrics).forEach((n) => set.add(n))));
    return [...set].sort();
  }, [versions]);
  const [metric, setMetric] = useState(null);
  const name = metric && names.includes(metric) ? metric : names[0];

  const { data, series, points } = useMemo(() => {
    const withMetric = versions.filter((v) => v.metrics_history.some((h) => name in h.metrics));
    const points = [];
    withMetric.forEach((v) =>
      v.metrics_history.forEach((h) => {
        if (name in h.metrics) points.push({ version: v.version, t: Date.parse(h.recorded_at) / 1000, h });
      }),
    );
    points.sort((a, b) => a.t - b.t);
    const xs = [...new Set(points.map((p) => p.t))];
    const index = new Map(xs.map((x, i) => [x, i]));
    const columns = withMetric.map((v) => {
      const column = new Array(xs.length).fill(null);
      points.filter((p) => p.version === v.version).forEach((p) => (column[index.get(p.t)] = p.h.metrics[name]));
      return column;
    });
    const series = withMetric.map((v, i) => ({
      label: `v${v.version}`,
      stroke: PALETTE[i % PALETTE.length],
      points: { show: true, size: 6 },
    }));
    return { data: [xs, ...columns], series, points };
  }, [versions, name]);

  if (!names.length) {
    return (
      <section className="panel" aria-labelledby="metrics-title">
        <h3 id="metrics-title">Metrics history</h3>
        <p className="hint">No metrics recorded for any version.</p>
      </section>
    );
  }
  return (
    <section className="panel" aria-labelledby="metrics-title">
      <div className="section-head">
        <h3 id="metrics-title">Metrics history</h3>
        <div className="field inline">
          <label htmlFor="metric-name">Metric</label>
          <select id="metric-name" value={name} onChange={(e) => setMetric(e.target.value)}>
            {names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </div>
      </div>
      {data[0].length < 2 ? (
        <p className="hint">One value recorded so far: the chart needs two.</p>
      ) : (
        <Chart
          label={`${name} of each version over time`}
          data={data}
          series={series}
          height={200}
          yLabel={name}
          testId="metrics-chart"
        />
      )}
      <div className="metrics-table" tabIndex={0} role="region" aria-label={`${name}, every recorded value`}>
        <table className="dense" data-testid="metrics-history">
          <caption className="visually-hidden">{name}, every recorded value</caption>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Recorded</th>
              <th scope="col">By</th>
              <th scope="col">Source</th>
              <th scope="col" className="num">
                {name}
              </th>
            </tr>
          </thead>
          <tbody>
            {[...points].reverse().map((p, i) => (
              <tr key={i}>
                <td>v{p.version}</td>
                <td className="when">{when(p.h.recorded_at)}</td>
                <td>{p.h.recorded_by}</td>
                <td>{p.h.source}</td>
                <td className="num">{fmt(p.h.metrics[name])}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

// left to right, as things flow: datasets → runs → models → versions → deployments → prompts
const COLUMNS = ["dataset", "training_run", "model", "version", "deployment", "prompt_version"];
const TYPES = {
  dataset: { name: "Datasets", color: "#0b5cad", shape: "barrel" },
  training_run: { name: "Training runs", color: "#8a5300", shape: "hexagon" },
  model: { name: "Models", color: "#102a43", shape: "round-rectangle" },
  version: { name: "Versions", color: "#1b6e3a", shape: "ellipse" },
  deployment: { name: "Deployments", color: "#6b3fa0", shape: "tag" },
  prompt_version: { name: "Prompt versions", color: "#0e7c86", shape: "rhomboid" },
};
const GRAPH_STYLE = [
  {
    selector: "node",
    style: {
      label: "data(label)",
      "background-color": "data(color)",
      shape: "data(shape)",
      width: 22,
      height: 22,
      "font-size": 11,
      color: "#1f2933",
      "text-valign": "bottom",
      "text-margin-y": 4,
      "text-wrap": "ellipsis",
      "text-max-width": 130,
    },
  },
  {
    selector: "edge",
    style: {
      width: 1.5,
      "line-color": "#9aa5b1",
      "curve-style": "bezier",
      // edges point from the newer thing to its origin: the arrow shows the flow back
      "source-arrow-shape": "triangle",
      "source-arrow-color": "#9aa5b1",
    },
  },
  { selector: "node.selected", style: { "border-width": 3, "border-color": "#f0b429" } },
];
const GRAPH_HEIGHT = 300;
const COLUMN_GAP = 150;
const ROW_GAP = 70;

/** The preset positions at a zoom that fits the tallest column, never above 1.2 (a small
 * graph is not blown up to the maximum zoom a plain `fit` would pick). */
function layoutFor(columns, rows) {
  const zoom = Math.min(1.2, (GRAPH_HEIGHT - 60) / Math.max(1, (rows - 1) * ROW_GAP), 760 / Math.max(1, columns * COLUMN_GAP));
  return { name: "preset", fit: false, zoom, pan: { x: 70 * zoom, y: GRAPH_HEIGHT / 2 } };
}

function Lineage({ lineage, past }) {
  const graph = lineage.data?.data;
  const [selected, setSelected] = useState(null);
  const { elements, layout } = useMemo(() => {
    if (!graph) return { elements: [], layout: null };
    const byColumn = new Map();
    graph.nodes.forEach((n) => {
      const col = COLUMNS.indexOf(n.type) >= 0 ? COLUMNS.indexOf(n.type) : COLUMNS.length;
      if (!byColumn.has(col)) byColumn.set(col, []);
      byColumn.get(col).push(n);
    });
    const used = [...byColumn.keys()].sort((a, b) => a - b);
    const rows = Math.max(...[...byColumn.values()].map((list) => list.length));
    const nodes = [];
    byColumn.forEach((list, col) =>
      list.forEach((n, i) => {
        const type = TYPES[n.type] || { color: "#52606d", shape: "ellipse" };
        nodes.push({
          data: { id: n.id, label: n.label, type: n.type, color: type.color, shape: type.shape },
          position: { x: used.indexOf(col) * COLUMN_GAP, y: (i - (list.length - 1) / 2) * ROW_GAP },
        });
      }),
    );
    const edges = graph.edges.map((e, i) => ({
      data: { id: `e${i}`, source: e.source, target: e.target, relation: e.relation },
    }));
    return { elements: [...nodes, ...edges], layout: layoutFor(used.length, rows) };
  }, [graph]);

  const groups = useMemo(() => {
    if (!graph) return [];
    const types = [...COLUMNS, ...new Set(graph.nodes.map((n) => n.type).filter((t) => !COLUMNS.includes(t)))];
    return types
      .map((type) => ({ type, nodes: graph.nodes.filter((n) => n.type === type) }))
      .filter((g) => g.nodes.length);
  }, [graph]);

  const node = graph?.nodes.find((n) => n.id === selected);
  const labelOf = (id) => graph?.nodes.find((n) => n.id === id)?.label || id;
  return (
    <section className="panel" aria-labelledby="lineage-title">
      <div className="section-head">
        <h3 id="lineage-title">Lineage</h3>
        <span className="legend">
          {COLUMNS.map((t) => (
            <span key={t}>
              <span className="legend-swatch" style={{ background: TYPES[t].color }} />
              {TYPES[t].name}
            </span>
          ))}
        </span>
      </div>
      {past && <p className="hint">The lineage is the present one (the API has no “as of” for it).</p>}
      <Problem error={lineage.error} onReload={lineage.reload} />
      {graph && (
        <div className="lineage">
          <div className="lineage-graph">
            <Graph
              label="Lineage graph"
              elements={elements}
              style={GRAPH_STYLE}
              layout={layout}
              onSelect={setSelected}
              selected={selected}
              height={GRAPH_HEIGHT}
              testId="lineage-graph"
            />
          </div>
          <nav className="lineage-list" aria-label="Lineage nodes" data-testid="lineage-nodes">
            {groups.map((g) => (
              <div key={g.type}>
                <h4>
                  {TYPES[g.type]?.name || g.type} <span className="hint">({g.nodes.length})</span>
                </h4>
                <ul>
                  {g.nodes.map((n) => (
                    <li key={n.id}>
                      <button
                        type="button"
                        className={`node-button${n.id === selected ? " on" : ""}`}
                        aria-pressed={n.id === selected}
                        onClick={() => setSelected(n.id === selected ? null : n.id)}
                      >
                        {n.label}
                      </button>
                    </li>
                  ))}
                </ul>
              </div>
            ))}
          </nav>
        </div>
      )}
      {node && (
        <div className="node-detail" data-testid="lineage-detail" aria-live="polite">
          <h4>
            {TYPES[node.type]?.name.replace(/s$/, "") || node.type}: {node.label}
          </h4>
          <dl className="facts">
            {Object.entries(node.attributes || {}).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{Array.isArray(v) ? v.join(", ") || "—" : String(v)}</dd>
              </div>
            ))}
          </dl>
          <ul className="edges">
            {graph.edges
              .filter((e) => e.source === node.id || e.target === node.id)
              .map((e, i) => (
                <li key={i}>
                  {labelOf(e.source)} <em>{e.relation}</em> {labelOf(e.target)}
                </li>
              ))}
          </ul>
        </div>
      )}
    </section>
  );
}
