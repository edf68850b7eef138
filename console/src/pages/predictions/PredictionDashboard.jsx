import { useEffect, useMemo, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { all, get, post } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import AccuracyTracker from "./AccuracyTracker.jsx";
import PredictionChart, { VolatilityChart } from "./PredictionChart.jsx";
import { colourOf, num } from "./format.js";
import { when } from "../../format.js";
import "./predictions.css";

const DEFAULT_MODELS = ["random_walk", "ewma"];
const DONE = new Set(["completed", "failed"]);
const POLL_MS = 400;

/** "50, 80 95" as numbers; a token that is no number is sent as it is, for the API to name. */
function parseLevels(text) {
  const tokens = text.split(/[\s,;]+/).filter(Boolean);
  if (!tokens.length) return undefined;
  return tokens.map((t) => (Number.isFinite(Number(t)) ? Number(t) : t));
}

function intOrText(text) {
  if (text === "") return undefined;
  const n = Number(text);
  return Number.isInteger(n) ? n : text;
}

function daysBefore(iso, days) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - days);
  return d.toISOString().slice(0, 10);
}

function statusBadge(status) {
  const kind = { completed: "ok", failed: "bad", running: "warn" }[status] || "";
  return <span className={`badge ${kind}`}>{status}</span>;
}

/** The prediction dashboard: pick a ticker and models; forecast, backtest, accuracy, comparison. */
export default function PredictionDashboard() {
  const [params, setParams] = useSearchParams();
  const [refresh, setRefresh] = useState(0);
  const [focus, setFocus] = useState(null);
  const [range, setRange] = useState({ start: "", end: "", as_of: "" });
  const [compareStep, setCompareStep] = useState(1);
  const [showRange, setShowRange] = useState(false);

  const tickers = useResource((signal) => all("/api/v1/market-data", {}, { signal }), []);
  const forecasters = useResource(
    (signal) => get("/api/v1/predictions/forecasters", undefined, { signal }).then((r) => r.data),
    [],
  );

  // the ticker and models live in this page's state (a click shows at once) and are
  // mirrored into the address, so a link opens the same view
  const [chosenTicker, setTicker] = useState(() => params.get("ticker") || "");
  const [models, setModels] = useState(() => {
    const text = params.get("models");
    return text === null ? DEFAULT_MODELS : text.split(",").filter(Boolean);
  });
  const tickerList = tickers.data || [];
  const ticker = chosenTicker || tickerList[0]?.ticker || "";
  const summary = tickerList.find((t) => t.ticker === ticker);
  useEffect(() => {
    if (!ticker) return;
    // not once the user has left for another page (a navigation is a transition: this
    // page may still be mounted when its data arrives, and would take the address back)
    if (!window.location.hash.startsWith("#/predictions")) return;
    const next = new URLSearchParams({ ticker, models: models.join(",") });
    if (next.toString() !== params.toString()) setParams(next, { replace: true });
  }, [ticker, models]); // eslint-disable-line react-hooks/exhaustive-deps

  const choices = useMemo(() => {
    const f = forecasters.data;
    if (!f) return [];
    const builtins = f.builtins.map((b) => ({ key: b.name, label: b.name, title: b.description }));
    const registry = f.registry.flatMap((r) =>
      r.versions.slice(-3).map((v) => ({
        key: `${r.name}@${v}`,
        label: `${r.name}@${v}`,
        title: `registry model ${r.name}, version ${v}${r.production_version === v ? " (production)" : ""}`,
      })),
    );
    return [...builtins, ...registry];
  }, [forecasters.data]);

  function toggleModel(key, on) {
    setModels((current) => {
      const next = on ? [...current.filter((m) => m !== key), key] : current.filter((m) => m !== key);
      const ordered = choices.map((c) => c.key).filter((k) => next.includes(k));
      return [...ordered, ...next.filter((k) => !ordered.includes(k))];
    });
  }

  const dashboard = useResource(
    (signal) =>
      ticker
        ? get(
            `/api/v1/predictions/${encodeURIComponent(ticker)}`,
            { models: models.join(",") || undefined, ...range },
            { signal },
          ).then((r) => r.data)
        : Promise.resolve(null),
    [ticker, models.join(","), range.start, range.end, range.as_of, refresh],
  );
  const shown = dashboard.data && dashboard.data.ticker === ticker.toUpperCase() ? dashboard.data : null;

  function jobDone(job) {
    setRefresh((r) => r + 1);
    if (job.status === "completed" && job.kind === "run") setFocus(job.models[0]?.key || null);
    if (job.kind === "backtest") setCompareStep(job.horizon);
  }

  function jobStarted(job) {
    const keys = job.models.map((m) => m.key);
    setModels((current) => (keys.every((k) => current.includes(k)) ? current : [...current, ...keys.filter((k) => !current.includes(k))]));
  }

  return (
    <div className="predictions">
      <div className="pred-title">
        <h1>Predictions</h1>
        <p className="hint">
          Forecasts with calibrated bands, their accuracy against what happened, and model comparisons — from{" "}
          <code>/api/v1/predictions</code>.
        </p>
      </div>

      <section className="panel pred-select" aria-label="What to show">
        <div className="toolbar">
          <div className="field">
            <label htmlFor="pred-ticker">Ticker</label>
            <select
              id="pred-ticker"
              value={ticker}
              onChange={(e) => {
                setTicker(e.target.value);
                setFocus(null);
              }}
            >
              {tickerList.map((t) => (
                <option key={t.ticker} value={t.ticker}>
                  {t.ticker}
                </option>
              ))}
            </select>
          </div>
          <fieldset className="field pred-models">
            <legend>Models</legend>
            {choices.map((c) => (
              <label key={c.key} title={c.title} className="check">
                <input
                  type="checkbox"
                  checked={models.includes(c.key)}
                  onChange={(e) => toggleModel(c.key, e.target.checked)}
                />
                <span
                  className={`legend-swatch${models.includes(c.key) ? "" : " off"}`}
                  style={models.includes(c.key) ? { background: colourOf(models, c.key) } : undefined}
                  aria-hidden="true"
                />
                {c.label}
              </label>
            ))}
          </fieldset>
        </div>
        <div className="pred-range">
          <button
            type="button"
            className="quiet small"
            aria-expanded={showRange}
            aria-controls="pred-range-fields"
            onClick={() => setShowRange(!showRange)}
          >
            {showRange ? "Hide dates" : "Dates…"}
          </button>{" "}
          <span className="hint">
            {range.start || range.end || range.as_of
              ? `Showing ${range.start || "…"} to ${range.end || "…"}${range.as_of ? `, forecasts as of ${range.as_of}` : ""}`
              : "Showing the six months before the last bar and the latest forecast of each model"}
          </span>
        </div>
        {showRange && (
          <div className="toolbar" id="pred-range-fields">
            <div className="field">
              <label htmlFor="pred-start">From</label>
              <input id="pred-start" type="date" value={range.start} onChange={(e) => setRange({ ...range, start: e.target.value })} />
            </div>
            <div className="field">
              <label htmlFor="pred-end">To</label>
              <input id="pred-end" type="date" value={range.end} onChange={(e) => setRange({ ...range, end: e.target.value })} />
            </div>
            <div className="field">
              <label htmlFor="pred-asof">Forecasts as of</label>
              <input id="pred-asof" type="date" value={range.as_of} onChange={(e) => setRange({ ...range, as_of: e.target.value })} />
            </div>
            <div className="field">
              <button type="button" className="quiet" onClick={() => setRange({ start: "", end: "", as_of: "" })}>
                Latest
              </button>
            </div>
          </div>
        )}
        {summary && (
          <p className="hint" data-testid="ticker-summary">
            {summary.ticker}: {summary.row_count.toLocaleString("en-US")} daily bars from {summary.first_date} to{" "}
            {summary.last_date}.
          </p>
        )}
        <Problem error={tickers.error} onReload={tickers.reload} />
        <Problem error={forecasters.error} onReload={forecasters.reload} />
        <Problem error={dashboard.error} onReload={dashboard.reload} />
      </section>

      {tickers.data && tickerList.length === 0 && (
        <p className="panel hint" data-testid="no-market-data">
          No market data yet: import daily bars (<code>POST /api/v1/market-data/&#123;ticker&#125;/bars</code> or{" "}
          <code>aimm market-data import</code>) to forecast them.
        </p>
      )}

      {shown ? (
        <PredictionChart dashboard={shown} models={models} focus={focus} onFocus={setFocus} />
      ) : (
        !dashboard.error &&
        ticker && (
          <p role="status" className="panel">
            Loading the dashboard…
          </p>
        )
      )}

      <Jobs
        ticker={ticker}
        summary={summary}
        models={models}
        choices={choices}
        refresh={refresh}
        onStarted={jobStarted}
        onDone={jobDone}
      />

      {shown && <VolatilityChart dashboard={shown} models={models} />}

      {ticker && <AccuracyTracker ticker={ticker} models={models} refresh={refresh} defaultStep={compareStep} />}
    </div>
  );
}

/** The forms that queue a forecast or a backtest, the job being watched, and recent jobs. */
function Jobs({ ticker, summary, models, choices, refresh, onStarted, onDone }) {
  const [runForm, setRunForm] = useState({ model: "", horizon: "10", levels: "50, 80, 95", as_of: "" });
  const [btForm, setBtForm] = useState({ horizon: "5", start: "", end: "", step: "5", levels: "50, 80, 95" });
  const [runError, setRunError] = useState(null);
  const [btError, setBtError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [watched, setWatched] = useState([]); // jobs started here, polled until done
  const [pollError, setPollError] = useState(null);

  // a backtest over the last six months of the ticker by default
  useEffect(() => {
    if (!summary) return;
    setBtForm((f) => ({ ...f, start: daysBefore(summary.last_date, 183), end: summary.last_date }));
  }, [summary?.ticker, summary?.last_date]); // eslint-disable-line react-hooks/exhaustive-deps

  const runModel = runForm.model || models[0] || choices[0]?.key || "";

  const jobs = useResource(
    (signal) =>
      // the ticker's newest jobs: one page, newest first
      ticker
        ? get("/api/v1/predictions/jobs", { ticker, order: "newest", limit: 50 }, { signal }).then((r) => r.data.items)
        : Promise.resolve([]),
    [ticker, refresh],
  );

  // A job is watched until it is done and its forecasts whose targets exist are scored
  // (the scorer follows the job: its scores arrive just after the job completes).
  const pending = watched.filter((j) => !j.settled);
  useEffect(() => {
    if (!pending.length) return undefined;
    let stopped = false;
    const timer = setTimeout(async () => {
      try {
        const fresh = await Promise.all(pending.map((j) => follow(j, j.lastDate)));
        if (stopped) return;
        setPollError(null);
        setWatched((list) => list.map((j) => fresh.find((f) => f.id === j.id) || j));
        fresh.filter((f) => f.settled).forEach(onDone);
      } catch (error) {
        if (!stopped) {
          setPollError(error);
          setWatched((list) => [...list]); // poll again
        }
      }
    }, pollError ? 2000 : POLL_MS);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [watched]); // eslint-disable-line react-hooks/exhaustive-deps

  async function submit(event, kind) {
    event.preventDefault();
    const setError = kind === "run" ? setRunError : setBtError;
    setError(null);
    setBusy(true);
    try {
      const body =
        kind === "run"
          ? {
              ticker,
              model: runModel,
              horizon: intOrText(runForm.horizon),
              levels: parseLevels(runForm.levels),
              as_of: runForm.as_of || undefined,
            }
          : {
              ticker,
              models,
              horizon: intOrText(btForm.horizon),
              levels: parseLevels(btForm.levels),
              start: btForm.start,
              end: btForm.end,
              step: intOrText(btForm.step),
            };
      const response = await post(`/api/v1/predictions/${kind === "run" ? "run" : "backtest"}`, body);
      const job = {
        ...response.data,
        made: 0,
        total: response.data.cutoffs * response.data.models.length,
        lastDate: summary?.last_date,
      };
      setWatched((list) => [job, ...list.filter((j) => j.id !== job.id)].slice(0, 5));
      onStarted(job);
    } catch (error) {
      setError(error);
    } finally {
      setBusy(false);
    }
  }

  const recent = (jobs.data || []).slice(0, 8);
  const current = watched[0];

  return (
    <section className="panel" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Run a forecast or a backtest</h2>
      <Needs may="write" what="run forecasts or backtests: that needs the operator or admin role">
        <div className="row">
          <form className="pred-form" onSubmit={(e) => submit(e, "run")} aria-labelledby="run-title">
            <h3 id="run-title">Forecast at one cutoff</h3>
            <div className="toolbar">
              <div className="field">
                <label htmlFor="run-model">Model</label>
                <select id="run-model" value={runModel} onChange={(e) => setRunForm({ ...runForm, model: e.target.value })}>
                  {choices.map((c) => (
                    <option key={c.key} value={c.key}>
                      {c.label}
                    </option>
                  ))}
                </select>
              </div>
              <div className="field">
                <label htmlFor="run-horizon">Horizon (bars, 1–30)</label>
                <input
                  id="run-horizon"
                  type="number"
                  inputMode="numeric"
                  size={5}
                  value={runForm.horizon}
                  onChange={(e) => setRunForm({ ...runForm, horizon: e.target.value })}
                />
              </div>
              <div className="field">
                <label htmlFor="run-levels">Levels %</label>
                <input
                  id="run-levels"
                  size={10}
                  value={runForm.levels}
                  onChange={(e) => setRunForm({ ...runForm, levels: e.target.value })}
                />
              </div>
              <div className="field">
                <label htmlFor="run-asof">Cutoff on or before</label>
                <input
                  id="run-asof"
                  type="date"
                  value={runForm.as_of}
                  onChange={(e) => setRunForm({ ...runForm, as_of: e.target.value })}
                />
              </div>
              <div className="field">
                <button type="submit" disabled={busy || !ticker}>
                  Run forecast
                </button>
              </div>
            </div>
            <p className="hint">Empty cutoff: the last bar of {ticker || "the ticker"}. GARCH fits take longer than the others.</p>
            <Problem error={runError} onDismiss={() => setRunError(null)} />
          </form>
          <form className="pred-form" onSubmit={(e) => submit(e, "backtest")} aria-labelledby="bt-title">
            <h3 id="bt-title">Backtest of the selected models</h3>
            <div className="toolbar">
              <div className="field">
                <label htmlFor="bt-start">From</label>
                <input id="bt-start" type="date" value={btForm.start} onChange={(e) => setBtForm({ ...btForm, start: e.target.value })} />
              </div>
              <div className="field">
                <label htmlFor="bt-end">To</label>
                <input id="bt-end" type="date" value={btForm.end} onChange={(e) => setBtForm({ ...btForm, end: e.target.value })} />
              </div>
              <div className="field">
                <label htmlFor="bt-step">Every (bars)</label>
                <input
                  id="bt-step"
                  type="number"
                  inputMode="numeric"
                  size={4}
                  value={btForm.step}
                  onChange={(e) => setBtForm({ ...btForm, step: e.target.value })}
                />
              </div>
              <div className="field">
                <label htmlFor="bt-horizon">Horizon (bars)</label>
                <input
                  id="bt-horizon"
                  type="number"
                  inputMode="numeric"
                  size={4}
                  value={btForm.horizon}
                  onChange={(e) => setBtForm({ ...btForm, horizon: e.target.value })}
                />
              </div>
              <div className="field">
                <label htmlFor="bt-levels">Levels %</label>
                <input id="bt-levels" size={10} value={btForm.levels} onChange={(e) => setBtForm({ ...btForm, levels: e.target.value })} />
              </div>
              <div className="field">
                <button type="submit" disabled={busy || !ticker}>
                  Run backtest
                </button>
              </div>
            </div>
            <p className="hint">
              Models: {models.join(", ") || "none selected"}. Each cutoff's forecasts are scored at once where the bars exist.
            </p>
            <Problem error={btError} onDismiss={() => setBtError(null)} />
          </form>
        </div>
      </Needs>

      {current && <JobStatus job={current} />}
      <Problem error={pollError} />

      <h3 id="recent-title">Recent jobs of {ticker}</h3>
      <Problem error={jobs.error} onReload={jobs.reload} />
      {recent.length ? (
        <table className="dense" aria-labelledby="recent-title" data-testid="jobs">
          <thead>
            <tr>
              <th scope="col">Requested</th>
              <th scope="col">Kind</th>
              <th scope="col">Models</th>
              <th scope="col" className="num">Horizon</th>
              <th scope="col">Cutoffs</th>
              <th scope="col">Status</th>
              <th scope="col" className="num">Made</th>
              <th scope="col" className="num">Seconds</th>
            </tr>
          </thead>
          <tbody>
            {recent.map((j) => (
              <tr key={j.id} data-job={j.id}>
                <td>{when(j.requested_at)}</td>
                <td>{j.kind}</td>
                <td>{j.models.map((m) => m.key).join(", ")}</td>
                <td className="num">{j.horizon}</td>
                <td>
                  {j.cutoffs === 1 ? j.first_cutoff : `${j.cutoffs}: ${j.first_cutoff} – ${j.last_cutoff}`}
                </td>
                <td>
                  {statusBadge(j.status)}
                  {j.reason && <span className="hint"> {j.reason}</span>}
                </td>
                <td className="num">
                  {j.made} / {j.total}
                </td>
                <td className="num">{num(j.seconds, 1)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        jobs.data && <p className="hint">No prediction jobs for {ticker} yet.</p>
      )}
    </section>
  );
}

const MAX_SCORED_READ = 5000; // predictions read to count a job's scores
const STALE_POLLS = 5; // scores unchanged this many polls: the rest have no bar yet

/** One poll of a watched job: its status, then (completed) how many of its steps are scored. */
async function follow(job, lastDate) {
  if (!DONE.has(job.status)) {
    const fresh = (await get(`/api/v1/predictions/jobs/${job.id}`)).data;
    return { ...job, ...fresh, settled: fresh.status === "failed" };
  }
  if (job.total > MAX_SCORED_READ) return { ...job, settled: true };
  const items = await all(`/api/v1/predictions/jobs/${job.id}/predictions`, { limit: 500 }, { max: MAX_SCORED_READ });
  let scored = 0;
  let expected = 0;
  for (const p of items) {
    scored += p.scored_steps;
    expected += p.steps.filter((s) => !lastDate || s.date <= lastDate).length;
  }
  const stale = job.scored === scored ? (job.stale || 0) + 1 : 0;
  return { ...job, scored, expected, stale, settled: scored >= expected || stale >= STALE_POLLS };
}

function JobStatus({ job }) {
  const label = job.kind === "run" ? "Forecast" : "Backtest";
  const total = job.total || 0;
  return (
    <div
      className="pred-job"
      data-testid="job-status"
      data-status={job.status}
      data-settled={job.settled ? "true" : "false"}
      data-job={job.id}
    >
      <div role="status">
        <strong>{label}</strong> of {job.models.map((m) => m.key).join(", ")} on {job.ticker}, {job.horizon} steps:{" "}
        {statusBadge(job.status)}{" "}
        <span>
          {job.made} of {total} predictions made
        </span>
        {job.seconds !== undefined && job.seconds !== null && <span className="hint"> in {num(job.seconds, 1)} s</span>}
        {job.expected > 0 && (
          <span>
            ; {job.scored} of {job.expected} steps with a close scored{job.settled ? "" : "…"}
          </span>
        )}
        {job.expected === 0 && <span>; no step has a close yet</span>}
        {job.reason && <span> — {job.reason}</span>}
      </div>
      <progress max={total || 1} value={job.made} aria-label={`${label} progress`} />
    </div>
  );
}
