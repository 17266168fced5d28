"""ONNX graph utilities shared by the export rewrites and quantize.

Walk subgraphs, replace nodes, drop unread initializers, sort nodes topologically. Needs onnx, not
onnxruntime or torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# node, the graph's initializers by name -> (nodes, initializers) that replace it, or None to keep it
Replacement = Callable[[Any, dict[str, Any]], "tuple[list[Any], list[Any]] | None"]


def replace_nodes(model: Any, replace: Replacement) -> tuple[Any, int]:
    """A copy of `model` in which every top-level node that `replace` returns a replacement for is
    replaced (the initializers nothing reads any more dropped); (model, how many were replaced)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[Any] = []
    count = 0
    for node in graph.node:
        new = replace(node, inits)
        if new is None:
            nodes.append(node)
            continue
        count += 1
        nodes += new[0]
        graph.initializer.extend(new[1])
    del graph.node[:]
    graph.node.extend(nodes)
    prune_initializers(graph)
    return model, count


def graphs(graph: Any) -> Iterator[Any]:
    """`graph` and every subgraph in it (Scan, Loop and If bodies), depth first."""
    yield graph
    for n in graph.node:
        for a in n.attribute:
            for sub in [a.g] if a.g.node else list(a.graphs):
                yield from graphs(sub)


def prune_initializers(graph: Any) -> None:
    """Drop the initializers that no node (subgraphs included) and no graph output reads, in place."""
    used = {o.name for o in graph.output} | {i for g in graphs(graph) for n in g.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def topological_sort(graph: Any) -> None:
    """Reorder a graph's nodes so that every node comes after the producers of its inputs (in place)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or a missing input: leave the rest as it was, the checker will say
            ordered += pending
            break
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if n not in ready]
    nodes = [type(n)() for n in ordered]
    for new, old in zip(nodes, ordered):
        new.CopyFrom(old)
    del graph.node[:]
    graph.node.extend(nodes)
