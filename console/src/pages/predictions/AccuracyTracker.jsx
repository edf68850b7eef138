import { useMemo, useState } from "react";
import { get } from "../../api.js";
import Chart from "../../components/Chart.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import { colourOf, num, pct, seconds } from "./format.js";

const ROLLING_METRICS = [
  { key: "mae", label: "MAE" },
  { key: "rmse", label: "RMSE" },
  { key: "mape", label: "MAPE %" },
  { key: "mase", label: "MASE" },
  { key: "direction_hit_rate", label: "direction hit rate" },
  { key: "coverage:95", label: "95% coverage" },
  { key: "coverage:80", label: "80% coverage" },
  { key: "coverage:50", label: "50% coverage" },
];
const LOSSES = ["squared", "absolute", "pinball", "winkler", "qlike"];
const MAX_STEP = 30;

function coverageBadge(coverage, level) {
  if (coverage === null || coverage === undefined) return <span>—</span>;
  const off = Math.abs(coverage * 100 - Number(level));
  const kind = off <= 5 ? "ok" : off <= 15 ? "warn" : "bad";
  return (
    <span className={`badge ${kind}`} title={`nominal ${level}%`}>
      {pct(coverage, 0)}
    </span>
  );
}

function metricOf(row, key) {
  if (key.startsWith("coverage:")) {
    const v = row.levels?.[key.slice(9)];
    return v === null || v === undefined ? null : v * 100;
  }
  const v = row[key];
  if (v === null || v === undefined) return null;
  return key === "direction_hit_rate" ? v * 100 : v;
}

/**
 * Accuracy of the selected models on the ticker: metrics by horizon step, a rolling
 * metric over target dates, and the Diebold–Mariano comparison on common origins.
 */
export default function AccuracyTracker({ ticker, models, refresh, defaultStep = 1 }) {
  const modelParam = models.join(",");
  const accuracy = useResource(
    (signal) =>
      models.length
        ? get("/api/v1/predictions/accuracy", { ticker, model: modelParam }, { signal }).then((r) => r.data)
        : Promise.resolve({ groups: [], rolling: [], window: null }),
    [ticker, modelParam, refresh],
  );
  const groups = accuracy.data?.groups || [];
  const levels = useMemo(() => {
    const all = new Set();
    groups.forEach((g) => Object.keys(g.levels).forEach((l) => all.add(l)));
    return [...all].sort((a, b) => Number(a) - Number(b));
  }, [groups]);
  const widest = levels[levels.length - 1];

  return (
    <>
      <section className="panel" aria-labelledby="accuracy-title">
        <h2 id="accuracy-title">Accuracy by horizon</h2>
        <p className="hint">
          Scored forecasts of {models.join(", ") || "no model"} on {ticker}: each step k is the k-th bar after the
          cutoff. MASE is against the no-change forecast on the same rows; coverage is marked against its nominal
          level.
        </p>
        <Problem error={accuracy.error} onReload={accuracy.reload} />
        {accuracy.loading && !accuracy.data && <p role="status">Loading accuracy…</p>}
        {accuracy.data && groups.length === 0 && (
          <p className="hint" data-testid="no-accuracy">
            No scored forecasts yet. A backtest over history is scored as soon as it is made.
          </p>
        )}
        {groups.length > 0 && (
          <div className="scroll tall" tabIndex={0} role="region" aria-label="Accuracy by horizon, scrollable">
            <table data-testid="accuracy-table" className="dense">
              <caption className="visually-hidden">Accuracy per model and horizon step</caption>
              <thead>
                <tr>
                  <th scope="col">Model</th>
                  <th scope="col" className="num">Step</th>
                  <th scope="col" className="num">n</th>
                  <th scope="col" className="num">MAE</th>
                  <th scope="col" className="num">RMSE</th>
                  <th scope="col" className="num">MAPE %</th>
                  <th scope="col" className="num">MASE</th>
                  <th scope="col" className="num">Hit rate</th>
                  {levels.map((l) => (
                    <th key={l} scope="col" className="num">
                      {l}% cov.
                    </th>
                  ))}
                  {widest && <th scope="col" className="num">{widest}% width</th>}
                  {widest && <th scope="col" className="num">{widest}% Winkler</th>}
                  <th scope="col" className="num">Pinball</th>
                  <th scope="col" className="num">QLIKE</th>
                </tr>
              </thead>
              <tbody>
                {groups.map((g) => (
                  <tr key={`${g.model}/${g.step}`} data-model={g.model} data-step={g.step}>
                    <td>
                      <span className="legend-swatch" style={{ background: colourOf(models, g.model) }} aria-hidden="true" />
                      {g.model}
                    </td>
                    <td className="num">{g.step}</td>
                    <td className="num">{g.n}</td>
                    <td className="num">{num(g.mae)}</td>
                    <td className="num">{num(g.rmse)}</td>
                    <td className="num">{num(g.mape, 3)}</td>
                    <td className="num">{num(g.mase, 3)}</td>
                    <td className="num">{pct(g.direction_hit_rate)}</td>
                    {levels.map((l) => (
                      <td key={l} className="num">
                        {coverageBadge(g.levels[l]?.coverage, l)}
                      </td>
                    ))}
                    {widest && <td className="num">{num(g.levels[widest]?.mean_width)}</td>}
                    {widest && <td className="num">{num(g.levels[widest]?.winkler)}</td>}
                    <td className="num">{num(g.pinball)}</td>
                    <td className="num">{num(g.qlike, 3)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <RollingAccuracy ticker={ticker} models={models} refresh={refresh} defaultStep={defaultStep} />
      <Comparison ticker={ticker} models={models} refresh={refresh} defaultStep={defaultStep} />
    </>
  );
}

function StepSelect({ id, value, onChange, label = "Step" }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(Number(e.target.value))}>
        {Array.from({ length: MAX_STEP }, (_, i) => (
          <option key={i + 1} value={i + 1}>
            {i + 1}
          </option>
        ))}
      </select>
    </div>
  );
}

function RollingAccuracy({ ticker, models, refresh, defaultStep }) {
  const [step, setStep] = useState(null);
  const [rollWindow, setRollWindow] = useState("20");
  const [metric, setMetric] = useState("mae");
  const chosenStep = step ?? defaultStep;
  const modelParam = models.join(",");
  const rolling = useResource(
    (signal) =>
      models.length
        ? get(
            "/api/v1/predictions/accuracy",
            { ticker, model: modelParam, horizon: chosenStep, window: rollWindow },
            { signal },
          ).then((r) => r.data)
        : Promise.resolve({ groups: [], rolling: [], window: null }),
    [ticker, modelParam, chosenStep, rollWindow, refresh],
  );
  const rows = rolling.data?.rolling || [];
  const metricLabel = ROLLING_METRICS.find((m) => m.key === metric)?.label || metric;

  const { data, series, summary } = useMemo(() => {
    const present = [...new Set(rows.map((r) => r.model))];
    const dates = [...new Set(rows.map((r) => r.target_date))].sort();
    const index = new Map(dates.map((d, i) => [d, i]));
    const columns = present.map(() => dates.map(() => null));
    const summary = present.map((model) => ({ model, n: 0, last: null, lastDate: null, min: null, max: null }));
    rows.forEach((r) => {
      const m = present.indexOf(r.model);
      const v = metricOf(r, metric);
      columns[m][index.get(r.target_date)] = v;
      const s = summary[m];
      s.n += 1;
      if (v !== null) {
        s.last = v;
        s.lastDate = r.target_date;
        s.min = s.min === null ? v : Math.min(s.min, v);
        s.max = s.max === null ? v : Math.max(s.max, v);
      }
    });
    return {
      data: [dates.map(seconds), ...columns],
      series: present.map((model) => ({ label: model, stroke: colourOf(models, model), width: 1.5 })),
      summary,
    };
  }, [rows, metric, models]);

  return (
    <section className="panel" aria-labelledby="rolling-title">
      <h2 id="rolling-title">Rolling accuracy over time</h2>
      <div className="toolbar">
        <StepSelect id="rolling-step" value={chosenStep} onChange={setStep} />
        <div className="field">
          <label htmlFor="rolling-window">Window (scored rows)</label>
          <input
            id="rolling-window"
            type="number"
            min="1"
            inputMode="numeric"
            value={rollWindow}
            onChange={(e) => setRollWindow(e.target.value)}
            size={6}
          />
        </div>
        <div className="field">
          <label htmlFor="rolling-metric">Metric</label>
          <select id="rolling-metric" value={metric} onChange={(e) => setMetric(e.target.value)}>
            {ROLLING_METRICS.map((m) => (
              <option key={m.key} value={m.key}>
                {m.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <Problem error={rolling.error} onReload={rolling.reload} />
      {rows.length > 0 ? (
        <div className="row">
          <div className="grow" data-testid="rolling" data-series={series.length}>
            <Chart
              label={`Rolling ${metricLabel} at step ${chosenStep} over ${rollWindow} scored rows, by target date`}
              data={data}
              series={series}
              height={220}
              yLabel={metricLabel}
              testId="rolling-chart"
            />
          </div>
          <div className="pred-side">
            <table data-testid="rolling-numbers">
              <caption>
                Rolling {metricLabel}, step {chosenStep}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Model</th>
                  <th scope="col" className="num">Points</th>
                  <th scope="col">Last date</th>
                  <th scope="col" className="num">Last</th>
                  <th scope="col" className="num">Min</th>
                  <th scope="col" className="num">Max</th>
                </tr>
              </thead>
              <tbody>
                {summary.map((s) => (
                  <tr key={s.model}>
                    <td>{s.model}</td>
                    <td className="num">{s.n}</td>
                    <td>{s.lastDate || "—"}</td>
                    <td className="num">{num(s.last)}</td>
                    <td className="num">{num(s.min)}</td>
                    <td className="num">{num(s.max)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      ) : (
        rolling.data && <p className="hint">No scored forecasts at step {chosenStep} yet.</p>
      )}
    </section>
  );
}

function Comparison({ ticker, models, refresh, defaultStep }) {
  const [step, setStep] = useState(null);
  const [loss, setLoss] = useState("squared");
  const [baseline, setBaseline] = useState("random_walk");
  const chosenStep = step ?? defaultStep;
  const others = models.filter((m) => m !== baseline);
  const compare = useResource(
    (signal) =>
      others.length
        ? get(
            "/api/v1/predictions/compare",
            { ticker, models: others.join(","), horizon: chosenStep, loss, baseline },
            { signal },
          ).then((r) => r.data)
        : Promise.resolve(null),
    [ticker, others.join(","), chosenStep, loss, baseline, refresh],
  );
  const c = compare.data;
  const tooFew = compare.error?.status === 422 && compare.error.problem?.needed !== undefined;
  const baselines = [...new Set(["random_walk", ...models])];

  return (
    <section className="panel" aria-labelledby="compare-title">
      <h2 id="compare-title">Model comparison (Diebold–Mariano)</h2>
      <div className="toolbar">
        <StepSelect id="compare-step" value={chosenStep} onChange={setStep} />
        <div className="field">
          <label htmlFor="compare-loss">Loss</label>
          <select id="compare-loss" value={loss} onChange={(e) => setLoss(e.target.value)}>
            {LOSSES.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="compare-baseline">Baseline</label>
          <select id="compare-baseline" value={baseline} onChange={(e) => setBaseline(e.target.value)}>
            {baselines.map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </div>
      </div>
      {others.length === 0 && <p className="hint">Select a model other than the baseline to compare.</p>}
      {tooFew ? (
        // a state of the log, not a mistake: the API's 422 says how many origins there are
        <div className="pred-notice" role="status" data-testid="compare-too-few" data-status={compare.error.status}>
          <p>
            <strong>Nothing to compare yet.</strong> {compare.error.problem.detail}.
          </p>
          <p className="hint">
            Backtest the selected models together with the baseline ({baseline}; tick it under Models) over the same
            dates, with a horizon of at least {chosenStep}.
          </p>
        </div>
      ) : (
        <Problem error={compare.error} onReload={compare.reload} />
      )}
      {c && !compare.error && (
        <div data-testid="comparison">
          <p className="hint">
            {c.origins} common origins from {c.first_origin} to {c.last_origin}, step {c.horizon}, {c.loss} loss
            {c.level ? ` at ${c.level}%` : ""}. Negative DM statistics mean the model's loss is smaller than the
            baseline's ({c.baseline}).
          </p>
          <div className="pred-compare">
            <div>
              <table data-testid="ranking" className="dense">
                <caption>Ranking by mean loss, each against {c.baseline}</caption>
                <thead>
                  <tr>
                    <th scope="col" className="num">Rank</th>
                    <th scope="col">Model</th>
                    <th scope="col" className="num">Mean loss</th>
                    <th scope="col" className="num">DM statistic</th>
                    <th scope="col" className="num">p (two-sided)</th>
                    <th scope="col" className="num">p (model better)</th>
                    <th scope="col" className="num">n</th>
                    <th scope="col">Variance</th>
                  </tr>
                </thead>
                <tbody>
                  {c.ranking.map((r) => {
                    const t = r.versus_baseline;
                    return (
                      <tr key={r.model} className={r.best ? "selected" : undefined} data-model={r.model}>
                        <td className="num">{r.rank}</td>
                        <td>
                          {r.model} {r.best && <span className="badge ok">best</span>}
                          {r.model === c.baseline && <span className="badge">baseline</span>}
                        </td>
                        <td className="num">{num(r.mean_loss, 3)}</td>
                        <td className="num">{t ? num(t.statistic, 3) : "—"}</td>
                        <td className="num">{t ? num(t.p_value, 3) : "—"}</td>
                        <td className="num">{t ? num(t.p_value_first_better, 3) : "—"}</td>
                        <td className="num">{t ? t.n : "—"}</td>
                        <td>{t ? t.variance_method : "—"}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
            <div>
              <table data-testid="pairwise" className="dense">
                <caption>Pairwise Diebold–Mariano tests</caption>
                <thead>
                  <tr>
                    <th scope="col">First</th>
                    <th scope="col">Second</th>
                    <th scope="col" className="num">Mean diff.</th>
                    <th scope="col" className="num">DM statistic</th>
                    <th scope="col" className="num">p (two-sided)</th>
                    <th scope="col" className="num">p (first better)</th>
                  </tr>
                </thead>
                <tbody>
                  {c.pairwise.map((p) => (
                    <tr key={`${p.model_1}/${p.model_2}`}>
                      <td>{p.model_1}</td>
                      <td>{p.model_2}</td>
                      <td className="num">{num(p.test.mean_difference, 3)}</td>
                      <td className="num">{num(p.test.statistic, 3)}</td>
                      <td className="num">
                        {num(p.test.p_value, 3)}{" "}
                        {p.test.p_value !== null && p.test.p_value < 0.05 && <span className="badge warn">p&lt;0.05</span>}
                      </td>
                      <td className="num">{num(p.test.p_value_first_better, 3)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </div>
        </div>
      )}
    </section>
  );
}
