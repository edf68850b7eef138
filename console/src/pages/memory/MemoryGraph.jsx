import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { all, del, get, post } from "../../api.js";
import Confirm from "../../components/Confirm.jsx";
import Graph from "../../components/Graph.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import MemoryNode, { StrengthBar } from "./MemoryNode.jsx";
import MemorySearchBar from "./MemorySearchBar.jsx";
import { ENTITY_COLOUR, KIND_COLOURS, MEMORY, agentPath, day, memoryOf, num, shortId } from "./memory.js";
import { when } from "../../format.js";
import "./memory.css";

const STYLE = [
  {
    selector: "node",
    style: {
      label: "data(short)",
      width: "data(size)",
      height: "data(size)",
      "background-color": "data(colour)",
      "font-size": 9,
      color: "#1f2933",
      "text-valign": "bottom",
      "text-margin-y": 3,
      "text-wrap": "ellipsis",
      "text-max-width": "120px",
      "border-width": 1,
      "border-color": "#ffffff",
    },
  },
  { selector: 'node[type = "entity"]', style: { shape: "round-rectangle" } },
  { selector: "node.invalidated", style: { "border-style": "dashed", "border-width": 2, "border-color": "#b3261e", opacity: 0.6 } },
  { selector: "node.selected", style: { "border-width": 4, "border-color": "#f0b429", "border-style": "solid", opacity: 1 } },
  {
    selector: "edge",
    style: {
      width: 1,
      "line-color": "#bcccdc",
      "curve-style": "bezier",
      "target-arrow-shape": "triangle",
      "target-arrow-color": "#bcccdc",
      "arrow-scale": 0.7,
    },
  },
  {
    selector: 'edge[type = "relation"]',
    style: {
      width: 1.5,
      "line-color": "#486581",
      "target-arrow-color": "#486581",
      label: "data(relation)",
      "font-size": 8,
      color: "#334e68",
      "text-rotation": "autorotate",
      "text-background-color": "#fbfcfd",
      "text-background-opacity": 1,
    },
  },
  { selector: 'edge[type = "supersedes"]', style: { "line-style": "dashed", "line-color": "#b3261e", "target-arrow-color": "#b3261e" } },
];
const GRAPH_LIMIT = 500;
const LAYOUT = { name: "cose", animate: false, padding: 24, nodeRepulsion: () => 9000, idealEdgeLength: () => 70 };

function elementsOf(graph) {
  if (!graph) return [];
  const nodes = graph.nodes.map((n) => {
    const memory = n.type === "memory";
    const label = memory ? n.label || "(erased)" : n.label;
    return {
      data: {
        ...n,
        short: label.length > 28 ? `${label.slice(0, 27)}…` : label,
        size: memory ? 16 + 44 * Math.max(0, Math.min(1, n.strength)) : 12 + 4 * Math.min(n.mentions, 8),
        colour: memory ? KIND_COLOURS[n.kind] || ENTITY_COLOUR : ENTITY_COLOUR,
      },
      classes: memory && n.status !== "active" ? n.status : undefined,
    };
  });
  const edges = graph.edges.map((e) => ({ data: { id: e.id, source: e.source, target: e.target, type: e.type, relation: e.relation } }));
  return [...nodes, ...edges];
}

function Legend() {
  return (
    <ul className="mem-legend" aria-label="Legend">
      {Object.entries(KIND_COLOURS).map(([kind, colour]) => (
        <li key={kind}>
          <span className="legend-swatch round" style={{ background: colour }} aria-hidden="true" />
          {kind}
        </li>
      ))}
      <li>
        <span className="legend-swatch" style={{ background: ENTITY_COLOUR }} aria-hidden="true" />
        entity
      </li>
      <li>size: strength (memories), mentions (entities)</li>
      <li>
        <span className="mem-legend-line relation" aria-hidden="true" /> relation
      </li>
      <li>
        <span className="mem-legend-line" aria-hidden="true" /> mentions
      </li>
      <li>
        <span className="mem-legend-line supersedes" aria-hidden="true" /> supersedes
      </li>
    </ul>
  );
}

/** The graph's nodes as buttons: what the canvas shows, reachable by keyboard. */
function NodeList({ graph, selected, onSelect }) {
  const memories = graph.nodes.filter((n) => n.type === "memory");
  const entities = graph.nodes.filter((n) => n.type === "entity");
  const button = (n, text, extra) => (
    <li key={n.id}>
      <button
        type="button"
        className={`quiet mem-node-button${selected === n.id ? " selected" : ""}`}
        aria-pressed={selected === n.id}
        data-node={n.id}
        onClick={() => onSelect(n.id)}
      >
        <span
          className={`legend-swatch${n.type === "memory" ? " round" : ""}`}
          style={{ background: n.type === "memory" ? KIND_COLOURS[n.kind] : ENTITY_COLOUR }}
          aria-hidden="true"
        />
        <span className="mem-node-text">{text}</span>
        <span className="hint mem-node-extra">{extra}</span>
      </button>
    </li>
  );
  return (
    <div className="mem-nodes">
      <div>
        <h3 id="mem-list-memories">Memories ({memories.length})</h3>
        <ul aria-labelledby="mem-list-memories" className="mem-node-list">
          {[...memories]
            .sort((a, b) => b.strength - a.strength)
            .map((n) => button(n, n.label || `(erased) ${shortId(memoryOf(n.id))}`, `${n.kind} · ${num(n.strength, 2)}`))}
        </ul>
      </div>
      <div>
        <h3 id="mem-list-entities">Entities ({entities.length})</h3>
        <ul aria-labelledby="mem-list-entities" className="mem-node-list">
          {[...entities]
            .sort((a, b) => b.mentions - a.mentions || a.label.localeCompare(b.label))
            .map((n) => button(n, n.label, `${n.entity_type} · ${n.mentions}×`))}
        </ul>
      </div>
    </div>
  );
}

function Timeline({ agent, refresh, selected, onSelect }) {
  const [bucket, setBucket] = useState("day");
  const timeline = useResource(
    (signal) => get(`${agentPath(agent)}/timeline`, { bucket, limit: 200 }, { signal }).then((r) => r.data),
    [agent, bucket, refresh],
  );
  const t = timeline.data;
  return (
    <section className="panel" aria-labelledby="mem-timeline-title">
      <div className="mem-head">
        <h2 id="mem-timeline-title">Timeline of {agent}</h2>
        <div className="field mem-inline">
          <label htmlFor="mem-bucket">Counts per</label>
          <select id="mem-bucket" value={bucket} onChange={(e) => setBucket(e.target.value)}>
            <option value="day">day</option>
            <option value="week">week</option>
          </select>
        </div>
      </div>
      <Problem error={timeline.error} onReload={timeline.reload} />
      {t && (
        <div className="row">
          <div className="grow mem-scroll">
            <table className="mem-timeline" data-testid="mem-timeline">
              <caption className="visually-hidden">Memories by the time they occurred, oldest first</caption>
              <thead>
                <tr>
                  <th scope="col">Occurred</th>
                  <th scope="col">Memory</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Status</th>
                  <th scope="col">Strength</th>
                  <th scope="col">Lifecycle</th>
                </tr>
              </thead>
              <tbody>
                {t.items.length === 0 && (
                  <tr>
                    <td colSpan={6} className="hint">
                      No memories recorded for this agent.
                    </td>
                  </tr>
                )}
                {t.items.map((item) => (
                  <tr key={item.id} data-memory={item.id} className={selected === `memory:${item.id}` ? "selected" : undefined}>
                    <td className="mem-nowrap">{when(item.occurred_at)}</td>
                    <td>
                      <button type="button" className="quiet mem-link" onClick={() => onSelect(`memory:${item.id}`)}>
                        {item.label ?? `(erased) ${shortId(item.id)}`}
                      </button>
                    </td>
                    <td>{item.kind}</td>
                    <td>
                      <span className={`badge ${item.status === "active" ? "ok" : item.status === "invalidated" ? "warn" : "bad"}`}>
                        {item.status}
                      </span>
                    </td>
                    <td>
                      <StrengthBar strength={item.strength} />
                    </td>
                    <td className="mem-marks">
                      {item.marks.map((m, i) => (
                        <span key={i} className="badge" title={when(m.at)}>
                          {m.mark} {when(m.at).slice(5, 16)}
                        </span>
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {t.next_cursor && <p className="hint">The first {t.items.length} memories are shown.</p>}
          </div>
          <div className="mem-counts">
            <table>
              <caption>Lifecycle marks per {t.bucket} (UTC)</caption>
              <thead>
                <tr>
                  <th scope="col">{t.bucket === "day" ? "Day" : "Week of"}</th>
                  <th scope="col" className="num">
                    Created
                  </th>
                  <th scope="col" className="num">
                    Reinf.
                  </th>
                  <th scope="col" className="num">
                    Inval.
                  </th>
                  <th scope="col" className="num">
                    Restored
                  </th>
                  <th scope="col" className="num">
                    Erased
                  </th>
                </tr>
              </thead>
              <tbody>
                {t.counts.map((c) => (
                  <tr key={c.bucket}>
                    <td>{day(c.bucket)}</td>
                    <td className="num">{c.created}</td>
                    <td className="num">{c.reinforced}</td>
                    <td className="num">{c.invalidated}</td>
                    <td className="num">{c.restored}</td>
                    <td className="num">{c.erased}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </section>
  );
}

const ACTIONS = {
  invalidate: {
    title: "Delete (invalidate) this memory?",
    confirm: "Invalidate memory",
    effect: "It leaves search and the graph and shows as invalidated in the timeline. It can be restored.",
    reason: "invalidated from the console",
  },
  restore: {
    title: "Restore this memory?",
    confirm: "Restore memory",
    effect: "It returns to search, the graph and the timeline as active.",
    reason: "restored from the console",
  },
  erase: {
    title: "Erase this memory for good?",
    confirm: "Erase memory",
    effect:
      "Its key is destroyed: the text, entities and relations can never be read again, by anyone. The log keeps who erased it, when and why. This cannot be undone.",
    reason: "erased from the console",
  },
};

/** The delete / restore / erase confirmation, naming the memory; a refusal stays in it. */
function ActionDialog({ action, onChange, onDone, onCancel }) {
  const spec = action ? ACTIONS[action.kind] : null;
  const m = action?.memory;

  async function reload() {
    try {
      const fresh = await get(`${MEMORY}/${m.id}`);
      onChange({ ...action, memory: fresh.data, etag: fresh.etag, error: null });
    } catch (err) {
      onChange({ ...action, error: err });
    }
  }

  async function confirm() {
    if (!action || action.busy) return;
    onChange({ ...action, busy: true, error: null });
    try {
      const path = `${MEMORY}/${m.id}`;
      if (action.kind === "restore") await post(`${path}/restore`, { reason: action.reason }, { ifMatch: action.etag });
      else
        await del(path, {
          params: { reason: action.reason, erase: action.kind === "erase" ? "true" : undefined },
          ifMatch: action.etag,
        });
      onDone(action);
    } catch (err) {
      onChange({ ...action, busy: false, error: err });
    }
  }

  return (
    <Confirm
      open={Boolean(action)}
      title={spec?.title || ""}
      confirmLabel={spec?.confirm}
      danger={action?.kind !== "restore"}
      onConfirm={confirm}
      onCancel={onCancel}
    >
      {m && (
        <div className="mem-confirm" data-testid="mem-confirm">
          <p>
            {m.kind} memory <code>{m.id}</code> of agent <code>{m.agent_id}</code> (version {m.version}, {m.status}):
          </p>
          {m.content !== null && (
            <blockquote className="mem-content">
              {m.content.length > 240 ? `${m.content.slice(0, 240)}…` : m.content}
            </blockquote>
          )}
          <p>{spec.effect}</p>
          <div className="field mem-wide">
            <label htmlFor="mem-reason">Reason (kept in the log)</label>
            <input id="mem-reason" value={action.reason} onChange={(e) => onChange({ ...action, reason: e.target.value })} />
          </div>
          <Problem error={action.error} onReload={reload} />
        </div>
      )}
    </Confirm>
  );
}

export default function MemoryGraph() {
  const [params, setParams] = useSearchParams();
  const agent = params.get("agent") || "";
  const selected = params.get("node") || "";
  const [draft, setDraft] = useState(agent);
  const [seen, setSeen] = useState([]);
  const [filters, setFilters] = useState({ invalidated: false, minStrength: "", asOf: "" });
  const [filterDraft, setFilterDraft] = useState(filters);
  const [refresh, setRefresh] = useState(0);
  const [action, setAction] = useState(null);
  const [opening, setOpening] = useState(null);
  const [notice, setNotice] = useState("");
  const lastAgent = useRef(agent);

  useEffect(() => {
    if (agent !== lastAgent.current) {
      lastAgent.current = agent;
      setDraft(agent);
    }
  }, [agent]);

  const go = useCallback(
    (next) => {
      setParams(
        (current) => {
          const p = new URLSearchParams(current);
          for (const [k, v] of Object.entries(next)) {
            if (v) p.set(k, v);
            else p.delete(k);
          }
          return p;
        },
        { replace: false },
      );
    },
    [setParams],
  );

  const graph = useResource(
    (signal) =>
      agent
        ? get(
            agentPath(agent),
            {
              include_invalidated: filters.invalidated || undefined,
              min_strength: filters.minStrength,
              as_of: filters.asOf ? new Date(filters.asOf).toISOString() : undefined,
              limit: GRAPH_LIMIT,
            },
            { signal },
          ).then((r) => r.data)
        : Promise.resolve(null),
    [agent, filters, refresh],
  );
  const elements = useMemo(() => elementsOf(graph.data), [graph.data]);
  // every agent with memories (an agent's own key lists its agent alone)
  const agentList = useResource((signal) => all(`${MEMORY}/agents`, {}, { signal }), [refresh]);
  const agents = useMemo(
    () => [...new Set([...(agentList.data || []).map((a) => a.agent_id), ...seen, agent].filter(Boolean))].sort(),
    [agentList.data, seen, agent],
  );

  const addSeen = useCallback((ids) => setSeen((s) => [...new Set([...s, ...ids])]), []);
  const select = useCallback((nodeId) => go({ node: nodeId }), [go]);

  async function startAction(kind, id) {
    setOpening({ kind, id, error: null });
    try {
      const found = await get(`${MEMORY}/${id}`);
      setOpening(null);
      setAction({ kind, memory: found.data, etag: found.etag, reason: ACTIONS[kind].reason, error: null, busy: false });
    } catch (err) {
      setOpening({ kind, id, error: err });
    }
  }

  function done(finished) {
    const verb = { invalidate: "invalidated", restore: "restored", erase: "erased" }[finished.kind];
    setNotice(`Memory ${shortId(finished.memory.id)} ${verb}.`);
    setAction(null);
    setRefresh((r) => r + 1);
  }

  function showAgent(event) {
    event.preventDefault();
    const next = draft.trim();
    go({ agent: next, node: next === agent ? selected : "" });
  }

  return (
    <div className="mem-page">
      <div className="mem-head">
        <h1>Memory graph</h1>
        <form className="toolbar mem-agent" onSubmit={showAgent} aria-label="Agent">
          <div className="field">
            <label htmlFor="mem-agent">Agent id</label>
            <input
              id="mem-agent"
              list="mem-agents"
              value={draft}
              onChange={(e) => setDraft(e.target.value)}
              placeholder="e.g. trader-1"
              aria-describedby="mem-agent-hint"
              autoComplete="off"
            />
            <datalist id="mem-agents">
              {agents.map((a) => (
                <option key={a} value={a} />
              ))}
            </datalist>
          </div>
          <div className="field">
            <button type="submit">Show agent</button>
          </div>
          <p id="mem-agent-hint" className="hint mem-agent-hint">
            {agentList.data
              ? `${agentList.data.length.toLocaleString("en-US")} agents have memories: type an id or pick one.`
              : "Type an agent id."}
          </p>
        </form>
      </div>
      <p role="status" className="mem-notice">
        {notice}
      </p>
      {opening?.error && (
        <Problem error={opening.error} onDismiss={() => setOpening(null)} onReload={() => startAction(opening.kind, opening.id)} />
      )}

      <MemorySearchBar
        agent={agent}
        selected={memoryOf(selected)}
        refresh={refresh}
        onAgents={addSeen}
        onOpen={(hit) => go({ agent: hit.agent_id, node: `memory:${hit.id}` })}
        onAction={startAction}
      />

      {agent ? (
        <div className="row mem-main">
          <section className="panel grow" aria-labelledby="mem-graph-title">
            <div className="mem-head">
              <h2 id="mem-graph-title">Knowledge graph of {agent}</h2>
              <form
                className="toolbar mem-filters"
                aria-label="Graph filters"
                onSubmit={(e) => {
                  e.preventDefault();
                  setFilters(filterDraft);
                }}
              >
                <div className="field">
                  <label htmlFor="mem-min">Min strength</label>
                  <input
                    id="mem-min"
                    type="number"
                    step="0.05"
                    value={filterDraft.minStrength}
                    onChange={(e) => setFilterDraft({ ...filterDraft, minStrength: e.target.value })}
                    placeholder="0–1"
                  />
                </div>
                <div className="field">
                  <label htmlFor="mem-asof">As of (local time)</label>
                  <input
                    id="mem-asof"
                    type="datetime-local"
                    value={filterDraft.asOf}
                    onChange={(e) => setFilterDraft({ ...filterDraft, asOf: e.target.value })}
                  />
                </div>
                <div className="field mem-check">
                  <span>
                    <input
                      id="mem-graph-inv"
                      type="checkbox"
                      checked={filterDraft.invalidated}
                      onChange={(e) => setFilterDraft({ ...filterDraft, invalidated: e.target.checked })}
                    />
                    <label htmlFor="mem-graph-inv">Show invalidated</label>
                  </span>
                </div>
                <div className="field">
                  <button type="submit" className="quiet">
                    Apply
                  </button>
                </div>
              </form>
            </div>
            {graph.data?.as_of && <p className="hint">As it was at {when(graph.data.as_of)}, rebuilt from the events.</p>}
            {graph.data && graph.data.nodes.filter((n) => n.type === "memory").length >= GRAPH_LIMIT && (
              <p className="hint">Only the {GRAPH_LIMIT} strongest memories are drawn.</p>
            )}
            <Problem error={graph.error} onReload={graph.reload} />
            {graph.data && (
              <>
                <Graph
                  label={`Knowledge graph of agent ${agent}`}
                  elements={elements}
                  style={STYLE}
                  layout={LAYOUT}
                  selected={selected}
                  onSelect={select}
                  height={480}
                  testId="memory-graph"
                />
                <Legend />
                {graph.data.nodes.length === 0 ? (
                  <p className="hint">No active memories for agent {agent}.</p>
                ) : (
                  <NodeList graph={graph.data} selected={selected} onSelect={select} />
                )}
              </>
            )}
          </section>
          <MemoryNode nodeId={selected} graph={graph.data} refresh={refresh} onAction={startAction} onSelect={select} />
        </div>
      ) : (
        <div className="row mem-main">
          <AgentTable agents={agentList} onOpen={(id) => go({ agent: id, node: "" })} />
          {selected && <MemoryNode nodeId={selected} graph={null} refresh={refresh} onAction={startAction} onSelect={select} />}
        </div>
      )}

      {agent && <Timeline agent={agent} refresh={refresh} selected={selected} onSelect={select} />}

      <ActionDialog action={action} onChange={setAction} onDone={done} onCancel={() => setAction(null)} />
    </div>
  );
}


/** The agents with memories: open one to draw its graph and timeline. */
function AgentTable({ agents, onOpen }) {
  return (
    <section className="panel grow" aria-labelledby="mem-agents-title">
      <h2 id="mem-agents-title">Agents</h2>
      <Problem error={agents.error} onReload={agents.reload} />
      {agents.data && agents.data.length === 0 && <p className="hint">No agent has memories yet.</p>}
      {agents.data && agents.data.length > 0 && (
        <table data-testid="agent-table">
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col" className="num">Memories</th>
              <th scope="col" className="num">Active</th>
              <th scope="col" className="num">Invalidated</th>
              <th scope="col" className="num">Erased</th>
              <th scope="col">Last recorded</th>
            </tr>
          </thead>
          <tbody>
            {agents.data.map((a) => (
              <tr key={a.agent_id}>
                <th scope="row">
                  <button type="button" className="quiet" onClick={() => onOpen(a.agent_id)}>
                    {a.agent_id}
                  </button>
                </th>
                <td className="num">{a.memories}</td>
                <td className="num">{a.active}</td>
                <td className="num">{a.invalidated}</td>
                <td className="num">{a.erased}</td>
                <td>{when(a.last_recorded_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
