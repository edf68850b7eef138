"""The lineage graph and its Mermaid and DOT forms (pure functions)."""

from __future__ import annotations

from projections.registry_lineage import build_graph, to_dot, to_mermaid

MODEL = {"id": "m1", "name": "tuned", "kind": "llm"}
VERSIONS = [
    {
        "version": 1,
        "status": "archived",
        "environments": [],
        "artifact": "a1",
        "lineage": {
            "dataset": {"id": "ds", "hash": "h"},
            "training_run": "r1",
            "base_model": "base",
            "prompt_versions": ["p@1"],
        },
    },
    {
        "version": 2,
        "status": "active",
        "environments": ["production"],
        "artifact": "a2",
        "lineage": {"parent_version": 1, "dataset": {"id": "ds", "hash": "h"}},
    },
]
DEPLOYMENTS = [
    {
        "sequence": 1,
        "action": "deploy",
        "environment": "production",
        "version": 2,
        "deployed_at": "2026-01-01",
        "deployed_by": "ops",
    },
]


def test_graph_has_each_thing_once_and_edges_point_to_origins() -> None:
    graph = build_graph(
        MODEL, VERSIONS, DEPLOYMENTS, [{"model_id": "m9", "version": 4, "name": "child"}]
    )
    ids = [n["id"] for n in graph["nodes"]]
    assert len(ids) == len(set(ids))
    assert ids.count("dataset:ds") == 1
    edges = {(e["source"], e["relation"], e["target"]) for e in graph["edges"]}
    assert ("version:m1:2", "derived_from", "version:m1:1") in edges
    assert ("version:m1:1", "trained_on", "dataset:ds") in edges
    assert ("version:m1:1", "based_on", "model:base") in edges
    assert ("deployment:m1:1", "deployed", "version:m1:2") in edges
    assert ("version:m9:4", "based_on", "model:m1") in edges
    assert all(e["target"] in ids and e["source"] in ids for e in graph["edges"])


def test_an_edge_to_a_missing_parent_is_dropped() -> None:
    graph = build_graph(MODEL, [{**VERSIONS[1], "lineage": {"parent_version": 7}}], [])
    assert not [e for e in graph["edges"] if e["relation"] == "derived_from"]


def test_text_forms_name_every_node_and_edge_and_escape_quotes() -> None:
    graph = build_graph({**MODEL, "name": 'say "hi"'}, VERSIONS, DEPLOYMENTS)
    mermaid, dot = to_mermaid(graph), to_dot(graph)
    assert mermaid.count("-->|") == len(graph["edges"])
    assert dot.count(" -> ") == len(graph["edges"])
    assert '"hi"' not in mermaid and '"hi"' not in dot
    assert '[("ds")]' in mermaid  # datasets drawn as cylinders


def test_prompt_versions_of_the_assistant_run_on_the_versions_they_name() -> None:
    prompts = [
        {
            "prompt_id": "p9",
            "number": 3,
            "registry_version": 2,
            "role": "risk-analyst",
            "name": "system",
            "labels": {"production": 3, "staging": 1},
        }
    ]
    graph = build_graph(MODEL, VERSIONS, DEPLOYMENTS, prompts=prompts)
    node = next(n for n in graph["nodes"] if n["id"] == "prompt:p9@3")
    assert (node["type"], node["label"]) == ("prompt_version", "risk-analyst/system v3")
    assert node["attributes"]["labels"] == ["production"]
    edges = {(e["source"], e["relation"], e["target"]) for e in graph["edges"]}
    assert ("prompt:p9@3", "runs_on", "version:m1:2") in edges
