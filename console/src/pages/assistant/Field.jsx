// A labelled field with its error beside it (aria-describedby, aria-invalid).

/** A labelled field: the control (given an id), its error beside it (aria-describedby). */
export default function Field({ id, label, error, hint, children, wide }) {
  const described = [error ? `${id}-error` : null, hint ? `${id}-hint` : null].filter(Boolean).join(" ") || undefined;
  return (
    <div className={`field${wide ? " wide" : ""}${error ? " invalid" : ""}`}>
      <label htmlFor={id}>{label}</label>
      {children({ id, "aria-invalid": error ? true : undefined, "aria-describedby": described })}
      {hint && (
        <span className="hint" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      {error && (
        <span className="field-error" id={`${id}-error`} data-field-error>
          {error}
        </span>
      )}
    </div>
  );
}
