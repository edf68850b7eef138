import { useEffect, useRef } from "react";
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";

/**
 * A CodeMirror 6 editor for a prompt template. Tab is NOT bound to indentation (the
 * default keymap leaves it alone), so Tab and Shift-Tab move focus in and out: no
 * keyboard trap. `label` is the editor's accessible name. `value` replaces the text
 * when it changes from outside (another version loaded); edits call onChange(text).
 */
export default function CodeEditor({ label, value, onChange, readOnly = false, testId, minHeight = 90 }) {
  const box = useRef(null);
  const view = useRef(null);
  const changed = useRef(onChange);
  changed.current = onChange;

  useEffect(() => {
    view.current = new EditorView({
      parent: box.current,
      state: EditorState.create({
        doc: value || "",
        extensions: [
          basicSetup,
          EditorView.lineWrapping,
          EditorState.readOnly.of(readOnly),
          EditorView.contentAttributes.of({ "aria-label": label }),
          EditorView.theme({ ".cm-content, .cm-gutter": { minHeight: `${minHeight}px` } }),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) changed.current?.(update.state.doc.toString());
          }),
        ],
      }),
    });
    return () => {
      view.current?.destroy();
      view.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [label, readOnly]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const current = v.state.doc.toString();
    if ((value || "") !== current) {
      v.dispatch({ changes: { from: 0, to: current.length, insert: value || "" } });
    }
  }, [value]);

  return <div className="code-editor" ref={box} data-testid={testId} />;
}
