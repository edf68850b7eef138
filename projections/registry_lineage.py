"""A model's lineage as a graph, and that graph as Mermaid or Graphviz DOT text (F11.1.3).

Nodes: the model, its versions, the datasets, training runs and prompt versions they
name, parent models they are based on, other models based on this one, each deployment,
and the assistant's prompt versions that run on its versions. Edges point from the newer
thing to what it came from or runs on:

    version -version_of-> model          version -trained_on-> dataset
    version -produced_by-> training run  version -derived_from-> parent version
    version -based_on-> base model       version -uses_prompt-> prompt version
    deployment -deployed-> version       other model's version -based_on-> model
    prompt version -runs_on-> version

A prompt version of the assistant is the node ``prompt:<prompt id>@<number>``; a model
version naming it in its lineage's ``prompt_versions`` as ``<prompt id>@<number>`` points
at the same node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

Graph = dict[str, list[dict[str, Any]]]


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, Any]] = []

    def node(self, node_id: str, node_type: str, label: str, **attributes: Any) -> str:
        if node_id not in self.nodes:
            self.nodes[node_id] = {
                "id": node_id,
                "type": node_type,
                "label": label,
                "attributes": attributes,
            }
        return node_id

    def edge(self, source: str, target: str, relation: str) -> None:
        self.edges.append({"source": source, "target": target, "relation": relation})


def build_graph(
    model: Mapping[str, Any],
    versions: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
    derived: Iterable[Mapping[str, Any]] = (),
    prompts: Iterable[Mapping[str, Any]] = (),
) -> Graph:
    """``prompts``: the assistant's prompt versions running on versions of this model
    (``prompt_id``, ``number``, ``registry_version``, ``role``, ``name``, ``labels``)."""
    g = _Builder()
    model_node = g.node(f"model:{model['id']}", "model", str(model["name"]), kind=model["kind"])
    for v in versions:
        number = v["version"]
        node = g.node(
            f"version:{model['id']}:{number}",
            "version",
            f"{model['name']} v{number}",
            status=v["status"],
            environments=list(v["environments"]),
            artifact=v["artifact"],
        )
        g.edge(node, model_node, "version_of")
        lineage = v["lineage"]
        dataset = lineage.get("dataset")
        if dataset:
            ds = g.node(
                f"dataset:{dataset['id']}", "dataset", str(dataset["id"]), hash=dataset["hash"]
            )
            g.edge(node, ds, "trained_on")
        if lineage.get("training_run"):
            run = lineage["training_run"]
            g.edge(node, g.node(f"run:{run}", "training_run", str(run)), "produced_by")
        if lineage.get("parent_version"):
            g.edge(node, f"version:{model['id']}:{lineage['parent_version']}", "derived_from")
        if lineage.get("base_model"):
            base = lineage["base_model"]
            g.edge(node, g.node(f"model:{base}", "model", str(base)), "based_on")
        for prompt in lineage.get("prompt_versions") or ():
            g.edge(node, g.node(f"prompt:{prompt}", "prompt_version", str(prompt)), "uses_prompt")
    for d in deployments:
        node = g.node(
            f"deployment:{model['id']}:{d['sequence']}",
            "deployment",
            f"{d['action']} v{d['version']} to {d['environment']}",
            environment=d["environment"],
            at=str(d["deployed_at"]),
            by=d["deployed_by"],
            action=d["action"],
        )
        g.edge(node, f"version:{model['id']}:{d['version']}", "deployed")
    for other in derived:
        node = g.node(
            f"version:{other['model_id']}:{other['version']}",
            "version",
            f"{other['name']} v{other['version']}",
        )
        g.edge(node, model_node, "based_on")
    for p in prompts:
        labels = sorted(k for k, v in dict(p["labels"]).items() if v == p["number"])
        node = g.node(
            f"prompt:{p['prompt_id']}@{p['number']}",
            "prompt_version",
            f"{p['role']}/{p['name']} v{p['number']}",
            prompt_id=str(p["prompt_id"]),
            version=p["number"],
            role=p["role"],
            labels=labels,
        )
        g.edge(node, f"version:{model['id']}:{p['registry_version']}", "runs_on")
    known = set(g.nodes)
    # An edge to a version that no longer resolves (a parent never registered) is dropped.
    return {"nodes": list(g.nodes.values()), "edges": [e for e in g.edges if e["target"] in known]}


_SHAPES_MERMAID = {
    "model": ('["', '"]'),
    "version": ('("', '")'),
    "dataset": ('[("', '")]'),
    "training_run": ('{{"', '"}}'),
    "deployment": ('>"', '"]'),
    "prompt_version": ('[/"', '"/]'),
}
_SHAPES_DOT = {
    "model": "box",
    "version": "ellipse",
    "dataset": "cylinder",
    "training_run": "hexagon",
    "deployment": "cds",
    "prompt_version": "note",
}


def _escape(text: str) -> str:
    return re.sub(r'["\\]', "'", text)


def to_mermaid(graph: Graph) -> str:
    ids = {node["id"]: f"n{i}" for i, node in enumerate(graph["nodes"])}
    lines = ["graph LR"]
    for node in graph["nodes"]:
        left, right = _SHAPES_MERMAID.get(node["type"], ('["', '"]'))
        lines.append(f"    {ids[node['id']]}{left}{_escape(node['label'])}{right}")
    for edge in graph["edges"]:
        lines.append(f"    {ids[edge['source']]} -->|{edge['relation']}| {ids[edge['target']]}")
    return "\n".join(lines) + "\n"


def to_dot(graph: Graph) -> str:
    lines = ["digraph lineage {", "    rankdir=LR;"]
    for node in graph["nodes"]:
        shape = _SHAPES_DOT.get(node["type"], "box")
        lines.append(
            f'    "{_escape(node["id"])}" [label="{_escape(node["label"])}", shape={shape}];'
        )
    for edge in graph["edges"]:
        lines.append(
            f'    "{_escape(edge["source"])}" -> "{_escape(edge["target"])}" '
            f'[label="{edge["relation"]}"];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
