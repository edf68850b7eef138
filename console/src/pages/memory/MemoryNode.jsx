import { get } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import { ENTITY_COLOUR, KIND_COLOURS, MEMORY, memoryOf, num, shortId } from "./memory.js";
import { when } from "../../format.js";

/** A strength in [0, 1] as a bar and its number; the title lists the components. */
export function StrengthBar({ strength, value }) {
  const s = value ?? strength?.strength ?? 0;
  const level = s >= 0.5 ? "high" : s >= 0.2 ? "mid" : "low";
  const title = strength
    ? `retention ${num(strength.retention)}, importance ${num(strength.importance, 2)}, ` +
      `stability ${num(strength.stability_days, 1)} d, accesses ${strength.accesses}, feedback ${strength.feedback}`
    : undefined;
  return (
    <span className="mem-strength" title={title}>
      <span className="mem-strength-track" aria-hidden="true">
        <span className={`mem-strength-fill ${level}`} style={{ width: `${Math.round(Math.max(0, Math.min(1, s)) * 100)}%` }} />
      </span>
      <span className="num">{num(s)}</span>
    </span>
  );
}

/** Strength = retention × (0.5 + 0.5 × importance), and what the retention comes from. */
export function StrengthComponents({ strength }) {
  if (!strength) return null;
  const rows = [
    ["Strength", num(strength.strength), "retention × (0.5 + 0.5 × importance)"],
    ["Retention", num(strength.retention), "exp(−days since reinforced ÷ stability)"],
    ["Importance", num(strength.importance, 2), "given when recorded"],
    ["Stability", `${num(strength.stability_days, 2)} d`, "1 + 29 × importance, ×1.5 per access, × feedback"],
    ["Age", `${num(strength.age_days, 2)} d`, "since recorded"],
    ["Since reinforced", `${num(strength.days_since_reinforced, 2)} d`, "since the last positive reinforcement"],
    ["Accesses", strength.accesses, "searches that retrieved it for use"],
    ["Feedback", strength.feedback, "explicit reinforcements"],
  ];
  return (
    <table className="mem-components">
      <caption>
        Strength components <span className="hint">as of {when(strength.as_of)}</span>
      </caption>
      <tbody>
        {rows.map(([name, value, how]) => (
          <tr key={name}>
            <th scope="row">{name}</th>
            <td className="num">{value}</td>
            <td className="hint">{how}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const EVENT_NAMES = {
  "Memory.Recorded": "recorded",
  "Memory.Reinforced": "reinforced",
  "Memory.Invalidated": "invalidated",
  "Memory.Restored": "restored",
  "Memory.Erased": "erased",
};

// what the panel shows already (agent, kind, importance, occurred) is not repeated
const SHOWN = new Set(["agent_id", "kind", "importance", "occurred_at"]);

function detailText(entry) {
  return Object.entries(entry.detail || {})
    .filter(([k, v]) => v !== null && v !== undefined && v !== "" && !SHOWN.has(k))
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

function statusBadge(status) {
  const tone = status === "active" ? "ok" : status === "invalidated" ? "warn" : "bad";
  return <span className={`badge ${tone}`}>{status}</span>;
}

function MemoryDetail({ id, refresh, onAction, onSelect }) {
  const detail = useResource((signal) => get(`${MEMORY}/${id}`, undefined, { signal }), [id, refresh]);
  const m = detail.data?.data;
  if (detail.error) return <Problem error={detail.error} onReload={detail.reload} />;
  if (!m) return <p role="status">Loading memory…</p>;
  return (
    <div data-testid="mem-node" data-memory={m.id} data-status={m.status}>
      <h3 className="mem-node-title">
        <span className="legend-swatch" style={{ background: KIND_COLOURS[m.kind] }} aria-hidden="true" />
        {m.kind} memory <code>{shortId(m.id)}</code> {statusBadge(m.status)}
      </h3>
      <dl className="mem-facts">
        <dt>Agent</dt>
        <dd>
          <code>{m.agent_id}</code>
        </dd>
        <dt>Occurred</dt>
        <dd>{when(m.occurred_at)}</dd>
        <dt>Recorded</dt>
        <dd>{when(m.created_at)}</dd>
        <dt>Version</dt>
        <dd className="num">{m.version}</dd>
        {m.source ? (
          <>
            <dt>Source</dt>
            <dd>{m.source}</dd>
          </>
        ) : null}
        {m.tags.length > 0 && (
          <>
            <dt>Tags</dt>
            <dd>
              {m.tags.map((t) => (
                <span key={t} className="badge">
                  {t}
                </span>
              ))}
            </dd>
          </>
        )}
      </dl>
      {m.content === null ? (
        <p className="hint">The text was erased: its key is destroyed; the history below remains.</p>
      ) : (
        <blockquote className="mem-content">{m.content}</blockquote>
      )}
      {m.invalidation && (
        <p className="hint">
          Invalidated: {m.invalidation.reason || "no reason given"}
          {m.invalidation.superseded_by && (
            <>
              {" "}
              (superseded by{" "}
              <button type="button" className="quiet mem-link" onClick={() => onSelect(`memory:${m.invalidation.superseded_by}`)}>
                {shortId(m.invalidation.superseded_by)}
              </button>
              )
            </>
          )}
        </p>
      )}
      <Needs may="write" what="delete, restore or erase memories: that needs the operator or admin role">
        <div className="actions">
          {m.status === "active" && (
            <button type="button" className="danger" onClick={() => onAction("invalidate", m.id)}>
              Delete (invalidate)
            </button>
          )}
          {m.status === "invalidated" && (
            <button type="button" onClick={() => onAction("restore", m.id)}>
              Restore
            </button>
          )}
          {m.status !== "erased" && (
            <button type="button" className="danger" onClick={() => onAction("erase", m.id)}>
              Erase for good
            </button>
          )}
        </div>
      </Needs>
      <StrengthComponents strength={m.strength} />
      {(m.entities.length > 0 || m.relations.length > 0) && (
        <>
          <h4>Entities and relations</h4>
          {m.entities.length > 0 && (
            <ul className="mem-chips" aria-label="Entities">
              {m.entities.map((e) => (
                <li key={`${e.type}:${e.name}`}>
                  <button
                    type="button"
                    className="quiet mem-chip"
                    onClick={() => onSelect(`entity:${e.type.toLowerCase()}:${e.name.toLowerCase()}`)}
                  >
                    {e.name} <span className="hint">{e.type}</span>
                  </button>
                </li>
              ))}
            </ul>
          )}
          {m.relations.length > 0 && (
            <ul className="mem-relations" aria-label="Relations">
              {m.relations.map((r, i) => (
                <li key={i}>
                  {r.subject} <em>{r.predicate}</em> {r.object}
                </li>
              ))}
            </ul>
          )}
        </>
      )}
      <table className="mem-history">
        <caption>History ({m.history.length} events)</caption>
        <thead>
          <tr>
            <th scope="col" className="num">
              v
            </th>
            <th scope="col">Event, by</th>
            <th scope="col">When</th>
            <th scope="col">Detail</th>
          </tr>
        </thead>
        <tbody>
          {m.history.map((h) => (
            <tr key={h.version}>
              <td className="num">{h.version}</td>
              <td>
                {EVENT_NAMES[h.type] || h.type}
                <br />
                <span className="hint">{h.principal}</span>
              </td>
              <td className="mem-nowrap">{when(h.at)}</td>
              <td className="hint">{detailText(h)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function EntityDetail({ nodeId, graph, onSelect }) {
  const node = graph?.nodes.find((n) => n.id === nodeId);
  if (!node) return <p className="hint">This entity is not in the graph shown (another agent, or no longer mentioned).</p>;
  const byId = Object.fromEntries(graph.nodes.map((n) => [n.id, n]));
  const mentions = graph.edges.filter((e) => e.type === "mentions" && e.target === nodeId);
  const relations = graph.edges.filter((e) => e.type === "relation" && (e.source === nodeId || e.target === nodeId));
  return (
    <div data-testid="mem-node" data-entity={nodeId}>
      <h3 className="mem-node-title">
        <span className="legend-swatch" style={{ background: ENTITY_COLOUR }} aria-hidden="true" />
        {node.label} <span className="badge">{node.entity_type}</span>
      </h3>
      <p className="hint">
        Mentioned by {node.mentions} {node.mentions === 1 ? "memory" : "memories"} of this agent.
      </p>
      {relations.length > 0 && (
        <>
          <h4>Relations</h4>
          <ul className="mem-relations">
            {relations.map((r) => (
              <li key={r.id}>
                {byId[r.source]?.label} <em>{r.relation}</em> {byId[r.target]?.label}{" "}
                <span className="hint">
                  ({r.count} {r.count === 1 ? "memory" : "memories"})
                </span>
              </li>
            ))}
          </ul>
        </>
      )}
      <h4>Memories</h4>
      <ul className="mem-list">
        {mentions.map((e) => {
          const m = byId[e.source];
          return (
            <li key={e.id}>
              <button type="button" className="quiet mem-link" onClick={() => onSelect(e.source)}>
                {m?.label || shortId(memoryOf(e.source))}
              </button>{" "}
              <span className="hint">
                {m?.kind}, strength {num(m?.strength)}
              </span>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

/**
 * The selected node: a memory (content, entities, strength with its components, history,
 * and the delete / restore / erase actions) or an entity (its relations and memories).
 */
export default function MemoryNode({ nodeId, graph, refresh, onAction, onSelect }) {
  const id = memoryOf(nodeId);
  return (
    <aside className="panel mem-side" aria-labelledby="mem-node-heading">
      <h2 id="mem-node-heading">Selected</h2>
      {!nodeId && <p className="hint">Select a node in the graph or the node list, or open a search result.</p>}
      {id && <MemoryDetail id={id} refresh={refresh} onAction={onAction} onSelect={onSelect} />}
      {nodeId && !id && <EntityDetail nodeId={nodeId} graph={graph} onSelect={onSelect} />}
    </aside>
  );
}
