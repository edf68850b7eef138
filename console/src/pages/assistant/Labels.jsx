import { useState } from "react";
import { all, del, post, put } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Confirm from "../../components/Confirm.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import Field from "./Field.jsx";
import { BASE, fieldErrors } from "./util.js";
import { when } from "../../format.js";

/** A prompt's labels: move one to a version, roll it back, remove it; every move so far. */
export default function Labels({ id, etag, info, versions, onChanged }) {
  const history = useResource((signal) => all(`${BASE}/prompts/${id}/label-history`, {}, { signal }), [id, etag]);
  const [label, setLabel] = useState("staging");
  const [version, setVersion] = useState("");
  const [reason, setReason] = useState("");
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [confirm, setConfirm] = useState(null); // { action, label }
  const errors = fieldErrors(error);
  const target = version || String(info.latest_version || "");

  async function run(call, what) {
    setError(null);
    setDone(null);
    try {
      const answer = await call();
      setDone(answer.data.changed === false ? `${what}: nothing to change.` : `${what}.`);
      onChanged();
    } catch (err) {
      setError(err);
    }
  }

  function move(event) {
    event.preventDefault();
    const name = label.trim();
    run(() => put(`${BASE}/prompts/${id}/labels/${encodeURIComponent(name)}`, { version: Number(target), reason }, { ifMatch: etag }), `Moved ${name} to v${target}`);
  }

  function confirmed() {
    const { action, label: name } = confirm;
    setConfirm(null);
    if (action === "remove") {
      run(() => del(`${BASE}/prompts/${id}/labels/${encodeURIComponent(name)}`, { ifMatch: etag, params: { reason } }), `Removed ${name}`);
    } else {
      run(() => post(`${BASE}/prompts/${id}/rollback`, { label: name, reason }, { ifMatch: etag }), `Rolled ${name} back`);
    }
  }

  const previous = (name) => {
    const moves = (history.data || []).filter((h) => h.label === name);
    return moves.length ? moves[moves.length - 1].previous_version : null;
  };

  return (
    <section className="panel" aria-labelledby="labels-title">
      <h2 id="labels-title">Labels</h2>
      <Needs may="write" what="move labels (that needs the operator or admin role; production needs admin)">
        <table className="dense" data-testid="labels">
          <thead>
            <tr>
              <th scope="col">Label</th>
              <th scope="col" className="num">Version</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(info.labels).length === 0 && (
              <tr>
                <td colSpan={3} className="hint">
                  No labels yet.
                </td>
              </tr>
            )}
            {Object.entries(info.labels).map(([name, v]) => (
              <tr key={name}>
                <td>
                  <span className={name === "production" ? "badge ok" : "badge"}>{name}</span>
                </td>
                <td className="num">v{v}</td>
                <td className="nowrap">
                  <button
                    type="button"
                    className="quiet small"
                    disabled={!previous(name)}
                    onClick={() => setConfirm({ action: "rollback", label: name })}
                    aria-label={`Rollback ${name}`}
                  >
                    Rollback
                  </button>{" "}
                  <button type="button" className="quiet small" onClick={() => setConfirm({ action: "remove", label: name })} aria-label={`Remove ${name}`}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <form onSubmit={move} className="toolbar" aria-label="Move a label">
          <Field id="label-name" label="Label" error={errors.label}>
            {(p) => (
              <>
                <input {...p} list="label-names" value={label} onChange={(e) => setLabel(e.target.value)} size={11} />
                <datalist id="label-names">
                  <option value="production" />
                  <option value="staging" />
                </datalist>
              </>
            )}
          </Field>
          <Field id="label-version" label="Move to version" error={errors.version}>
            {(p) => (
              <select {...p} value={target} onChange={(e) => setVersion(e.target.value)}>
                {versions.map((v) => (
                  <option key={v.version} value={v.version}>
                    v{v.version}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field id="label-reason" label="Reason" error={errors.reason}>
            {(p) => <input {...p} value={reason} onChange={(e) => setReason(e.target.value)} size={14} />}
          </Field>
          <button type="submit" disabled={!label.trim() || !target}>
            Move label
          </button>
        </form>
      </Needs>
      {done && <p role="status" className="saved">{done}</p>}
      <Problem error={error} onReload={() => { setError(null); onChanged(); }} onDismiss={() => setError(null)} />
      <Confirm
        open={!!confirm}
        title={confirm?.action === "remove" ? `Remove the label ${confirm?.label}?` : `Roll ${confirm?.label} back?`}
        confirmLabel={confirm?.action === "remove" ? "Remove label" : "Roll back"}
        danger={confirm?.action === "remove"}
        onConfirm={confirmed}
        onCancel={() => setConfirm(null)}
      >
        {confirm?.action === "remove" ? (
          <p>
            The label <strong>{confirm?.label}</strong> will no longer name v{info.labels[confirm?.label]} of {info.role}/{info.name}.
            {confirm?.label === "production" && " The role will run no version of this prompt until production is set again."}
          </p>
        ) : (
          <p>
            <strong>{confirm?.label}</strong> of {info.role}/{info.name} moves from v{info.labels[confirm?.label]} back to v
            {confirm ? previous(confirm.label) : ""}, the version it named before.
          </p>
        )}
      </Confirm>
      <details className="history">
        <summary>Label history ({(history.data || []).length})</summary>
        <Problem error={history.error} onReload={history.reload} />
        <table className="dense" data-testid="label-history">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Label</th>
              <th scope="col">Move</th>
              <th scope="col">Who</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {(history.data || []).slice().reverse().map((h) => (
              <tr key={h.sequence}>
                <td className="hint nowrap">{when(h.at)}</td>
                <td>{h.label}</td>
                <td className="nowrap">
                  {h.previous_version ? `v${h.previous_version}` : "—"} → {h.version ? `v${h.version}` : "removed"}
                  {h.action === "rollback" && <span className="badge warn">rollback</span>}
                </td>
                <td>{h.by}</td>
                <td>{h.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </section>
  );
}
