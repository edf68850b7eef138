import { useMemo, useState } from "react";
import { get } from "../../api.js";
import Chart from "../../components/Chart.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import { METRICS, PALETTE, fixed, metricText, runLabel } from "./format.js";

function settingText(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  if (typeof value === "string" && value.startsWith("sha256:")) return `${value.slice(0, 15)}…`;
  return String(value);
}

/**
 * Runs side by side (`GET /jobs/compare`): one chart with each run's curve of the chosen
 * metric aligned by epoch, the settings that differ, best and final metrics, and the
 * best run by that metric.
 */
export default function CompareRuns({ ids, onRemove, onClear }) {
  const [metric, setMetric] = useState("val_loss");
  const [showCurves, setShowCurves] = useState(false);
  const result = useResource(
    (signal) => get("/api/v1/ml/jobs/compare", { ids: ids.join(","), metric }, { signal }).then((r) => r.data),
    [ids.join(","), metric],
  );
  const data = result.data;
  const jobs = useMemo(() => data?.jobs ?? [], [data]);

  const chart = useMemo(() => {
    if (!data) return null;
    const xs = data.curves.map((c) => c.epoch);
    const cols = jobs.map((j) => data.curves.map((c) => c[j.id]?.[metric] ?? null));
    const series = jobs.map((j, i) => ({ label: runLabel(j), stroke: PALETTE[i % PALETTE.length], width: 2 }));
    return { data: [xs, ...cols], series };
  }, [data, jobs, metric]);

  const best = data?.best;
  return (
    <section className="panel" aria-labelledby="compare-title" data-testid="compare">
      <div className="panel-head">
        <h2 id="compare-title">Compare {ids.length} runs</h2>
        <div className="field inline">
          <label htmlFor="compare-metric">Metric</label>
          <select id="compare-metric" value={metric} onChange={(e) => setMetric(e.target.value)}>
            {METRICS.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </div>
        <button type="button" className="quiet" onClick={onClear}>
          Clear selection
        </button>
      </div>
      <Problem error={result.error} onReload={result.reload} />
      {!data && result.loading && <p role="status">Loading the comparison…</p>}
      {data && chart && (
        <>
          {best?.job_id && (
            <p className="best-line">
              Best by <code>{best.metric}</code> ({best.mode}):{" "}
              <strong>{runLabel(jobs.find((j) => j.id === best.job_id))}</strong>, {metricText(best.metric, best.value)} at epoch{" "}
              {best.epoch}
            </p>
          )}
          <ul className="legend" aria-label="Runs compared">
            {jobs.map((j, i) => (
              <li key={j.id}>
                <span className="legend-swatch" style={{ background: PALETTE[i % PALETTE.length] }} aria-hidden="true" />
                {runLabel(j)}
                <button type="button" className="quiet small" aria-label={`Remove ${runLabel(j)} from the comparison`} onClick={() => onRemove(j.id)}>
                  ×
                </button>
              </li>
            ))}
          </ul>
          <Chart
            label={`${metric} by epoch of ${jobs.map(runLabel).join(", ")}`}
            testId="compare-chart"
            data={chart.data}
            series={chart.series}
            time={false}
            height={260}
            xLabel="epoch"
            yLabel={metric}
          />
          <div className="scroll free" tabIndex={0} role="region" aria-label="Comparison table">
            <table className="dense compare-table">
              <caption className="visually-hidden">Settings that differ, best and final metrics per run</caption>
              <thead>
                <tr>
                  <th scope="col">Setting / metric</th>
                  {jobs.map((j) => (
                    <th scope="col" key={j.id} className="num">
                      {runLabel(j)}
                      {best?.job_id === j.id && <span className="badge ok">best</span>}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                <tr className="group">
                  <th scope="rowgroup" colSpan={jobs.length + 1}>
                    Settings that differ
                  </th>
                </tr>
                {Object.keys(data.differences).length === 0 && (
                  <tr>
                    <td colSpan={jobs.length + 1} className="hint">
                      The runs have the same settings.
                    </td>
                  </tr>
                )}
                {Object.entries(data.differences).map(([name, values]) => (
                  <tr key={name}>
                    <th scope="row">
                      <code>{name}</code>
                    </th>
                    {jobs.map((j) => (
                      <td key={j.id} className="num">
                        {settingText(values[j.id])}
                      </td>
                    ))}
                  </tr>
                ))}
                <tr>
                  <th scope="row">status</th>
                  {jobs.map((j) => (
                    <td key={j.id} className="num">
                      {j.status.replace("_", " ")}, {j.epochs_run ?? 0} epochs
                    </td>
                  ))}
                </tr>
                <tr className="group">
                  <th scope="rowgroup" colSpan={jobs.length + 1}>
                    Best metrics (epoch)
                  </th>
                </tr>
                {METRICS.map((m) => (
                  <tr key={`best-${m}`}>
                    <th scope="row">best {m}</th>
                    {jobs.map((j) => (
                      <td key={j.id} className="num">
                        {metricText(m, data.best_metrics[j.id]?.[m])}
                        {m === "val_loss" && j.best_epoch ? <span className="hint"> @{j.best_epoch}</span> : null}
                      </td>
                    ))}
                  </tr>
                ))}
                <tr className="group">
                  <th scope="rowgroup" colSpan={jobs.length + 1}>
                    Final metrics
                  </th>
                </tr>
                {METRICS.map((m) => (
                  <tr key={`final-${m}`}>
                    <th scope="row">final {m}</th>
                    {jobs.map((j) => (
                      <td key={j.id} className="num">
                        {metricText(m, data.final_metrics[j.id]?.[m])}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <details onToggle={(e) => setShowCurves(e.currentTarget.open)}>
            <summary>The aligned curves as a table ({data.curves.length} epochs)</summary>
            {showCurves && (
              <div className="scroll tall" tabIndex={0} role="region" aria-label="Aligned curves">
                <table className="dense" data-testid="compare-curves">
                  <caption className="visually-hidden">{metric} of each run by epoch</caption>
                  <thead>
                    <tr>
                      <th scope="col" className="num">Epoch</th>
                      {jobs.map((j) => (
                        <th scope="col" key={j.id} className="num">
                          {runLabel(j)}
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {data.curves.map((c) => (
                      <tr key={c.epoch}>
                        <td className="num">{c.epoch}</td>
                        {jobs.map((j) => (
                          <td key={j.id} className="num">
                            {c[j.id] ? fixed(c[j.id][metric]) : "—"}
                          </td>
                        ))}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </details>
        </>
      )}
    </section>
  );
}
