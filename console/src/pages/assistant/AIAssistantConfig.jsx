import { useSearchParams } from "react-router-dom";
import { get } from "../../api.js";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import BehaviorSettings from "./BehaviorSettings.jsx";
import PromptEditor from "./PromptEditor.jsx";
import Experiments from "./Experiments.jsx";
import { BASE, fmt } from "./util.js";
import { when } from "../../format.js";
import "./assistant.css";

const VIEWS = [
  { id: "settings", label: "Settings & history" },
  { id: "prompts", label: "Prompts" },
  { id: "experiments", label: "Experiments" },
];

/**
 * The assistant's configuration: every role with its model and settings (one document,
 * one ETag), and for the selected role its settings form and history, its prompts
 * (editor, versions, diff, labels, tests, suite) and its A/B experiments. What is
 * selected lives in the URL (#/assistant?role=…&view=…&prompt=…&experiment=…).
 */
export default function AIAssistantConfig() {
  const [params, setParams] = useSearchParams();
  const config = useResource((signal) => get(`${BASE}/config`, undefined, { signal }), []);
  const roles = config.data?.data.roles || [];
  const role = params.get("role") || roles[0]?.role || null;
  const view = VIEWS.some((v) => v.id === params.get("view")) ? params.get("view") : "settings";
  const current = roles.find((r) => r.role === role) || null;

  function select(changes) {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === undefined || v === "") next.delete(k);
      else next.set(k, String(v));
    }
    setParams(next);
  }

  return (
    <div className="assistant">
      <div className="page-head">
        <h1>Assistant</h1>
        <span className="hint">
          {config.data
            ? `Configuration version ${config.data.data.version} · ${roles.length} roles`
            : config.loading
              ? "Loading the configuration…"
              : ""}
        </span>
      </div>
      <Problem error={config.error} onReload={config.reload} />

      <section className="panel" aria-labelledby="roles-title">
        <h2 id="roles-title">Roles</h2>
        <table className="dense" data-testid="roles">
          <caption className="visually-hidden">Roles with their model and settings; choose one to work on it</caption>
          <thead>
            <tr>
              <th scope="col">Role</th>
              <th scope="col">Model</th>
              <th scope="col" className="num">Temperature</th>
              <th scope="col" className="num">Max tokens</th>
              <th scope="col" className="num">top_p</th>
              <th scope="col" className="num">Seed</th>
              <th scope="col">Stop</th>
              <th scope="col">Runs prompt</th>
              <th scope="col">Suite gate</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {roles.map((r) => (
              <tr key={r.role} className={r.role === role ? "selected" : undefined} data-role={r.role}>
                <td className="nowrap">
                  <button
                    type="button"
                    className="linkish"
                    aria-pressed={r.role === role}
                    onClick={() => select({ role: r.role, prompt: null, experiment: null })}
                  >
                    {r.name || r.role}
                  </button>
                  <div className="hint mono">{r.role}</div>
                </td>
                <td className="mono nowrap">
                  {r.model}
                  {r.warnings?.length > 0 && (
                    <span className="badge warn" title={r.warnings.map((w) => w.message).join("; ")}>
                      {r.warnings.length} warning{r.warnings.length > 1 ? "s" : ""}
                    </span>
                  )}
                </td>
                <td className="num">{fmt(r.settings.temperature, 2)}</td>
                <td className="num">{r.settings.max_tokens}</td>
                <td className="num">{fmt(r.settings.top_p, 2)}</td>
                <td className="num">{fmt(r.settings.seed)}</td>
                <td className="mono">{r.settings.stop.length ? r.settings.stop.map((s) => JSON.stringify(s)).join(" ") : "—"}</td>
                <td>
                  {r.prompt ? (
                    <>
                      {r.prompt.name}{" "}
                      {r.prompt.version ? (
                        <span className="badge ok">
                          {r.prompt.label} v{r.prompt.version}
                        </span>
                      ) : (
                        <span className="badge warn">no production version</span>
                      )}
                    </>
                  ) : (
                    <span className="hint">none</span>
                  )}
                </td>
                <td>{r.require_suite_pass ? <span className="badge warn">required</span> : <span className="hint">off</span>}</td>
                <td className="hint">
                  {when(r.updated_at)}
                  <div>{r.updated_by}</div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      {current && (
        <>
          <nav className="subnav" aria-label={`Work on ${current.name || current.role}`}>
            <span className="subnav-role">{current.name || current.role}</span>
            {VIEWS.map((v) => (
              <button
                key={v.id}
                type="button"
                className={v.id === view ? "tab current" : "tab"}
                aria-pressed={v.id === view}
                onClick={() => select({ view: v.id })}
              >
                {v.label}
              </button>
            ))}
          </nav>
          {view === "settings" && (
            <BehaviorSettings key={current.role} role={current.role} onSaved={config.reload} />
          )}
          {view === "prompts" && (
            <PromptEditor
              key={current.role}
              role={current}
              promptId={params.get("prompt")}
              onSelectPrompt={(id) => select({ prompt: id })}
              onChanged={config.reload}
            />
          )}
          {view === "experiments" && (
            <Experiments
              key={current.role}
              role={current}
              experimentId={params.get("experiment")}
              onSelect={(id) => select({ experiment: id })}
              onChanged={config.reload}
            />
          )}
        </>
      )}
    </div>
  );
}
