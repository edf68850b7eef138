import { useEffect, useState } from "react";
import { ApiError, get, post, put } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import Field from "./Field.jsx";
import TestJobs from "./TestJobs.jsx";
import { BASE, fieldErrors, fmt } from "./util.js";
import { when } from "../../format.js";

const KINDS = ["contains", "not_contains", "regex", "json_valid", "json_schema", "max_chars", "max_latency_ms"];

function assertionValue(kind, text) {
  if (kind === "json_valid") return null;
  if (kind === "max_chars" || kind === "max_latency_ms") {
    const n = Number(text);
    return text.trim() === "" || Number.isNaN(n) ? text : n;
  }
  if (kind === "json_schema") {
    try {
      return JSON.parse(text);
    } catch {
      return text; // the API names the field
    }
  }
  return text;
}

function assertionText(a) {
  if (a.value === null || a.value === undefined) return "";
  return typeof a.value === "string" ? a.value : JSON.stringify(a.value);
}

function settingsOf(form) {
  const s = {};
  for (const name of ["max_tokens", "temperature"]) {
    const t = form[name].trim();
    if (t !== "") s[name] = Number.isNaN(Number(t)) ? t : Number(t);
  }
  return s;
}

/** The cases of one run: output, latency, tokens and each assertion's verdict. */
function RunCases({ run }) {
  return (
    <div data-testid="test-run" data-run={run.id}>
      <p>
        <strong>Run</strong> <code>{run.id.slice(0, 8)}</code> · {when(run.created_at)} · {run.created_by} ·{" "}
        <span className={run.failed ? "badge bad" : "badge ok"}>
          {run.passed} of {run.total} passed
        </span>{" "}
        {run.subjects.map((s, i) => (
          <span key={i} className="hint">
            {s.draft ? "draft" : `v${s.version}`}: {s.model}, T={fmt(s.settings.temperature, 2)}, max {s.settings.max_tokens}
            {i < run.subjects.length - 1 ? " · " : ""}
          </span>
        ))}
      </p>
      <table className="dense cases" data-testid="cases">
        <thead>
          <tr>
            <th scope="col">Subject</th>
            <th scope="col">Input</th>
            <th scope="col">Output</th>
            <th scope="col" className="num">Latency</th>
            <th scope="col" className="num">Tokens in/out</th>
            <th scope="col">Assertions</th>
            <th scope="col">Verdict</th>
          </tr>
        </thead>
        <tbody>
          {run.cases.map((c, i) => (
            <tr key={i} data-testid="case">
              <td className="nowrap">{c.draft ? "draft" : `v${c.version}`}</td>
              <td>
                {c.input_name || `#${c.input + 1}`}
                <details>
                  <summary className="hint">rendered</summary>
                  <pre className="small-pre">{`system: ${c.rendered_system}\nuser: ${c.rendered_user}`}</pre>
                </details>
              </td>
              <td className="output" data-testid="output">
                {c.error ? <span className="field-error">{c.error}</span> : <pre className="small-pre">{c.output}</pre>}
                {c.finish_reason && <span className="hint">finish: {c.finish_reason}</span>}
              </td>
              <td className="num nowrap">{c.latency_ms === null ? "—" : `${Math.round(c.latency_ms)} ms`}</td>
              <td className="num nowrap">
                {fmt(c.tokens_in)}/{fmt(c.tokens_out)}
              </td>
              <td>
                <ul className="assertions" data-testid="assertion-results">
                  {c.assertions.map((a, j) => (
                    <li key={j} data-passed={a.passed}>
                      <span className={a.passed ? "badge ok" : "badge bad"}>{a.passed ? "pass" : "fail"}</span>{" "}
                      <code>{a.kind}</code> {assertionText(a)}
                      {a.detail && <div className="hint">{a.detail}</div>}
                    </li>
                  ))}
                  {!c.assertions.length && <li className="hint">none</li>}
                </ul>
              </td>
              <td>
                <span className={c.passed ? "badge ok" : "badge bad"} data-testid="verdict">
                  {c.passed ? "passed" : "failed"}
                </span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Test runs against sample inputs (`POST …/test`), earlier runs, and the saved suite. */
export default function PromptTests({ id, info, versions, draft, variables, role }) {
  const latest = info.latest_version;
  const [subjects, setSubjects] = useState(() => (latest ? [String(latest)] : ["draft"]));
  const [inputs, setInputs] = useState([{ name: "sample", values: {} }]);
  const [assertions, setAssertions] = useState([{ kind: "max_chars", value: "2000" }]);
  const [settings, setSettings] = useState({ max_tokens: "32", temperature: "" });
  const [reason, setReason] = useState("");
  const [run, setRun] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(null);
  const [note, setNote] = useState(null);
  const runs = useResource((signal) => get(`${BASE}/prompts/${id}/tests`, { limit: 10 }, { signal }), [id]);
  const suite = useResource(
    (signal) =>
      get(`${BASE}/prompts/${id}/suite`, undefined, { signal }).catch((err) => {
        if (err instanceof ApiError && err.status === 404) return null; // no suite saved yet
        throw err;
      }),
    [id],
  );
  const suiteRuns = useResource((signal) => get(`${BASE}/prompts/${id}/suite/runs`, undefined, { signal }), [id]);
  const jobs = useResource((signal) => get(`${BASE}/prompts/${id}/test-jobs`, { order: "newest", limit: 5 }, { signal }), [id]);

  // a new latest version becomes the default subject
  useEffect(() => {
    if (latest) setSubjects((s) => (s.length === 1 && s[0] !== "draft" ? [String(latest)] : s));
  }, [latest]);

  const errors = fieldErrors(error);
  const errorList = Object.entries(errors);
  const cases = subjects.length * inputs.length;

  function body() {
    const versionsAsked = subjects.filter((s) => s !== "draft").map(Number);
    const b = {
      inputs: inputs.map((inp) => ({
        name: inp.name,
        values: Object.fromEntries(variables.map((v) => [v, inp.values[v] ?? ""])),
      })),
      assertions: assertions.map((a) => ({ kind: a.kind, value: assertionValue(a.kind, a.value) })),
      settings: settingsOf(settings),
      reason,
    };
    if (versionsAsked.length) b.versions = versionsAsked;
    if (subjects.includes("draft")) {
      b.draft = { system_template: draft.system, user_template: draft.user, variables };
    }
    return b;
  }

  async function test(event) {
    event.preventDefault();
    setBusy("test");
    setError(null);
    setNote(null);
    try {
      const answer = await post(`${BASE}/prompts/${id}/test`, body());
      if (answer.status === 202) {
        // more than 20 cases: a worker runs them (its run shows below when done)
        setNote(`${answer.data.total} cases: the run is a job; follow it under Test jobs.`);
        jobs.reload();
      } else {
        setRun(answer.data);
        runs.reload();
      }
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  }

  async function saveSuite() {
    setBusy("suite");
    setError(null);
    setNote(null);
    try {
      const { inputs: i, assertions: a, settings: s } = body();
      const answer = await put(`${BASE}/prompts/${id}/suite`, { inputs: i, assertions: a, settings: s, reason }, { ifMatch: suite.data?.etag || "0" });
      setNote(answer.data.changed === false ? "The suite already holds these inputs: nothing saved." : `Suite saved (revision ${answer.data.revision}).`);
      suite.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  }

  async function runSuite() {
    setBusy("suite-run");
    setError(null);
    setNote(null);
    try {
      const versionsAsked = subjects.filter((s) => s !== "draft").map(Number);
      const answer = await post(`${BASE}/prompts/${id}/suite/run`, { versions: versionsAsked, reason });
      if (answer.status === 202) {
        setNote("The suite runs as a job; follow it under Test jobs.");
        jobs.reload();
      } else setRun(answer.data);
      runs.reload();
      suiteRuns.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  }

  function loadSuite() {
    const s = suite.data.data;
    setInputs(s.inputs.map((x) => ({ name: x.name, values: { ...x.values } })));
    setAssertions(s.assertions.map((a) => ({ kind: a.kind, value: assertionText(a) })));
    setSettings({
      max_tokens: s.settings.max_tokens === undefined ? "" : String(s.settings.max_tokens),
      temperature: s.settings.temperature === undefined ? "" : String(s.settings.temperature),
    });
  }

  async function openRun(runId) {
    setError(null);
    try {
      setRun((await get(`${BASE}/prompts/${id}/tests/${runId}`)).data);
    } catch (err) {
      setError(err);
    }
  }

  const toggle = (s) => setSubjects((list) => (list.includes(s) ? list.filter((x) => x !== s) : [...list, s]));
  const setInput = (i, change) => setInputs((list) => list.map((x, j) => (j === i ? { ...x, ...change } : x)));
  const setAssertion = (i, change) => setAssertions((list) => list.map((x, j) => (j === i ? { ...x, ...change } : x)));
  const suiteData = suite.data?.data;

  return (
    <section className="panel" aria-labelledby="tests-title">
      <h2 id="tests-title">Test against sample inputs</h2>
      <Needs may="write" what="run prompt tests or change the suite: that needs the operator or admin role">
        <form onSubmit={test} aria-label="Test run">
          <div className="test-grid">
            <fieldset>
              <legend>Run</legend>
              <div className="checks">
                {versions
                  .slice()
                  .reverse()
                  .map((v) => (
                    <span key={v.version}>
                      <input id={`subj-${v.version}`} type="checkbox" checked={subjects.includes(String(v.version))} onChange={() => toggle(String(v.version))} />
                      <label htmlFor={`subj-${v.version}`}>v{v.version}</label>
                    </span>
                  ))}
                <span>
                  <input id="subj-draft" type="checkbox" checked={subjects.includes("draft")} onChange={() => toggle("draft")} />
                  <label htmlFor="subj-draft">Editor draft</label>
                </span>
              </div>
              <div className="toolbar">
                <Field id="t-max-tokens" label="Max tokens" error={errors["settings.max_tokens"]} hint={`role: ${role.settings.max_tokens}`}>
                  {(p) => <input {...p} value={settings.max_tokens} onChange={(e) => setSettings({ ...settings, max_tokens: e.target.value })} size={5} />}
                </Field>
                <Field id="t-temperature" label="Temperature" error={errors["settings.temperature"]} hint="empty: the version's">
                  {(p) => <input {...p} value={settings.temperature} onChange={(e) => setSettings({ ...settings, temperature: e.target.value })} size={5} />}
                </Field>
                <Field id="t-reason" label="Reason" error={errors.reason}>
                  {(p) => <input {...p} value={reason} onChange={(e) => setReason(e.target.value)} size={14} />}
                </Field>
              </div>
            </fieldset>

            <fieldset>
              <legend>Sample inputs</legend>
              {inputs.map((inp, i) => (
                <div key={i} className="sample">
                  <Field id={`in-${i}-name`} label={`Input ${i + 1} name`}>
                    {(p) => <input {...p} value={inp.name} onChange={(e) => setInput(i, { name: e.target.value })} size={10} />}
                  </Field>
                  {variables.map((v) => (
                    <Field key={v} id={`in-${i}-var-${v}`} label={v} error={errors[`inputs[${i}].values`]}>
                      {(p) => <textarea {...p} rows={1} cols={22} value={inp.values[v] ?? ""} onChange={(e) => setInput(i, { values: { ...inp.values, [v]: e.target.value } })} />}
                    </Field>
                  ))}
                  {inputs.length > 1 && (
                    <button type="button" className="quiet small" onClick={() => setInputs(inputs.filter((_, j) => j !== i))} aria-label={`Remove input ${i + 1}`}>
                      Remove
                    </button>
                  )}
                </div>
              ))}
              {!variables.length && <p className="hint">The template uses no variables: each input is just a name.</p>}
              <button type="button" className="quiet small" onClick={() => setInputs([...inputs, { name: `sample ${inputs.length + 1}`, values: {} }])}>
                Add input
              </button>
            </fieldset>

            <fieldset>
              <legend>Assertions</legend>
              {assertions.map((a, i) => (
                <div key={i} className="sample">
                  <Field id={`as-${i}-kind`} label={`Assertion ${i + 1}`} error={errors[`assertions[${i}].kind`]}>
                    {(p) => (
                      <select {...p} value={a.kind} onChange={(e) => setAssertion(i, { kind: e.target.value })}>
                        {KINDS.map((k) => (
                          <option key={k}>{k}</option>
                        ))}
                      </select>
                    )}
                  </Field>
                  {a.kind !== "json_valid" && (
                    <Field id={`as-${i}-value`} label="Value" error={errors[`assertions[${i}].value`]}>
                      {(p) => <input {...p} value={a.value} onChange={(e) => setAssertion(i, { value: e.target.value })} size={16} />}
                    </Field>
                  )}
                  <button type="button" className="quiet small" onClick={() => setAssertions(assertions.filter((_, j) => j !== i))} aria-label={`Remove assertion ${i + 1}`}>
                    Remove
                  </button>
                </div>
              ))}
              <button type="button" className="quiet small" onClick={() => setAssertions([...assertions, { kind: "contains", value: "" }])}>
                Add assertion
              </button>
            </fieldset>
          </div>
          <div className="actions">
            <button type="submit" disabled={!!busy || !subjects.length}>
              {busy === "test" ? "Running on the model…" : `Run test (${cases} case${cases === 1 ? "" : "s"})`}
            </button>
            <button type="button" className="quiet" disabled={!!busy} onClick={saveSuite}>
              {busy === "suite" ? "Saving…" : "Save as the prompt's suite"}
            </button>
            <button type="button" className="quiet" disabled={!!busy || !suiteData || !subjects.some((s) => s !== "draft")} onClick={runSuite}>
              {busy === "suite-run" ? "Running the suite…" : "Run the saved suite"}
            </button>
            {busy === "test" && (
              <span role="status" className="hint">
                The model is answering; a case takes a second or more.
              </span>
            )}
          </div>
          {errorList.length > 0 && (
            <ul className="field-errors">
              {errorList
                .filter(([f]) => !/^(settings\.(max_tokens|temperature)|reason|assertions\[\d+\]\.(kind|value)|inputs\[\d+\]\.values)$/.test(f))
                .map(([f, m]) => (
                  <li key={f}>
                    <code>{f}</code> {m}
                  </li>
                ))}
            </ul>
          )}
          <Problem error={error} onDismiss={() => setError(null)} />
          {note && <p role="status" className="saved">{note}</p>}
        </form>
      </Needs>

      {run && <RunCases run={run} />}

      <TestJobs
        id={id}
        jobs={jobs}
        onOpenRun={openRun}
        onEnded={() => {
          runs.reload();
          suiteRuns.reload();
        }}
      />

      <div className="row">
        <div className="grow">
          <h3>Earlier runs</h3>
          <Problem error={runs.error} onReload={runs.reload} />
          <table className="dense" data-testid="test-runs">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Subjects</th>
                <th scope="col">Result</th>
                <th scope="col">By</th>
                <th scope="col">Open</th>
              </tr>
            </thead>
            <tbody>
              {(runs.data?.data.items || []).map((r) => (
                <tr key={r.id} className={run?.id === r.id ? "selected" : undefined}>
                  <td className="hint nowrap">{when(r.created_at)}</td>
                  <td>{r.subjects.map((s) => (s.draft ? "draft" : `v${s.version}`)).join(", ")}</td>
                  <td>
                    <span className={r.failed ? "badge bad" : "badge ok"}>
                      {r.passed}/{r.total}
                    </span>
                  </td>
                  <td>{r.created_by}</td>
                  <td>
                    <button type="button" className="quiet small" onClick={() => openRun(r.id)} aria-label={`Open the run of ${when(r.created_at)}`}>
                      Open
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div className="grow">
          <h3>Saved suite</h3>
          <Problem error={suite.error} onReload={suite.reload} />
          {suiteData ? (
            <p>
              Revision {suiteData.revision}: {suiteData.inputs.length} input{suiteData.inputs.length === 1 ? "" : "s"}, {suiteData.assertions.length} assertion
              {suiteData.assertions.length === 1 ? "" : "s"}, by {suiteData.updated_by} {when(suiteData.updated_at)}{" "}
              <button type="button" className="quiet small" onClick={loadSuite}>
                Load into the form
              </button>
            </p>
          ) : (
            <p className="hint">No suite saved: save the form's inputs and assertions as the suite.</p>
          )}
          <Problem error={suiteRuns.error} onReload={suiteRuns.reload} />
          <table className="dense" data-testid="suite-runs">
            <thead>
              <tr>
                <th scope="col" className="num">Version</th>
                <th scope="col">Latest run</th>
                <th scope="col">Result</th>
                <th scope="col">Suite</th>
              </tr>
            </thead>
            <tbody>
              {(suiteRuns.data?.data.items || []).map((r) => (
                <tr key={r.version}>
                  <td className="num">v{r.version}</td>
                  <td className="hint nowrap">
                    {when(r.at)} {r.by}
                  </td>
                  <td>
                    <span className={r.failed ? "badge bad" : "badge ok"}>
                      {r.passed}/{r.total}
                    </span>
                  </td>
                  <td>{r.current ? <span className="badge ok">current</span> : <span className="badge warn">older revision {r.suite_revision}</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}
