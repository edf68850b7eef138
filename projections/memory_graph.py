"""An agent's memories as a knowledge graph: memories and entities as nodes, relations,
mentions and supersessions as edges.

A pure function of the memories given (from the read model, or replayed as of a time),
so both paths draw the same graph. Entity identity is the type and the name compared
case-blind (``entity:<type>:<lower name>``). A relation's subject or object resolves to
an entity the same memory declared under that name (any type), else to one another
memory declared (the smallest id if several types), else to a ``concept`` entity of
its own. Edges point from the newer or asserting thing:

    entity -<predicate>-> entity      memory -mentions-> entity
    memory -supersedes-> older memory (only when both are in the set)

Nodes and edges come sorted by id; where a value depends on which memory came first
(an entity's label, the memory named on a relation edge) it is the first in the order
given, strongest first from ``projections.memory.graph_rows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Graph = dict[str, list[dict[str, Any]]]
LABEL = 80


def entity_id(entity_type: str, name: str) -> str:
    return f"entity:{entity_type.lower()}:{name.lower()}"


def memory_id(memory: Mapping[str, Any]) -> str:
    return f"memory:{memory['id']}"


class _Builder:
    def __init__(self, memories: Sequence[Mapping[str, Any]]) -> None:
        self.memories = memories
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, dict[str, Any]] = {}
        self.mentioned: dict[str, set[str]] = {}  # entity node -> memory nodes
        # Every declared entity by lower name: a relation in any memory may name it.
        self.declared: dict[str, str] = {}
        for m in memories:
            for e in m.get("entities") or ():
                node = self.entity(e["type"], e["name"])
                lower = e["name"].lower()
                self.declared[lower] = min(self.declared.get(lower, node), node)

    def entity(self, entity_type: str, name: str) -> str:
        node = entity_id(entity_type, name)
        if node not in self.nodes:
            self.nodes[node] = {
                "id": node, "type": "entity", "label": name,
                "entity_type": entity_type.lower(), "mentions": 0,
            }  # fmt: skip
        return node

    def resolve(self, name: str, own: Mapping[str, str]) -> str:
        lower = name.lower()
        return own.get(lower) or self.declared.get(lower) or self.entity("concept", name)

    def edge(self, edge_type: str, source: str, target: str, relation: str) -> dict[str, Any]:
        key = f"{edge_type}:{source}->{target}"
        if edge_type == "relation":
            key = f"{edge_type}:{source}-[{relation.lower()}]->{target}"
        if key not in self.edges:
            self.edges[key] = {
                "id": key, "type": edge_type, "source": source, "target": target,
                "relation": relation,
            }  # fmt: skip
        return self.edges[key]

    def memory(self, m: Mapping[str, Any]) -> None:
        node = memory_id(m)
        self.nodes[node] = {
            "id": node, "type": "memory", "label": (m.get("content") or "")[:LABEL],
            "kind": m["kind"], "status": m["status"], "strength": m["strength"],
            "importance": m["importance"], "created_at": m["created_at"],
        }  # fmt: skip
        if "strength_components" in m:
            self.nodes[node]["strength_components"] = m["strength_components"]
        own: dict[str, str] = {}
        for e in m.get("entities") or ():
            entity = entity_id(e["type"], e["name"])
            own.setdefault(e["name"].lower(), entity)
            self.mentioned.setdefault(entity, set()).add(node)
        for r in m.get("relations") or ():
            subject = self.resolve(r["subject"], own)
            target = self.resolve(r["object"], own)
            for entity in (subject, target):
                self.mentioned.setdefault(entity, set()).add(node)
            edge = self.edge("relation", subject, target, r["predicate"])
            asserted: list[str] = edge.setdefault("memories", [])
            if str(m["id"]) not in asserted:
                asserted.append(str(m["id"]))

    def supersessions(self) -> None:
        present = {str(m["id"]) for m in self.memories}
        for m in self.memories:
            newer, older = str(m["id"]), m.get("supersedes")
            if older is not None and str(older) in present:
                self.edge("supersedes", f"memory:{newer}", f"memory:{older}", "supersedes")
            successor = m.get("superseded_by")
            if successor is not None and str(successor) in present:
                self.edge("supersedes", f"memory:{successor}", f"memory:{newer}", "supersedes")

    def graph(self) -> Graph:
        for entity, memories in self.mentioned.items():
            self.nodes[entity]["mentions"] = len(memories)
            for node in memories:
                self.edge("mentions", node, entity, "mentions")
        for edge in self.edges.values():
            if edge["type"] == "relation":
                asserted = edge.pop("memories")
                edge["memory"] = asserted[0]
                edge["memories"] = sorted(asserted)
                edge["count"] = len(asserted)
        return {
            "nodes": [self.nodes[k] for k in sorted(self.nodes)],
            "edges": [self.edges[k] for k in sorted(self.edges)],
        }


def build_graph(memories: Sequence[Mapping[str, Any]]) -> Graph:
    """Nodes and edges of ``memories``, each a mapping with id, kind, status, strength,
    importance, created_at, supersedes, superseded_by, entities ({name, type}),
    relations ({subject, predicate, object}) and content (None once unreadable).

    Memory nodes: id ``memory:<uuid>``, label (the first 80 characters of the content),
    kind, status, strength, importance, created_at. Entity nodes: id
    ``entity:<type>:<lower name>``, label (the name as first seen), entity_type and
    ``mentions`` (how many of the memories declare it or name it in a relation). Edges:
    id, type (relation, mentions, supersedes), source, target, relation (the predicate,
    as first seen, or the edge type); relation edges also carry ``memory`` (the first
    memory that asserted it), ``memories`` (all of them, sorted) and ``count``.
    """
    builder = _Builder(memories)
    for m in memories:
        builder.memory(m)
    builder.supersessions()
    return builder.graph()
