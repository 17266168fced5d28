"""Graph rewrites that `toolkit export` applies after the exporter, where onnxruntime's kernel for an op is
the slow one: the same function in standard ONNX ops that run faster (each proven by the export's parity
check, and listed in the metadata's provenance.rewrites).

- RNN -> a Scan of MatMul + Add + Tanh (toolkit.runtime.recurrent): the RNN op 4x slower at batch 64;
- strided ConvTranspose -> Conv + DepthToSpace (toolkit.runtime.subpixel): 1.5x on the GAN generator.

LSTM and GRU keep their ops: onnxruntime's kernels for those beat the Scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# node, the graph's initializers by name -> (nodes, initializers) that replace it, or None to keep it
Replacement = Callable[[Any, dict[str, Any]], "tuple[list[Any], list[Any]] | None"]


def for_export(model: Any) -> tuple[Any, list[str]]:
    """(rewritten model, what was rewritten, in words: ["1 RNN op -> Scan", ...])."""
    from toolkit.runtime import recurrent, subpixel

    done = []
    model, count = recurrent.lower(model, ops=("RNN",))
    if count:
        done.append(f"{count} RNN op{'s' * (count > 1)} -> Scan")
    model, count = subpixel.lower(model)
    if count:
        done.append(f"{count} ConvTranspose op{'s' * (count > 1)} -> Conv + DepthToSpace")
    return model, done


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
