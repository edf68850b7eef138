import { useEffect, useState } from "react";
import { get, put, all } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import Field from "./Field.jsx";
import { BASE, fieldErrors } from "./util.js";
import { when } from "../../format.js";

function formOf(role) {
  const s = role.settings;
  return {
    model: role.model,
    temperature: String(s.temperature),
    max_tokens: String(s.max_tokens),
    top_p: s.top_p === null ? "" : String(s.top_p),
    seed: s.seed === null ? "" : String(s.seed),
    stop: s.stop.join("\n"),
    require_suite_pass: !!role.require_suite_pass,
    reason: "",
  };
}

function number(text) {
  const t = text.trim();
  if (t === "") return null;
  const n = Number(t);
  return Number.isNaN(n) ? t : n; // a non-number goes as text: the API names the field
}

/** The change the form makes to the role, as `PUT …/config` takes it (only what changed). */
function changeOf(role, form) {
  const change = { role: role.role };
  const settings = {};
  const s = role.settings;
  if (form.model.trim() !== role.model) change.model = form.model.trim();
  if (number(form.temperature) !== s.temperature) settings.temperature = number(form.temperature);
  if (number(form.max_tokens) !== s.max_tokens) settings.max_tokens = number(form.max_tokens);
  if (number(form.top_p) !== s.top_p) settings.top_p = number(form.top_p);
  if (number(form.seed) !== s.seed) settings.seed = number(form.seed);
  const stop = form.stop.split("\n").filter((x) => x !== "");
  if (JSON.stringify(stop) !== JSON.stringify(s.stop)) settings.stop = stop;
  if (Object.keys(settings).length) change.settings = settings;
  if (form.require_suite_pass !== !!role.require_suite_pass) change.require_suite_pass = form.require_suite_pass;
  return change;
}

function show(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** One role's model and settings (GET …/roles/{role}, PUT …/config with If-Match) and its history. */
export default function BehaviorSettings({ role: key, onSaved }) {
  const role = useResource((signal) => get(`${BASE}/roles/${key}`, undefined, { signal }), [key]);
  const history = useResource((signal) => all(`${BASE}/roles/${key}/history`, {}, { signal }), [key]);
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(null);
  const data = role.data?.data;
  const etag = role.data?.etag;

  useEffect(() => {
    if (data) setForm(formOf(data));
  }, [data]);

  if (!data || !form) return <Problem error={role.error} onReload={role.reload} />;
  const change = changeOf(data, form);
  const dirty = Object.keys(change).length > 1;
  const errors = fieldErrors(error, "roles[0].");
  const top = fieldErrors(error);
  const set = (name) => (e) => setForm({ ...form, [name]: e.target.type === "checkbox" ? e.target.checked : e.target.value });

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const answer = await put(`${BASE}/config`, { roles: [change], reason: form.reason }, { ifMatch: etag });
      setSaved(`Saved: configuration version ${answer.data.version ?? answer.etag}`);
      role.reload();
      history.reload();
      onSaved?.();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  function reload() {
    setError(null);
    role.reload();
    history.reload();
    onSaved?.();
  }

  return (
    <div className="row">
      <section className="panel grow" aria-labelledby="settings-title">
        <h2 id="settings-title">
          Model and settings <span className="hint">(configuration version {data.config_version})</span>
        </h2>
        {data.warnings?.length > 0 && (
          <ul className="warnings" aria-label="Warnings">
            {data.warnings.map((w, i) => (
              <li key={i}>
                <span className="badge warn">warning</span> <code>{w.field}</code> {w.message}
              </li>
            ))}
          </ul>
        )}
        <Needs may="write" what="change a role's settings: that needs the operator or admin role">
          <form onSubmit={save} className="settings-form" aria-label={`Settings of ${data.name || data.role}`}>
            <div className="toolbar">
              <Field id="s-model" label="Model" error={errors.model} hint="embedded:NAME, openai:NAME, registry:MODEL@N or @production" wide>
                {(p) => <input {...p} value={form.model} onChange={set("model")} size={34} />}
              </Field>
            </div>
            <div className="toolbar">
              <Field id="s-temperature" label="Temperature" error={errors["settings.temperature"]} hint="0–2">
                {(p) => <input {...p} type="text" inputMode="decimal" value={form.temperature} onChange={set("temperature")} size={6} />}
              </Field>
              <Field id="s-max-tokens" label="Max tokens" error={errors["settings.max_tokens"]} hint="≤ context length">
                {(p) => <input {...p} type="text" inputMode="numeric" value={form.max_tokens} onChange={set("max_tokens")} size={7} />}
              </Field>
              <Field id="s-top-p" label="top_p" error={errors["settings.top_p"]} hint="(0, 1] or empty">
                {(p) => <input {...p} type="text" inputMode="decimal" value={form.top_p} onChange={set("top_p")} size={6} />}
              </Field>
              <Field id="s-seed" label="Seed" error={errors["settings.seed"]} hint="empty: none">
                {(p) => <input {...p} type="text" inputMode="numeric" value={form.seed} onChange={set("seed")} size={10} />}
              </Field>
              <Field id="s-stop" label="Stop sequences" error={errors["settings.stop"]} hint="one per line, up to 4">
                {(p) => <textarea {...p} rows={2} cols={18} value={form.stop} onChange={set("stop")} />}
              </Field>
            </div>
            <div className="toolbar">
              <div className={`field check${errors.require_suite_pass ? " invalid" : ""}`}>
                <span>
                  <input id="s-gate" type="checkbox" checked={form.require_suite_pass} onChange={set("require_suite_pass")} />
                  <label htmlFor="s-gate">Production needs a passing suite run</label>
                </span>
                {errors.require_suite_pass && <span className="field-error">{errors.require_suite_pass}</span>}
              </div>
            </div>
            <div className="toolbar">
              <Field id="s-reason" label="Reason for the change" error={top.reason} wide>
                {(p) => <input {...p} value={form.reason} onChange={set("reason")} size={48} placeholder="why (recorded in the history)" />}
              </Field>
              <div className="actions">
                <button type="submit" disabled={busy || !dirty}>
                  {busy ? "Saving…" : "Save settings"}
                </button>
                <button type="button" className="quiet" disabled={busy || !dirty} onClick={() => { setForm(formOf(data)); setError(null); }}>
                  Discard changes
                </button>
              </div>
            </div>
            {saved && <p role="status" className="saved">{saved}</p>}
            <Problem error={error} onReload={reload} onDismiss={() => setError(null)} />
          </form>
        </Needs>
      </section>

      <section className="panel grow" aria-labelledby="history-title">
        <h2 id="history-title">History</h2>
        <Problem error={history.error} onReload={history.reload} />
        <table className="dense" data-testid="role-history">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Change</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {(history.data || []).slice().reverse().map((h) => (
              <tr key={h.sequence}>
                <td className="hint nowrap">{when(h.at)}</td>
                <td>{h.by}</td>
                <td>
                  {h.action === "added" ? (
                    <>
                      <span className="badge">added</span>{" "}
                      <span className="hint">
                        {Object.entries(h.changes)
                          .filter(([, c]) => c.after !== null && !(Array.isArray(c.after) && !c.after.length))
                          .map(([name, c]) => `${name} ${show(c.after)}`)
                          .join(" · ")}
                      </span>
                    </>
                  ) : (
                    <ul className="changes">
                      {Object.entries(h.changes).map(([name, c]) => (
                        <li key={name}>
                          <code>{name}</code> {show(c.before)} → <strong>{show(c.after)}</strong>
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>{h.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}
