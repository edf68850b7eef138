import { useEffect, useRef } from "react";
import cytoscape from "cytoscape";

/**
 * A Cytoscape.js graph. `elements` are Cytoscape's ({ data: { id, label, ... } } nodes and
 * ({ data: { source, target } }) edges); `style` its stylesheet; `layout` its layout options.
 * Tapping a node calls onSelect(id); `selected` is highlighted. The canvas is not
 * keyboard-reachable, so pages also list the nodes as buttons (see NodeList below).
 */
export default function Graph({ label, elements, style, layout, onSelect, selected, height = 420, testId }) {
  const box = useRef(null);
  const cy = useRef(null);
  const select = useRef(onSelect);
  select.current = onSelect;

  useEffect(() => {
    cy.current = cytoscape({
      container: box.current,
      elements,
      style,
      layout,
      wheelSensitivity: 0.3,
      minZoom: 0.2,
      maxZoom: 3,
    });
    cy.current.on("tap", "node", (event) => select.current?.(event.target.id()));
    return () => {
      cy.current?.destroy();
      cy.current = null;
    };
    // the graph is rebuilt when its elements change
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [elements]);

  useEffect(() => {
    if (!cy.current) return;
    cy.current.nodes().removeClass("selected");
    if (selected) cy.current.getElementById(selected).addClass("selected");
  }, [selected, elements]);

  const nodes = elements.filter((e) => !e.data.source).length;
  const edges = elements.length - nodes;
  return (
    <div
      ref={box}
      className="graph"
      style={{ height }}
      role="img"
      aria-label={`${label}: ${nodes} nodes, ${edges} edges`}
      data-testid={testId}
      data-nodes={nodes}
      data-edges={edges}
    />
  );
}
