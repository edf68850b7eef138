import { useState } from "react";
import { all, get, post } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Confirm from "../../components/Confirm.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import Field from "./Field.jsx";
import { BASE, fieldErrors, fmt, pct } from "./util.js";
import { when } from "../../format.js";

function interval(ci, as) {
  if (!ci) return "—";
  return `[${as(ci.lower)}, ${as(ci.upper)}]`;
}

/** The role's A/B experiments: start one, see one's results, conclude it. */
export default function Experiments({ role, experimentId, onSelect, onChanged }) {
  const list = useResource((signal) => all(`${BASE}/experiments`, { role: role.role }, { signal }), [role.role]);
  const prompts = useResource((signal) => all(`${BASE}/prompts`, { role: role.role }, { signal }), [role.role]);
  const experiments = list.data || [];
  const selected = experimentId || experiments.find((e) => e.status === "running")?.id || experiments[0]?.id || null;
  const names = Object.fromEntries((prompts.data || []).map((p) => [p.id, p.name]));
  const refresh = () => {
    list.reload();
    onChanged?.();
  };

  return (
    <div className="exp-layout">
      <div>
        <section className="panel" aria-labelledby="experiments-title">
          <h2 id="experiments-title">Experiments of {role.name || role.role}</h2>
          <Problem error={list.error} onReload={list.reload} />
          <table className="dense" data-testid="experiments">
            <thead>
              <tr>
                <th scope="col">Started</th>
                <th scope="col">Status</th>
                <th scope="col">Variants</th>
                <th scope="col">Metric</th>
                <th scope="col" className="num">Units</th>
                <th scope="col">Open</th>
              </tr>
            </thead>
            <tbody>
              {!experiments.length && (
                <tr>
                  <td colSpan={6} className="hint">
                    No experiment for this role yet.
                  </td>
                </tr>
              )}
              {experiments.map((e) => (
                <tr key={e.id} className={e.id === selected ? "selected" : undefined}>
                  <td className="hint nowrap">{when(e.started_at)}</td>
                  <td>
                    <span className={e.status === "running" ? "badge warn" : "badge"}>{e.status}</span>
                  </td>
                  <td>{e.variants.map((v) => `${names[v.prompt_id] || v.prompt_id.slice(0, 8)} v${v.prompt_version}`).join(" vs ")}</td>
                  <td>
                    {e.metric}, min {e.min_sample}
                  </td>
                  <td className="num">{e.exposed}</td>
                  <td>
                    <button type="button" className="quiet small" aria-pressed={e.id === selected} onClick={() => onSelect(e.id)} aria-label={`Open the experiment started ${when(e.started_at)}`}>
                      Open
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
        {selected && <Experiment key={selected} id={selected} names={names} onChanged={refresh} />}
      </div>
      <StartExperiment role={role} prompts={prompts.data || []} onStarted={(id) => { refresh(); onSelect(id); }} />
    </div>
  );
}

function Experiment({ id, names, onChanged }) {
  const experiment = useResource((signal) => get(`${BASE}/experiments/${id}`, undefined, { signal }), [id]);
  const results = useResource((signal) => get(`${BASE}/experiments/${id}/results`, undefined, { signal }), [id]);
  const [winner, setWinner] = useState("0");
  const [reason, setReason] = useState("");
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const e = experiment.data?.data;
  const r = results.data?.data;
  if (!e) return <Problem error={experiment.error} onReload={experiment.reload} />;
  const rate = e.metric === "rate";
  const as = rate ? pct : (x) => fmt(x, 3);
  const chosen = e.variants[Number(winner)];

  async function conclude() {
    setAsking(false);
    setError(null);
    setDone(null);
    try {
      const answer = await post(`${BASE}/experiments/${id}/conclude`, { winner: Number(winner), reason }, { ifMatch: experiment.data.etag });
      setDone(answer.data.changed === false ? "Already concluded with this winner." : `Concluded: variant ${winner} is production.`);
      experiment.reload();
      results.reload();
      onChanged();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section className="panel" aria-labelledby="experiment-title" data-testid="experiment" data-status={e.status}>
      <div className="head-row">
        <h2 id="experiment-title">
          Experiment <code>{e.id.slice(0, 8)}</code>{" "}
          <span className={e.status === "running" ? "badge warn" : "badge"}>{e.status}</span>
        </h2>
        <button type="button" className="quiet small" onClick={() => { experiment.reload(); results.reload(); }}>
          Refresh results
        </button>
      </div>
      <p className="hint">
        {e.metric} metric · unit {e.unit} · min sample {e.min_sample} per variant · started {when(e.started_at)} by {e.started_by}
        {e.reason ? ` · “${e.reason}”` : ""}
      </p>
      {e.status !== "running" && e.winner !== null && (
        <p data-testid="conclusion">
          <span className="badge ok">winner: variant {e.winner}</span> {names[e.variants[e.winner].prompt_id] || ""} v{e.variants[e.winner].prompt_version}
          {e.conclusion ? ` — ${e.conclusion}` : ""} ({when(e.concluded_at)}, {e.concluded_by})
        </p>
      )}
      <Problem error={results.error} onReload={results.reload} />
      {r && (
        <>
          <p>
            <span className={r.status === "ready" ? "badge ok" : "badge warn"} data-testid="results-status">
              {r.status === "ready" ? "ready" : "insufficient data"}
            </span>{" "}
            {r.units} units · confidence {pct(r.confidence)} ·{" "}
            {r.sample_ratio.mismatch ? (
              <span className="badge bad">sample ratio mismatch (p={fmt(r.sample_ratio.p_value, 4)})</span>
            ) : (
              <span className="hint">
                sample ratio OK{r.sample_ratio.p_value !== null ? ` (p=${fmt(r.sample_ratio.p_value, 4)})` : ""}
              </span>
            )}
          </p>
          <div className="scroll-x" tabIndex={0} role="region" aria-label="Results per variant">
          <table className="dense" data-testid="results">
            <caption className="visually-hidden">Results per variant</caption>
            <thead>
              <tr>
                <th scope="col">Variant</th>
                <th scope="col">Prompt</th>
                <th scope="col" className="num">Share</th>
                <th scope="col" className="num">n</th>
                <th scope="col" className="num">Outcomes</th>
                <th scope="col" className="num">{rate ? "Rate" : "Mean"}</th>
                <th scope="col">CI</th>
                <th scope="col" className="num">Diff.</th>
                <th scope="col">Diff. CI</th>
                <th scope="col" className="num">Lift</th>
                <th scope="col" className="num">p</th>
                <th scope="col" className="num">Holm p</th>
                <th scope="col">Significant</th>
              </tr>
            </thead>
            <tbody>
              {r.variants.map((v) => {
                const d = e.variants[v.index];
                const c = v.versus_control;
                return (
                  <tr key={v.index} data-variant={v.index}>
                    <th scope="row">
                      {v.index === 0 ? "0 (control)" : v.index}
                      {e.winner === v.index && <span className="badge ok">winner</span>}
                    </th>
                    <td className="nowrap">
                      {names[d.prompt_id] || d.prompt_id.slice(0, 8)} v{d.prompt_version}
                      {Object.keys(d.settings || {}).length > 0 && <div className="hint mono">{JSON.stringify(d.settings)}</div>}
                    </td>
                    <td className="num">{pct(v.share)}</td>
                    <td className="num" data-testid="n">
                      {v.n}
                      {!v.enough_data && <span className="hint"> (&lt; {r.min_sample})</span>}
                    </td>
                    <td className="num">{v.n_outcomes}</td>
                    <td className="num">{as(v.estimate)}</td>
                    <td className="nowrap">{interval(v.ci, as)}</td>
                    <td className="num">{c ? as(c.difference) : "—"}</td>
                    <td className="nowrap">{c ? interval(c.difference_ci, as) : "—"}</td>
                    <td className="num">{c ? pct(c.lift) : "—"}</td>
                    <td className="num">{c ? fmt(c.p_value, 4) : "—"}</td>
                    <td className="num">{c ? fmt(c.adjusted_p_value, 4) : "—"}</td>
                    <td>
                      {!c ? "—" : c.significant === null ? <span className="hint">not yet</span> : c.significant ? <span className="badge ok">yes</span> : <span className="badge">no</span>}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          </div>
        </>
      )}
      {e.status === "running" && (
        <Needs may="admin" what="conclude experiments: that moves production, which needs the admin role">
          <div className="toolbar">
            <Field id="winner" label="Winner" error={fieldErrors(error).winner}>
              {(p) => (
                <select {...p} value={winner} onChange={(ev) => setWinner(ev.target.value)}>
                  {e.variants.map((v) => (
                    <option key={v.index} value={v.index}>
                      {v.index}: {names[v.prompt_id] || v.prompt_id.slice(0, 8)} v{v.prompt_version}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field id="conclude-reason" label="Why">
              {(p) => <input {...p} value={reason} onChange={(ev) => setReason(ev.target.value)} size={30} />}
            </Field>
            <button type="button" onClick={() => setAsking(true)}>
              Conclude…
            </button>
          </div>
        </Needs>
      )}
      {done && <p role="status" className="saved">{done}</p>}
      <Problem error={error} onReload={() => { setError(null); experiment.reload(); results.reload(); }} onDismiss={() => setError(null)} />
      <Confirm open={asking} title="Conclude the experiment?" confirmLabel="Conclude" onConfirm={conclude} onCancel={() => setAsking(false)}>
        {chosen && (
          <p>
            Assignment stops for every unit, and <strong>production</strong> of {names[chosen.prompt_id] || "the prompt"} moves to v{chosen.prompt_version}
            {Object.keys(chosen.settings || {}).length ? " (as a new version with the variant's settings)" : ""}: the role runs variant {chosen.index} from now on.
          </p>
        )}
      </Confirm>
    </section>
  );
}

function StartExperiment({ role, prompts, onStarted }) {
  const withVersions = prompts.filter((p) => p.latest_version);
  const first = withVersions[0];
  const [variants, setVariants] = useState([]);
  const [metric, setMetric] = useState("rate");
  const [minSample, setMinSample] = useState("100");
  const [unit, setUnit] = useState("user");
  const [reason, setReason] = useState("");
  const [error, setError] = useState(null);
  const errors = fieldErrors(error);
  const rows = variants.length
    ? variants
    : first
      ? [
          { prompt_id: first.id, prompt_version: String(Math.max(1, first.latest_version - 1)), weight: "1" },
          { prompt_id: first.id, prompt_version: String(first.latest_version), weight: "1" },
        ]
      : [];
  const setRow = (i, change) => setVariants(rows.map((v, j) => (j === i ? { ...v, ...change } : v)));

  async function start(event) {
    event.preventDefault();
    setError(null);
    try {
      const answer = await post(`${BASE}/experiments`, {
        role: role.role,
        variants: rows.map((v) => ({ prompt_id: v.prompt_id, prompt_version: Number(v.prompt_version), weight: Number(v.weight) })),
        metric,
        min_sample: Number(minSample),
        unit,
        reason,
      });
      setVariants([]);
      onStarted(answer.data.id);
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section className="panel side" aria-labelledby="start-title">
      <h2 id="start-title">Start an experiment</h2>
      {!first ? (
        <p className="hint">The role has no prompt with a version to compare.</p>
      ) : (
        <Needs may="write" what="start experiments: that needs the operator or admin role">
          <form onSubmit={start} aria-label="Start an experiment">
            {rows.map((v, i) => {
              const p = prompts.find((x) => x.id === v.prompt_id);
              return (
                <div key={i} className="sample">
                  <Field id={`v-${i}-prompt`} label={`Variant ${i}${i === 0 ? " (control)" : ""}`} error={errors[`variants[${i}]`]}>
                    {(a) => (
                      <select {...a} value={v.prompt_id} onChange={(e) => setRow(i, { prompt_id: e.target.value, prompt_version: "1" })}>
                        {withVersions.map((x) => (
                          <option key={x.id} value={x.id}>
                            {x.name}
                          </option>
                        ))}
                      </select>
                    )}
                  </Field>
                  <Field id={`v-${i}-version`} label="Version" error={errors[`variants[${i}].prompt_version`]}>
                    {(a) => (
                      <select {...a} value={v.prompt_version} onChange={(e) => setRow(i, { prompt_version: e.target.value })}>
                        {Array.from({ length: p?.latest_version || 0 }, (_, k) => k + 1).map((n) => (
                          <option key={n} value={n}>
                            v{n}
                          </option>
                        ))}
                      </select>
                    )}
                  </Field>
                  <Field id={`v-${i}-weight`} label="Weight" error={errors[`variants[${i}].weight`]}>
                    {(a) => <input {...a} value={v.weight} onChange={(e) => setRow(i, { weight: e.target.value })} size={4} />}
                  </Field>
                  {rows.length > 2 && (
                    <button type="button" className="quiet small" onClick={() => setVariants(rows.filter((_, j) => j !== i))} aria-label={`Remove variant ${i}`}>
                      Remove
                    </button>
                  )}
                </div>
              );
            })}
            <button type="button" className="quiet small" onClick={() => setVariants([...rows, { ...rows[rows.length - 1] }])}>
              Add variant
            </button>
            <div className="toolbar">
              <Field id="x-metric" label="Metric" error={errors.metric}>
                {(a) => (
                  <select {...a} value={metric} onChange={(e) => setMetric(e.target.value)}>
                    <option value="rate">rate (0/1)</option>
                    <option value="score">score</option>
                  </select>
                )}
              </Field>
              <Field id="x-min" label="Min sample" error={errors.min_sample}>
                {(a) => <input {...a} value={minSample} onChange={(e) => setMinSample(e.target.value)} size={6} />}
              </Field>
              <Field id="x-unit" label="Unit" error={errors.unit}>
                {(a) => (
                  <select {...a} value={unit} onChange={(e) => setUnit(e.target.value)}>
                    <option>user</option>
                    <option>session</option>
                    <option>agent</option>
                  </select>
                )}
              </Field>
            </div>
            <Field id="x-reason" label="Reason" error={errors.reason}>
              {(a) => <input {...a} value={reason} onChange={(e) => setReason(e.target.value)} size={28} />}
            </Field>
            <div className="actions">
              <button type="submit">Start experiment</button>
            </div>
            <Problem error={error} onDismiss={() => setError(null)} />
          </form>
        </Needs>
      )}
    </section>
  );
}
