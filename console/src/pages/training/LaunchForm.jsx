import { useEffect, useMemo, useState } from "react";
import { all, post } from "../../api.js";
import { Needs } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import { fieldErrors } from "./format.js";

// every field of TrainRequest.hyperparameters, with the API's defaults and bounds
const HYPERPARAMETERS = [
  { name: "learning_rate", label: "Learning rate", value: "0.001", hint: "1e-6 … 1", step: "any" },
  { name: "epochs", label: "Epochs", value: "50", hint: "1 … 1000" },
  { name: "batch_size", label: "Batch size", value: "64", hint: "1 … 4096" },
  { name: "hidden_units", label: "Hidden units", value: "64", hint: "1 … 1024" },
  { name: "layers", label: "Layers", value: "2", hint: "1 … 8" },
  { name: "weight_decay", label: "Weight decay", value: "0", hint: "0 … 1", step: "any" },
  { name: "optimizer", label: "Optimizer", value: "adam", choices: ["adam", "adamw", "sgd", "rmsprop"] },
  { name: "lr_schedule", label: "LR schedule", value: "constant", choices: ["constant", "cosine"] },
  { name: "seed", label: "Seed", value: "0", hint: "0 … 2³¹−1" },
];

// every field of TrainRequest.early_stopping (omitted: off), with the API's defaults
const EARLY_STOPPING = [
  { name: "monitor", label: "Monitor", value: "val_loss", choices: ["val_loss", "val_accuracy", "loss", "accuracy"] },
  { name: "mode", label: "Mode", value: "auto", choices: ["auto", "min", "max"], hint: "auto: max for accuracies" },
  { name: "patience", label: "Patience", value: "5", hint: "epochs, 0 … 1000" },
  { name: "min_delta", label: "Min. delta", value: "0", hint: "≥ 0", step: "any" },
  { name: "baseline", label: "Baseline", value: "", hint: "empty: none", step: "any" },
  { name: "start_from_epoch", label: "Start from epoch", value: "0", hint: "0 … 1000" },
];

const FEATURES = ["log_returns", "rolling_volatility", "range_volatility", "volume_change"];

function initial(defs) {
  return Object.fromEntries(defs.map((d) => [d.name, d.value]));
}

/** A number if the text is one, else the text (the API says what is wrong with it). */
function numberOf(text) {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : text;
}

/** One labelled input or select with its hint, or the API's message about it. */
function Field({ id, def, value, onChange, error, wide, span }) {
  const describedBy = error ? `${id}-error` : def.hint ? `${id}-hint` : undefined;
  const common = {
    id,
    value,
    onChange: (e) => onChange(def.name, e.target.value),
    "aria-invalid": error ? "true" : undefined,
    "aria-describedby": describedBy,
  };
  return (
    <div className={`field${wide ? " wide" : ""}${span ? " span2" : ""}${error ? " invalid" : ""}`}>
      <label htmlFor={id}>{def.label}</label>
      {def.choices ? (
        <select {...common}>
          {def.choices.map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
      ) : (
        <input {...common} type={def.type || "number"} step={def.step} placeholder={def.placeholder} inputMode={def.type ? undefined : "decimal"} />
      )}
      {error ? (
        <span className="field-error" id={`${id}-error`}>
          {error}
        </span>
      ) : def.hint ? (
        <span className="hint" id={`${id}-hint`}>
          {def.hint}
        </span>
      ) : null}
    </div>
  );
}

function DatasetSummary({ dataset }) {
  if (!dataset) return null;
  const tickers = dataset.tickers ?? dataset.spec?.tickers ?? [];
  const start = dataset.start ?? dataset.spec?.start;
  const end = dataset.end ?? dataset.spec?.end;
  return (
    <p className="hint dataset-summary" data-testid="dataset-summary">
      {tickers.join(", ")} {start} … {end} · {dataset.row_count} rows ({dataset.train_rows} train /{" "}
      {dataset.validation_rows} validation from {dataset.validation_start}) · target {dataset.target} ·{" "}
      {dataset.feature_columns.length} features
    </p>
  );
}

/** Registers a dataset from the market data in force (`POST /api/v1/ml/datasets`). */
function DatasetForm({ onCreated, onCancel }) {
  const tickers = useResource((signal) => all("/api/v1/market-data", {}, { signal }), []);
  const [form, setForm] = useState({
    name: "",
    tickers: [],
    start: "2016-01-01",
    end: "2018-12-31",
    target: "direction",
    features: FEATURES,
    lags: "5",
    window: "20",
    validation_fraction: "0.2",
    validation_start: "",
  });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const errors = fieldErrors(error);
  useEffect(() => {
    if (tickers.data?.length && !form.tickers.length) setForm((f) => ({ ...f, tickers: [tickers.data[tickers.data.length - 1].ticker] }));
  }, [tickers.data, form.tickers.length]);
  const set = (name, value) => setForm((f) => ({ ...f, [name]: value }));
  const toggle = (name, value) =>
    setForm((f) => ({ ...f, [name]: f[name].includes(value) ? f[name].filter((v) => v !== value) : [...f[name], value] }));

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      name: form.name.trim(),
      tickers: form.tickers,
      start: form.start,
      end: form.end,
      target: form.target,
      features: form.features,
      lags: numberOf(form.lags),
      window: numberOf(form.window),
      validation_fraction: numberOf(form.validation_fraction),
    };
    if (form.validation_start) body.validation_start = form.validation_start;
    try {
      const response = await post("/api/v1/ml/datasets", body);
      onCreated(response.data);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const f = (name, label, extra = {}) => (
    <Field
      id={`ds-${name}`}
      def={{ name, label, ...extra }}
      value={form[name]}
      onChange={set}
      error={errors[name]}
      wide={extra.wide}
    />
  );
  return (
    <form className="subform" onSubmit={submit} noValidate aria-labelledby="dataset-form-title">
      <h3 id="dataset-form-title">New dataset</h3>
      <p className="hint">
        Features and a next-day target computed from the market data in force (<code>aimm dev</code> loads daily SP500 and NASDAQ
        bars, 1999–2018). A few years make a small, fast dataset.
      </p>
      <div className="grid">
        {f("name", "Name", { type: "text", hint: "a-z 0-9 . _ - /", placeholder: "spx-2016-2018", wide: true })}
        <fieldset className={`field wide${errors.tickers ? " invalid" : ""}`} aria-describedby={errors.tickers ? "ds-tickers-error" : undefined}>
          <legend>Tickers</legend>
          <Problem error={tickers.error} onReload={tickers.reload} />
          <div className="checks">
            {(tickers.data || []).map((t) => (
              <label key={t.ticker} className="check">
                <input type="checkbox" checked={form.tickers.includes(t.ticker)} onChange={() => toggle("tickers", t.ticker)} />
                {t.ticker} <span className="hint">{t.first_date} … {t.last_date}</span>
              </label>
            ))}
            {tickers.data && !tickers.data.length && <span className="hint">No market data imported yet.</span>}
          </div>
          {errors.tickers && (
            <span className="field-error" id="ds-tickers-error">
              {errors.tickers}
            </span>
          )}
        </fieldset>
        {f("start", "Start", { type: "date" })}
        {f("end", "End", { type: "date" })}
        {f("target", "Target", { choices: ["direction", "log_return"], hint: "direction: classifier" })}
        {f("lags", "Lags", { hint: "1 … 20" })}
        {f("window", "Window", { hint: "days, 2 … 250" })}
        {f("validation_fraction", "Validation share", { hint: "0.05 … 0.5", step: "any" })}
        {f("validation_start", "Validation start", { type: "date", hint: "empty: by share" })}
        <fieldset className={`field wide${errors.features ? " invalid" : ""}`}>
          <legend>Features</legend>
          <div className="checks">
            {FEATURES.map((name) => (
              <label key={name} className="check">
                <input type="checkbox" checked={form.features.includes(name)} onChange={() => toggle("features", name)} />
                {name}
              </label>
            ))}
          </div>
          {errors.features && <span className="field-error">{errors.features}</span>}
        </fieldset>
      </div>
      <Problem error={error} onReload={() => setError(null)} />
      <div className="actions">
        <button type="submit" disabled={busy}>
          {busy ? "Registering…" : "Register dataset"}
        </button>
        <button type="button" className="quiet" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/**
 * Launches a training run (`POST /api/v1/ml/train`): a dataset (or a new one), the model
 * type, every hyperparameter and early-stopping setting with the API's defaults. The API
 * checks them; its refusal names the fields, shown beside each.
 */
export default function LaunchForm({ onLaunched }) {
  const datasets = useResource((signal) => all("/api/v1/ml/datasets", {}, { signal }), []);
  const [datasetId, setDatasetId] = useState("");
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState(null);
  const [modelType, setModelType] = useState("mlp_classifier");
  const [hp, setHp] = useState(() => initial(HYPERPARAMETERS));
  const [earlyOn, setEarlyOn] = useState(false);
  const [es, setEs] = useState(() => initial(EARLY_STOPPING));
  const [restoreBest, setRestoreBest] = useState(true);
  const [recordEvery, setRecordEvery] = useState("");
  const [modelName, setModelName] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const errors = fieldErrors(error);

  const list = useMemo(() => (datasets.data ? [...datasets.data].reverse() : []), [datasets.data]);
  useEffect(() => {
    if (!datasetId && list.length) setDatasetId(list[0].id);
  }, [list, datasetId]);
  const dataset = list.find((d) => d.id === datasetId) || (created?.id === datasetId ? created : null);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const hyperparameters = {};
    for (const d of HYPERPARAMETERS) if (hp[d.name] !== "") hyperparameters[d.name] = d.choices ? hp[d.name] : numberOf(hp[d.name]);
    const body = { dataset_id: datasetId, model_type: modelType, hyperparameters };
    if (earlyOn) {
      const early = { restore_best_weights: restoreBest };
      for (const d of EARLY_STOPPING) if (es[d.name] !== "") early[d.name] = d.choices ? es[d.name] : numberOf(es[d.name]);
      body.early_stopping = early;
    }
    if (recordEvery.trim()) body.record_every_steps = numberOf(recordEvery);
    if (modelName.trim()) body.model_name = modelName.trim();
    try {
      const response = await post("/api/v1/ml/train", body);
      onLaunched(response.data);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  async function datasetCreated(d) {
    setCreated(d);
    setCreating(false);
    setDatasetId(d.id);
    // the dataset as the list shows it (read-your-writes: the command's position is awaited)
    datasets.reload();
  }

  const defaultName = dataset ? `${dataset.name}-${modelType.replaceAll("_", "-")}` : "<dataset>-<model type>";
  return (
    <section className="panel launch" aria-labelledby="launch-title">
      <h2 id="launch-title">New training run</h2>
      <Needs may="write" what="build datasets or start training: that needs the operator or admin role">
        <div className="field wide">
          <label htmlFor="dataset">Dataset</label>
          <div className="inline-controls">
            <select
              id="dataset"
              value={datasetId}
              onChange={(e) => setDatasetId(e.target.value)}
              aria-invalid={errors.dataset_id ? "true" : undefined}
              aria-describedby={errors.dataset_id ? "dataset-error" : "dataset-help"}
            >
              {!list.length && <option value="">{datasets.loading ? "Loading…" : "No datasets yet"}</option>}
              {list.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.name} ({d.row_count} rows, {d.target})
                </option>
              ))}
            </select>
            <button type="button" className="quiet" aria-expanded={creating} onClick={() => setCreating((c) => !c)}>
              New dataset…
            </button>
          </div>
          {errors.dataset_id ? (
            <span className="field-error" id="dataset-error">
              {errors.dataset_id}
            </span>
          ) : (
            <div id="dataset-help">
              <DatasetSummary dataset={dataset} />
            </div>
          )}
          <Problem error={datasets.error} onReload={datasets.reload} />
        </div>
        {created && !creating && (
          <p className="hint" role="status">
            Dataset <strong>{created.name}</strong> registered: {created.row_count} rows.
          </p>
        )}
        {creating && <DatasetForm onCreated={datasetCreated} onCancel={() => setCreating(false)} />}
        <form onSubmit={submit} noValidate aria-labelledby="launch-title">
          <div className="grid two">
            <Field
              id="model_type"
              def={{ name: "model_type", label: "Model type", choices: ["mlp_classifier", "mlp_regressor"], hint: "classifier: direction datasets" }}
              value={modelType}
              onChange={(_, v) => setModelType(v)}
              error={errors.model_type}
            />
            <Field
              id="model_name"
              def={{ name: "model_name", label: "Registry model name", type: "text", placeholder: defaultName, hint: "empty: the default shown" }}
              value={modelName}
              onChange={(_, v) => setModelName(v)}
              error={errors.model_name}
            />
          </div>

          <fieldset className="group">
            <legend>Hyperparameters</legend>
            <div className="grid">
              {HYPERPARAMETERS.map((d) => (
                <Field
                  key={d.name}
                  id={`hp-${d.name}`}
                  def={d}
                  value={hp[d.name]}
                  onChange={(n, v) => setHp((s) => ({ ...s, [n]: v }))}
                  error={errors[`hyperparameters.${d.name}`]}
                />
              ))}
              <Field
                id="record_every_steps"
                def={{ name: "record_every_steps", label: "Record a point every N steps", hint: "empty: once per epoch" }}
                span
                value={recordEvery}
                onChange={(_, v) => setRecordEvery(v)}
                error={errors.record_every_steps}
              />
            </div>
          </fieldset>

          <fieldset className="group">
            <legend>
              <label className="check">
                <input type="checkbox" checked={earlyOn} onChange={(e) => setEarlyOn(e.target.checked)} />
                Early stopping
              </label>
            </legend>
            {earlyOn ? (
              <div className="grid">
                {EARLY_STOPPING.map((d) => (
                  <Field
                    key={d.name}
                    id={`es-${d.name}`}
                    def={d}
                    value={es[d.name]}
                    onChange={(n, v) => setEs((s) => ({ ...s, [n]: v }))}
                    error={errors[`early_stopping.${d.name}`]}
                  />
                ))}
                <div className="field">
                  <span className="label-like" aria-hidden="true">
                    Weights kept
                  </span>
                  <label className="check">
                    <input type="checkbox" checked={restoreBest} onChange={(e) => setRestoreBest(e.target.checked)} />
                    Restore best weights
                  </label>
                </div>
              </div>
            ) : (
              <p className="hint">Off: the run trains every epoch.</p>
            )}
            {errors.early_stopping && <span className="field-error">{errors.early_stopping}</span>}
          </fieldset>

          <Problem error={error} onReload={() => setError(null)} />
          <div className="actions">
            <button type="submit" disabled={busy || !datasetId}>
              {busy ? "Launching…" : "Launch training"}
            </button>
            <button
              type="button"
              className="quiet"
              onClick={() => {
                setHp(initial(HYPERPARAMETERS));
                setEs(initial(EARLY_STOPPING));
                setRestoreBest(true);
                setRecordEvery("");
                setError(null);
              }}
            >
              Reset to defaults
            </button>
          </div>
        </form>
      </Needs>
    </section>
  );
}
