import { useEffect, useState } from "react";
import { all, get, post, put } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import CodeEditor from "./CodeEditor.jsx";
import Labels from "./Labels.jsx";
import PromptDiff from "./PromptDiff.jsx";
import PromptTests from "./PromptTests.jsx";
import Field from "./Field.jsx";
import { BASE, fieldErrors, variablesOf } from "./util.js";
import { when } from "../../format.js";

/** The role's prompts (list, create) and the selected one's workspace. */
export default function PromptEditor({ role, promptId, onSelectPrompt, onChanged }) {
  const prompts = useResource((signal) => all(`${BASE}/prompts`, { role: role.role }, { signal }), [role.role]);
  const [name, setName] = useState("");
  const [createError, setCreateError] = useState(null);
  const list = prompts.data || [];
  const selected = promptId || role.prompt_id || list[0]?.id || null;

  async function create(event) {
    event.preventDefault();
    setCreateError(null);
    try {
      const answer = await post(`${BASE}/prompts`, { role: role.role, name: name.trim() });
      setName("");
      prompts.reload();
      onSelectPrompt(answer.data.id);
    } catch (err) {
      setCreateError(err);
    }
  }

  return (
    <div className="prompts-layout">
      <section className="panel prompt-list" aria-labelledby="prompts-title">
        <h2 id="prompts-title">Prompts</h2>
        <Problem error={prompts.error} onReload={prompts.reload} />
        <ul className="pick-list" data-testid="prompt-list">
          {list.map((p) => (
            <li key={p.id}>
              <button
                type="button"
                className={p.id === selected ? "pick current" : "pick"}
                aria-pressed={p.id === selected}
                onClick={() => onSelectPrompt(p.id)}
              >
                <span className="pick-name">{p.name}</span>
                <span className="hint">
                  {p.latest_version ? `v${p.latest_version}` : "no version"}
                  {p.id === role.prompt_id ? " · runs" : ""}
                </span>
                <span className="pick-labels">
                  {Object.entries(p.labels).map(([l, v]) => (
                    <span key={l} className={l === "production" ? "badge ok" : "badge"}>
                      {l}→v{v}
                    </span>
                  ))}
                </span>
              </button>
            </li>
          ))}
        </ul>
        <Needs may="write" what="create prompts: that needs the operator or admin role">
          <form onSubmit={create} className="create-prompt">
            <Field id="new-prompt" label="New prompt name" error={fieldErrors(createError).name}>
              {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} size={16} placeholder="e.g. concise" />}
            </Field>
            <button type="submit" disabled={!name.trim()}>
              Create prompt
            </button>
            <Problem error={createError} onDismiss={() => setCreateError(null)} />
          </form>
        </Needs>
      </section>
      {selected && (
        <PromptWorkspace
          key={selected}
          id={selected}
          role={role}
          onChanged={() => {
            prompts.reload();
            onChanged?.();
          }}
        />
      )}
    </div>
  );
}

function overridesOf(form) {
  const o = {};
  if (form.temperature.trim() !== "") o.temperature = Number.isNaN(Number(form.temperature)) ? form.temperature : Number(form.temperature);
  if (form.max_tokens.trim() !== "") o.max_tokens = Number.isNaN(Number(form.max_tokens)) ? form.max_tokens : Number(form.max_tokens);
  return o;
}

/** One prompt: the editor (a PUT commits a new version), versions, diff, labels, tests. */
function PromptWorkspace({ id, role, onChanged }) {
  const prompt = useResource((signal) => get(`${BASE}/prompts/${id}`, undefined, { signal }), [id]);
  const versions = useResource((signal) => all(`${BASE}/prompts/${id}/versions`, {}, { signal }), [id]);
  const [base, setBase] = useState(null); // the version loaded into the editor
  const [draft, setDraft] = useState({ system: "", user: "", temperature: "", max_tokens: "", message: "" });
  const [loadError, setLoadError] = useState(null);
  const [saveError, setSaveError] = useState(null);
  const [saved, setSaved] = useState(null);
  const [busy, setBusy] = useState(false);
  const [compare, setCompare] = useState(null);
  const info = prompt.data?.data;
  const etag = prompt.data?.etag;
  const latest = info?.latest_version ?? null;

  async function load(n) {
    setLoadError(null);
    try {
      const v = (await get(`${BASE}/prompts/${id}/versions/${n}`)).data;
      setBase(v);
      setDraft({
        system: v.system_template,
        user: v.user_template,
        temperature: v.overrides.temperature === undefined ? "" : String(v.overrides.temperature),
        max_tokens: v.overrides.max_tokens === undefined ? "" : String(v.overrides.max_tokens),
        message: "",
      });
    } catch (err) {
      setLoadError(err);
    }
  }

  useEffect(() => {
    if (latest && !base) load(latest);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [latest]);

  const variables = variablesOf(draft.system, draft.user);
  const edited =
    !base ||
    draft.system !== base.system_template ||
    draft.user !== base.user_template ||
    JSON.stringify(overridesOf(draft)) !== JSON.stringify(base.overrides);
  const errors = fieldErrors(saveError);

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setSaveError(null);
    setSaved(null);
    try {
      const body = {
        system_template: draft.system,
        user_template: draft.user,
        variables,
        overrides: overridesOf(draft),
        message: draft.message,
      };
      if (base?.model) body.model = base.model;
      const answer = await put(`${BASE}/prompts/${id}`, body, { ifMatch: etag });
      const v = answer.data;
      if (answer.status === 201) {
        setSaved(`Committed version ${v.version}.`);
        if (latest) setCompare({ from: latest, to: v.version });
      } else {
        setSaved(`Identical to version ${v.version}: nothing committed.`);
      }
      setBase(v);
      setDraft((d) => ({ ...d, message: "" }));
      prompt.reload();
      versions.reload();
      onChanged?.();
    } catch (err) {
      setSaveError(err);
    } finally {
      setBusy(false);
    }
  }

  // after a conflict: the latest prompt (its ETag, versions, labels); the edits stay in
  // the editor, to be saved on top of what changed (versions are never overwritten)
  function reloadAll() {
    setSaveError(null);
    prompt.reload();
    versions.reload();
  }

  if (!info) return <Problem error={prompt.error} onReload={prompt.reload} />;
  const list = versions.data || [];

  return (
    <div className="prompt-work">
      <section className="panel" aria-labelledby="editor-title">
        <div className="head-row">
          <h2 id="editor-title">
            {info.role}/{info.name}{" "}
            <span className="hint">
              {latest ? `latest v${latest}` : "no version yet"}
              {base && latest && base.version !== latest ? ` · editing from v${base.version}` : ""}
            </span>
          </h2>
          <span className="pick-labels">
            {Object.entries(info.labels).map(([l, v]) => (
              <span key={l} className={l === "production" ? "badge ok" : "badge"}>
                {l}→v{v}
              </span>
            ))}
          </span>
        </div>
        {info.description && <p className="hint">{info.description}</p>}
        <Problem error={loadError} onDismiss={() => setLoadError(null)} />
        <Needs may="write" what="save prompt versions: that needs the operator or admin role">
          <form onSubmit={save} aria-label="New version">
            <div className="editor-grid">
              <div className={errors.system_template ? "invalid" : undefined}>
                <p className="editor-label" id="system-label">System template</p>
                <CodeEditor label="System template" value={draft.system} onChange={(t) => setDraft((d) => ({ ...d, system: t }))} testId="system-editor" />
                {errors.system_template && <span className="field-error" data-field-error>{errors.system_template}</span>}
              </div>
              <div className={errors.user_template ? "invalid" : undefined}>
                <p className="editor-label" id="user-label">User template</p>
                <CodeEditor label="User template" value={draft.user} onChange={(t) => setDraft((d) => ({ ...d, user: t }))} testId="user-editor" />
                {errors.user_template && <span className="field-error" data-field-error>{errors.user_template}</span>}
              </div>
            </div>
            <p className="variables" data-testid="variables">
              <strong>Variables</strong>{" "}
              {variables.length ? (
                variables.map((v) => (
                  <code key={v} className="var">
                    {`{{${v}}}`}
                  </code>
                ))
              ) : (
                <span className="hint">none — write {"{{ name }}"} in a template</span>
              )}
              {Object.entries(errors)
                .filter(([f]) => f.startsWith("variables"))
                .map(([f, m]) => (
                  <span key={f} className="field-error">
                    <code>{f}</code> {m}
                  </span>
                ))}
              {base?.warnings?.map((w, i) => (
                <span key={i} className="badge warn">
                  {w.message}
                </span>
              ))}
            </p>
            <div className="toolbar">
              <Field id="o-temperature" label="Temperature override" error={errors["overrides.temperature"]} hint={`role: ${role.settings.temperature}`}>
                {(p) => <input {...p} value={draft.temperature} onChange={(e) => setDraft({ ...draft, temperature: e.target.value })} size={6} />}
              </Field>
              <Field id="o-max-tokens" label="Max tokens override" error={errors["overrides.max_tokens"]} hint={`role: ${role.settings.max_tokens}`}>
                {(p) => <input {...p} value={draft.max_tokens} onChange={(e) => setDraft({ ...draft, max_tokens: e.target.value })} size={7} />}
              </Field>
              <Field id="commit-message" label="Commit message" error={errors.message} wide>
                {(p) => <input {...p} value={draft.message} onChange={(e) => setDraft({ ...draft, message: e.target.value })} size={44} placeholder="what changed and why" />}
              </Field>
              <div className="actions">
                <button type="submit" disabled={busy || !edited}>
                  {busy ? "Saving…" : "Save as new version"}
                </button>
                {base && (
                  <button type="button" className="quiet" disabled={busy || !edited} onClick={() => load(base.version)}>
                    Revert edits
                  </button>
                )}
              </div>
            </div>
            {saved && <p role="status" className="saved">{saved}</p>}
            <Problem error={saveError} onReload={reloadAll} onDismiss={() => setSaveError(null)} />
          </form>
        </Needs>
      </section>

      <div className="two-col">
        <section className="panel" aria-labelledby="versions-title">
          <h2 id="versions-title">Versions</h2>
          <Problem error={versions.error} onReload={versions.reload} />
          <table className="dense" data-testid="versions">
            <thead>
              <tr>
                <th scope="col" className="num">Version</th>
                <th scope="col">Message</th>
                <th scope="col">By, when</th>
                <th scope="col">Labels</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.slice().reverse().map((v) => (
                <tr key={v.version} className={base?.version === v.version ? "selected" : undefined}>
                  <td className="num">v{v.version}</td>
                  <td>{v.message}</td>
                  <td className="hint">
                    {v.created_by}
                    <div className="nowrap">{when(v.created_at)}</div>
                  </td>
                  <td>
                    {v.labels.map((l) => (
                      <span key={l} className={l === "production" ? "badge ok" : "badge"}>
                        {l}
                      </span>
                    ))}
                  </td>
                  <td className="nowrap">
                    <button type="button" className="quiet small" onClick={() => load(v.version)} aria-label={`Edit version ${v.version}`}>
                      Edit
                    </button>{" "}
                    {v.version > 1 && (
                      <button
                        type="button"
                        className="quiet small"
                        onClick={() => setCompare({ from: v.version - 1, to: v.version })}
                        aria-label={`Diff version ${v.version - 1} to ${v.version}`}
                      >
                        Diff
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
        <Labels id={id} etag={etag} info={info} versions={list} onChanged={() => { prompt.reload(); versions.reload(); onChanged?.(); }} />
      </div>

      <PromptDiff id={id} versions={list} compare={compare} onCompare={setCompare} />
      <PromptTests id={id} info={info} versions={list} draft={draft} variables={variables} role={role} />
    </div>
  );
}
