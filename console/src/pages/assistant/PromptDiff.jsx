import { useEffect, useRef, useState } from "react";
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { MergeView } from "@codemirror/merge";
import { get } from "../../api.js";
import Problem from "../../components/Problem.jsx";
import Field from "./Field.jsx";
import { BASE, fmt } from "./util.js";

/** A unified diff from the API, one line per row, added and removed lines marked. */
function Unified({ title, text }) {
  if (!text) {
    return (
      <div className="diff-block">
        <h3>{title}</h3>
        <p className="hint">unchanged</p>
      </div>
    );
  }
  const lines = text.replace(/\n$/, "").split("\n");
  return (
    <div className="diff-block">
      <h3>{title}</h3>
      <pre className="diff" data-testid={`${title === "System template" ? "system" : "user"}-diff`}>
        {lines.map((line, i) => {
          let kind = "ctx";
          if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
          else if (line.startsWith("@@")) kind = "hunk";
          else if (line.startsWith("+")) kind = "add";
          else if (line.startsWith("-")) kind = "del";
          else if (line.startsWith("\\")) kind = "note";
          const Tag = kind === "add" ? "ins" : kind === "del" ? "del" : "span";
          return (
            <Tag key={i} className={`diff-line ${kind}`}>
              {line}
              {"\n"}
            </Tag>
          );
        })}
      </pre>
    </div>
  );
}

/** Two versions' template side by side (@codemirror/merge), read-only, changes highlighted. */
function SideBySide({ title, a, b, from, to }) {
  const box = useRef(null);
  useEffect(() => {
    const common = [basicSetup, EditorView.lineWrapping, EditorState.readOnly.of(true)];
    const view = new MergeView({
      a: { doc: a, extensions: [...common, EditorView.contentAttributes.of({ "aria-label": `${title}, version ${from} (read-only)` })] },
      b: { doc: b, extensions: [...common, EditorView.contentAttributes.of({ "aria-label": `${title}, version ${to} (read-only)` })] },
      parent: box.current,
      collapseUnchanged: { margin: 3, minSize: 6 },
    });
    return () => view.destroy();
  }, [title, a, b, from, to]);
  return (
    <div className="diff-block">
      <h3>
        {title} <span className="hint">v{from} (left) → v{to} (right)</span>
      </h3>
      <div ref={box} className="merge" />
    </div>
  );
}

/** The diff between two versions: `GET …/diff` (texts, variables, settings, model), or side by side. */
export default function PromptDiff({ id, versions, compare, onCompare }) {
  const numbers = versions.map((v) => v.version);
  const last = numbers[numbers.length - 1];
  const from = compare?.from ?? (last > 1 ? last - 1 : last);
  const to = compare?.to ?? last;
  const [diff, setDiff] = useState(null);
  const [texts, setTexts] = useState(null);
  const [mode, setMode] = useState("unified");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function show(f = from, t = to) {
    setBusy(true);
    setError(null);
    try {
      const [d, a, b] = await Promise.all([
        get(`${BASE}/prompts/${id}/diff`, { from: f, to: t }),
        get(`${BASE}/prompts/${id}/versions/${f}`),
        get(`${BASE}/prompts/${id}/versions/${t}`),
      ]);
      setDiff(d.data);
      setTexts({ a: a.data, b: b.data });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  // a Diff button of the versions table (or a new version) asks for a comparison: show it
  useEffect(() => {
    if (compare) show(compare.from, compare.to);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [compare?.from, compare?.to]);

  if (!numbers.length) return null;
  return (
    <section className="panel" aria-labelledby="diff-title" data-testid="diff">
      <h2 id="diff-title">Diff</h2>
      <form
        className="toolbar"
        aria-label="Compare versions"
        onSubmit={(e) => {
          e.preventDefault();
          show();
        }}
      >
        <Field id="diff-from" label="From version">
          {(p) => (
            <select {...p} value={from} onChange={(e) => onCompare({ from: Number(e.target.value), to })}>
              {numbers.map((n) => (
                <option key={n} value={n}>
                  v{n}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field id="diff-to" label="To version">
          {(p) => (
            <select {...p} value={to} onChange={(e) => onCompare({ from, to: Number(e.target.value) })}>
              {numbers.map((n) => (
                <option key={n} value={n}>
                  v{n}
                </option>
              ))}
            </select>
          )}
        </Field>
        <button type="submit" disabled={busy}>
          Show diff
        </button>
        <div className="segmented" role="group" aria-label="Diff view">
          <button type="button" className={mode === "unified" ? "current" : "quiet"} aria-pressed={mode === "unified"} onClick={() => setMode("unified")}>
            Unified
          </button>
          <button type="button" className={mode === "split" ? "current" : "quiet"} aria-pressed={mode === "split"} onClick={() => setMode("split")}>
            Side by side
          </button>
        </div>
      </form>
      <Problem error={error} onDismiss={() => setError(null)} />
      {diff && (
        <div data-testid="diff-result" data-from={diff.from_version} data-to={diff.to_version}>
          <p>
            <strong>
              v{diff.from_version} → v{diff.to_version}
            </strong>{" "}
            {diff.identical ? <span className="badge">identical</span> : <span className="badge warn">changed</span>}
            {diff.variables_added.map((v) => (
              <span key={`a${v}`} className="badge ok">
                + {`{{${v}}}`}
              </span>
            ))}
            {diff.variables_removed.map((v) => (
              <span key={`r${v}`} className="badge bad">
                − {`{{${v}}}`}
              </span>
            ))}
            {diff.model_changed && (
              <span className="badge warn">
                model {diff.model_changed.before || "role's"} → {diff.model_changed.after || "role's"}
              </span>
            )}
          </p>
          {diff.settings_changed.length > 0 && (
            <table className="dense narrow" data-testid="settings-changed">
              <caption>Settings changed</caption>
              <thead>
                <tr>
                  <th scope="col">Setting</th>
                  <th scope="col">Before</th>
                  <th scope="col">After</th>
                </tr>
              </thead>
              <tbody>
                {diff.settings_changed.map((s) => (
                  <tr key={s.name}>
                    <td>
                      <code>{s.name}</code>
                    </td>
                    <td>{s.before === null ? "role's" : fmt(s.before)}</td>
                    <td>{s.after === null ? "role's" : fmt(s.after)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {mode === "unified" ? (
            <div className="diff-grid">
              <Unified title="System template" text={diff.system_diff} />
              <Unified title="User template" text={diff.user_diff} />
            </div>
          ) : (
            texts && (
              <div>
                <SideBySide title="System template" a={texts.a.system_template} b={texts.b.system_template} from={diff.from_version} to={diff.to_version} />
                <SideBySide title="User template" a={texts.a.user_template} b={texts.b.user_template} from={diff.from_version} to={diff.to_version} />
              </div>
            )
          )}
        </div>
      )}
    </section>
  );
}
