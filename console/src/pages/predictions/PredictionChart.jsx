import { useMemo } from "react";
import Chart from "../../components/Chart.jsx";
import { alpha, colourOf, levelKeys, num, seconds } from "./format.js";

const BAND_ALPHA = [0.1, 0.16, 0.24, 0.3, 0.36];

/** Aligns named columns of {date → value} maps on the union of their dates. */
function align(columns, extraDates = []) {
  const dates = new Set(extraDates);
  columns.forEach((c) => c.values.forEach((_, d) => dates.add(d)));
  const xs = [...dates].sort();
  return [xs.map(seconds), ...columns.map((c) => xs.map((d) => (c.values.has(d) ? c.values.get(d) : null)))];
}

/**
 * The forecast chart: actual closes, each model's median path from its cutoff, and the
 * focused model's bands (widest first, nested), with the numbers beside it.
 */
export default function PredictionChart({ dashboard, models, focus, onFocus }) {
  const forecasts = dashboard.models;
  const focused = forecasts.find((f) => f.model === focus) || forecasts[0] || null;

  const { data, series, bands, bandCount } = useMemo(() => {
    const columns = [{ values: new Map(dashboard.actuals.map((a) => [a.date, a.close])) }];
    const series = [{ label: `${dashboard.ticker} close`, stroke: "#1f2933", width: 1.5 }];
    for (const f of forecasts) {
      const p = f.prediction;
      const colour = colourOf(models, f.model);
      const median = new Map([[p.cutoff, p.last_close]]);
      p.steps.forEach((s) => median.set(s.date, s.median));
      columns.push({ values: median });
      series.push({ label: `${f.model} median`, stroke: colour, width: 2, dash: [6, 3] });
    }
    const bands = [];
    let bandCount = 0;
    if (focused) {
      const p = focused.prediction;
      const colour = colourOf(models, focused.model);
      levelKeys(p.steps[0]?.bands).forEach((level, i) => {
        const low = new Map([[p.cutoff, p.last_close]]);
        const high = new Map([[p.cutoff, p.last_close]]);
        p.steps.forEach((s) => {
          low.set(s.date, s.bands[level].lower);
          high.set(s.date, s.bands[level].upper);
        });
        columns.push({ values: high }, { values: low });
        series.push(
          { label: `${focused.model} ${level}% high`, stroke: alpha(colour, 0.55), width: 1 },
          { label: `${focused.model} ${level}% low`, stroke: alpha(colour, 0.55), width: 1 },
        );
        // uPlot series indices count x as 0
        bands.push({ series: [series.length - 1, series.length], fill: alpha(colour, BAND_ALPHA[i] ?? 0.2) });
        bandCount += 1;
      });
    }
    return { data: align(columns), series, bands, bandCount };
  }, [dashboard, forecasts, focused, models]);

  const p = focused?.prediction;
  const scores = new Map((p?.scores || []).map((sc) => [sc.step, sc]));
  const levels = levelKeys(p?.steps[0]?.bands); // widest first: 95% low … median … 95% high
  return (
    <section className="panel" aria-labelledby="forecast-title">
      <div className="pred-head">
        <h2 id="forecast-title">Forecast of {dashboard.ticker}</h2>
        {forecasts.length > 0 && (
          <div className="field inline">
            <label htmlFor="focus-model">Bands and numbers of</label>
            <select id="focus-model" value={focused?.model || ""} onChange={(e) => onFocus(e.target.value)}>
              {forecasts.map((f) => (
                <option key={f.model} value={f.model}>
                  {f.model}
                </option>
              ))}
            </select>
          </div>
        )}
      </div>
      <div className="row">
        <div
          className="grow"
          data-testid="forecast"
          data-models={forecasts.map((f) => f.model).join(",")}
          data-series={series.length}
          data-bands={bandCount}
          data-focus={focused?.model || ""}
        >
          <Chart
            label={`${dashboard.ticker}: actual closes${forecasts.length ? ` and forecasts of ${forecasts.map((f) => f.model).join(", ")}` : ""}${focused ? `, ${focused.model} bands ${levels.join("/")}%` : ""}`}
            data={data}
            series={series}
            bands={bands}
            height={320}
            yLabel="price"
            legend={false}
            testId="forecast-chart"
          />
          <ModelLegend forecasts={forecasts} models={models} ticker={dashboard.ticker} focused={focused} levels={levels} />
        </div>
        <div className="pred-side">
          {p ? (
            <div className="scroll" tabIndex={0} role="region" aria-label="Forecast numbers">
              <table data-testid="forecast-numbers">
                <caption>
                  {focused.model} from cutoff {p.cutoff} (last close {num(p.last_close)})
                </caption>
                <thead>
                  <tr>
                    <th scope="col" className="num">
                      Step
                    </th>
                    <th scope="col">Date</th>
                    {levels.map((l) => (
                      <th key={`${l}l`} scope="col" className="num">
                        {l}% low
                      </th>
                    ))}
                    <th scope="col" className="num">
                      Median
                    </th>
                    {[...levels].reverse().map((l) => (
                      <th key={`${l}h`} scope="col" className="num">
                        {l}% high
                      </th>
                    ))}
                    {scores.size > 0 && (
                      <th scope="col" className="num">
                        Actual
                      </th>
                    )}
                  </tr>
                </thead>
                <tbody>
                  {p.steps.map((s) => (
                    <tr key={s.step}>
                      <td className="num">{s.step}</td>
                      <td>{s.date}</td>
                      {levels.map((l) => (
                        <td key={`${l}l`} className="num">
                          {num(s.bands[l].lower)}
                        </td>
                      ))}
                      <td className="num median">{num(s.median)}</td>
                      {[...levels].reverse().map((l) => (
                        <td key={`${l}h`} className="num">
                          {num(s.bands[l].upper)}
                        </td>
                      ))}
                      {scores.size > 0 && <ActualCell score={scores.get(s.step)} levels={levels} />}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p className="hint" data-testid="no-forecast">
              No prediction of the selected models for {dashboard.ticker} yet. Run a forecast below.
            </p>
          )}
        </div>
      </div>
    </section>
  );
}

/** A scored step's actual close, marked with the narrowest band that held it. */
function ActualCell({ score, levels }) {
  if (!score) return <td className="num">—</td>;
  const inside = [...levels].reverse().find((l) => score.covered[l]);
  return (
    <td className="num" title={`close of ${score.target_date}${inside ? `, inside the ${inside}% band` : ", outside every band"}`}>
      {num(score.actual)}{" "}
      <span className={`badge ${inside ? "ok" : "bad"}`}>{inside ? `${inside}%` : "out"}</span>
    </td>
  );
}

function ModelLegend({ forecasts, models, ticker, focused, levels }) {
  return (
    <ul className="pred-legend" aria-label="Chart legend and the predictions in force">
      <li>
        <span className="legend-swatch" style={{ background: "#1f2933" }} aria-hidden="true" />
        {ticker} close; dashed: each model's median path from its cutoff
        {focused ? `; shaded: ${focused.model}'s ${[...levels].reverse().join("/")}% bands` : ""}
      </li>
      {forecasts.map((f) => {
        const p = f.prediction;
        const m = p.method || {};
        return (
          <li key={f.model}>
            <span className="legend-swatch" style={{ background: colourOf(models, f.model) }} aria-hidden="true" />
            <strong>{f.model}</strong> cutoff {p.cutoff}, {p.horizon} steps, {m.distribution || "?"}
            {m.calibration ? `, ${m.calibration.replaceAll("_", " ")} (${m.scores ?? 0} scores)` : ""}
            <span className="hint"> · made {p.made_at.slice(0, 19).replace("T", " ")}</span>
          </li>
        );
      })}
    </ul>
  );
}

/** Each model's annualised volatility forecast over the realised volatility (the overlay). */
export function VolatilityChart({ dashboard, models }) {
  const forecasts = dashboard.models;
  const { data, series } = useMemo(() => {
    const rv = dashboard.realised_volatility;
    const pick = (key) => new Map(rv.filter((r) => r[key] !== null).map((r) => [r.date, r[key] * 100]));
    const columns = [{ values: pick("close_to_close") }, { values: pick("parkinson") }, { values: pick("garman_klass") }];
    const series = [
      { label: "realised close-to-close", stroke: "#1f2933", width: 1.5 },
      { label: "realised Parkinson", stroke: "#52606d", width: 1, dash: [2, 2] },
      { label: "realised Garman–Klass", stroke: "#7b8794", width: 1, dash: [8, 3] },
    ];
    for (const f of forecasts) {
      columns.push({ values: new Map(f.volatility.map((v) => [v.date, v.volatility * 100])) });
      series.push({
        label: `${f.model} forecast`,
        stroke: colourOf(models, f.model),
        width: 2,
        points: { show: true, size: 4 },
      });
    }
    return { data: align(columns), series };
  }, [dashboard, forecasts, models]);

  const rv = dashboard.realised_volatility;
  const lastRv = rv.length ? rv[rv.length - 1] : null;
  const steps = Math.max(0, ...forecasts.map((f) => f.volatility.length));
  return (
    <section className="panel" aria-labelledby="vol-title">
      <h2 id="vol-title">Volatility: forecast over realised</h2>
      <div className="row">
        <div className="grow" data-testid="volatility" data-series={series.length}>
          <Chart
            label={`${dashboard.ticker}: annualised volatility, realised over ${dashboard.realised_window} days and forecast`}
            data={data}
            series={series}
            height={220}
            yLabel="annualised %"
            testId="volatility-chart"
          />
        </div>
        <div className="pred-side">
          <div className="scroll short" tabIndex={0} role="region" aria-label="Volatility numbers">
            <table data-testid="volatility-numbers">
              <caption>
                Annualised volatility, %; realised: {dashboard.realised_window}-day close-to-close / Parkinson / Garman–Klass
              </caption>
              <thead>
                <tr>
                  <th scope="col">Step</th>
                  {forecasts.map((f) => (
                    <th key={f.model} scope="col" className="num">
                      {f.model}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {lastRv && (
                  <tr>
                    <th scope="row">
                      realised {lastRv.date}
                    </th>
                    <td className="num" colSpan={Math.max(1, forecasts.length)}>
                      {num(lastRv.close_to_close * 100, 1)} / {num(lastRv.parkinson * 100, 1)} /{" "}
                      {num(lastRv.garman_klass * 100, 1)}
                    </td>
                  </tr>
                )}
                {Array.from({ length: steps }, (_, i) => (
                  <tr key={i}>
                    <th scope="row">{i + 1}</th>
                    {forecasts.map((f) => (
                      <td key={f.model} className="num">
                        {num(f.volatility[i] ? f.volatility[i].volatility * 100 : null, 1)}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      </div>
    </section>
  );
}


