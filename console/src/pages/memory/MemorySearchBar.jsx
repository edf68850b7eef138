import { useEffect, useRef, useState } from "react";
import { get } from "../../api.js";
import Problem from "../../components/Problem.jsx";
import { KINDS, MEMORY, num, shortId, snippetParts } from "./memory.js";
import { when } from "../../format.js";
import { StrengthBar } from "./MemoryNode.jsx";

/** The API's escaped snippet, its <mark>s as highlights; never parsed as HTML. */
export function Snippet({ snippet }) {
  return (
    <span className="mem-snippet">
      {snippetParts(snippet).map((part, i) => (part.hit ? <mark key={i}>{part.text}</mark> : <span key={i}>{part.text}</span>))}
    </span>
  );
}

/**
 * Keyword search over every agent's memories (or one agent's), with the score's parts
 * and each hit's strength. `refresh` changing re-runs the last search (after a delete
 * or a restore elsewhere on the page); `onAgents` hears the agent ids seen in results
 * (the API has no list of agents).
 */
export default function MemorySearchBar({ agent, selected, refresh, onOpen, onAction, onAgents }) {
  const [q, setQ] = useState("");
  const [scope, setScope] = useState("all");
  const [kind, setKind] = useState("");
  const [invalidated, setInvalidated] = useState(false);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const last = useRef(null);
  const onAgentsRef = useRef(onAgents);
  onAgentsRef.current = onAgents;

  async function run(params, cursor) {
    setBusy(true);
    setError(null);
    try {
      const page = await get(`${MEMORY}/search`, { ...params, cursor, limit: 20 });
      last.current = params;
      setResult((previous) =>
        cursor && previous ? { ...page.data, items: [...previous.items, ...page.data.items] } : page.data,
      );
      onAgentsRef.current?.(page.data.items.map((hit) => hit.agent_id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  function submit(event) {
    event.preventDefault();
    run({
      q,
      agent_id: scope === "agent" && agent ? agent : undefined,
      kind: kind || undefined,
      include_invalidated: invalidated || undefined,
    });
  }

  useEffect(() => {
    if (refresh && last.current) run(last.current);
    // re-run only when something changed elsewhere
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [refresh]);

  const items = result?.items || [];
  return (
    <section className="panel" aria-labelledby="mem-search-title">
      <h2 id="mem-search-title">Search memories</h2>
      <form className="toolbar" role="search" aria-label="Memories" onSubmit={submit}>
        <div className="field mem-query">
          <label htmlFor="mem-q">Query</label>
          <input
            id="mem-q"
            type="search"
            value={q}
            onChange={(e) => setQ(e.target.value)}
            placeholder='words, "a phrase", OR, -exclude'
            aria-describedby="mem-q-hint"
          />
        </div>
        <div className="field">
          <label htmlFor="mem-scope">Agents</label>
          <select id="mem-scope" value={scope} onChange={(e) => setScope(e.target.value)}>
            <option value="all">All agents</option>
            <option value="agent" disabled={!agent}>
              {agent ? `Only ${agent}` : "Only the agent shown (none)"}
            </option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="mem-kind">Kind</label>
          <select id="mem-kind" value={kind} onChange={(e) => setKind(e.target.value)}>
            <option value="">Any kind</option>
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </div>
        <div className="field mem-check">
          <span>
            <input id="mem-inv" type="checkbox" checked={invalidated} onChange={(e) => setInvalidated(e.target.checked)} />
            <label htmlFor="mem-inv">Include invalidated</label>
          </span>
        </div>
        <div className="field">
          <button type="submit" disabled={busy}>
            Search
          </button>
        </div>
      </form>
      <p id="mem-q-hint" className="hint">
        Partial and misspelt words match similar ones. Score = relevance × (0.5 + 0.5 × strength), relevance =
        text rank + 0.5 × trigram similarity. A search from the console never reinforces what it finds.
      </p>
      <Problem error={error} onDismiss={() => setError(null)} />
      {result && (
        <>
          <p className="hint" role="status" data-testid="mem-search-count">
            {items.length === 0
              ? `No memory matches “${result.query}”.`
              : `${items.length}${result.next_cursor ? "+" : ""} ${items.length === 1 ? "memory matches" : "memories match"} “${result.query}”.`}
          </p>
          {items.length > 0 && (
            <div className="mem-scroll">
              <table className="mem-hits" data-testid="mem-hits">
                <caption className="visually-hidden">Search results, best first</caption>
                <thead>
                  <tr>
                    <th scope="col">Snippet</th>
                    <th scope="col">Agent</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Status</th>
                    <th scope="col" className="num">
                      Score
                    </th>
                    <th scope="col" className="num">
                      Relevance
                    </th>
                    <th scope="col" className="num">
                      Text rank
                    </th>
                    <th scope="col" className="num">
                      Trigram
                    </th>
                    <th scope="col">Strength</th>
                    <th scope="col">Occurred</th>
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((hit) => (
                    <tr key={hit.id} data-memory={hit.id} className={selected === hit.id ? "selected" : undefined}>
                      <td>
                        <Snippet snippet={hit.snippet} />
                      </td>
                      <td>
                        <code>{hit.agent_id}</code>
                      </td>
                      <td>
                        <span className={`badge mem-kind mem-kind-${hit.kind}`}>{hit.kind}</span>
                      </td>
                      <td>
                        <span className={`badge ${hit.status === "active" ? "ok" : "bad"}`}>{hit.status}</span>
                      </td>
                      <td className="num">
                        <strong>{num(hit.score.score)}</strong>
                      </td>
                      <td className="num">{num(hit.score.relevance)}</td>
                      <td className="num">{num(hit.score.text_rank)}</td>
                      <td className="num">{num(hit.score.trigram)}</td>
                      <td>
                        <StrengthBar strength={hit.strength} />
                      </td>
                      <td className="mem-nowrap" title={when(hit.occurred_at)}>
                        {when(hit.occurred_at).slice(0, 16)}
                      </td>
                      <td className="mem-nowrap">
                        <button
                          type="button"
                          className="quiet"
                          aria-label={`Open memory ${shortId(hit.id)}`}
                          onClick={() => onOpen(hit)}
                        >
                          Open
                        </button>{" "}
                        {hit.status === "active" ? (
                          <button
                            type="button"
                            className="danger"
                            aria-label={`Delete memory ${shortId(hit.id)}`}
                            onClick={() => onAction("invalidate", hit.id)}
                          >
                            Delete
                          </button>
                        ) : hit.status === "invalidated" ? (
                          <button
                            type="button"
                            aria-label={`Restore memory ${shortId(hit.id)}`}
                            onClick={() => onAction("restore", hit.id)}
                          >
                            Restore
                          </button>
                        ) : null}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {result.next_cursor && (
            <button type="button" className="quiet" disabled={busy} onClick={() => run(last.current, result.next_cursor)}>
              More results
            </button>
          )}
        </>
      )}
    </section>
  );
}
