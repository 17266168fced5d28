"""Markdown tables and a plot for docs/results.md, rendered from bench/results/*.json at build time.

Nothing here holds a figure: every number comes from the JSON files `make bench` (and `make gpu-check`)
write, so the page shows the last measured run and cannot drift from it.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any


def load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _missing(name: str) -> str:
    return f"*No `bench/results/{name}.json` yet: run `make bench` to measure it.*"


def pipeline(results: Path, root: Path) -> str:
    """The pipeline table and goals, with the same renderer that writes bench/results/pipeline.md."""
    report = load(results, "pipeline")
    if report is None:
        return _missing("pipeline")
    sys.path.insert(0, str(root / "bench"))
    try:
        from pipeline import markdown  # bench/pipeline.py: one renderer for pipeline.md and this page
    finally:
        sys.path.remove(str(root / "bench"))
    text = markdown(report)
    lines = text.splitlines()[1:]  # the page has its own title
    return "\n".join(line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in lines)


def train_overhead(results: Path) -> str:
    report = load(results, "train_overhead")
    if report is None:
        return _missing("train_overhead")
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['processor']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"torch {m['torch']} ({m['torch_threads']} torch thread), {report['settings']['rounds']} interleaved "
        f"rounds; the goal is an overhead of at most {report['goal_overhead_pct']:g}%.",
        "",
        "| recipe | batch | trainer samples/s | bare loop samples/s | overhead | within goal "
        "| whole `fit` epoch vs bare |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in report["recipes"].items():
        lines.append(
            f"| {name} | {r['batch_size']} | {r['trainer']['median_samples_per_s']:,.0f} | "
            f"{r['bare']['median_samples_per_s']:,.0f} | {r['overhead_pct']:.1f}% | "
            f"{'yes' if r['within_goal'] else '**no**'} | {r['end_to_end_per_epoch']['ratio_vs_bare']:.2f} |"
        )
    return "\n".join(lines)


def edge(results: Path) -> str:
    report = load(results, "edge")
    if report is None:
        return _missing("edge")
    m = report["machine"]
    lines = [
        f"{report['benchmark']}. Measured {report['date']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}, torch {m['torch']}; medians of {report['rounds']} interleaved "
        "rounds, wall time from spawn to exit.",
        "",
        "| contender | cold start to first prediction | × floor | peak RSS | × floor | answer |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['seconds_median']:.3f} s | {r['x_floor_seconds']:.2f} | "
            f"{r['rss_mb_median']:.1f} MB | {r['x_floor_rss']:.2f} | {report['labels'].get(name, '')} |"
        )
    goals = ", ".join(
        f"{k.replace('_', ' ')}: {'met' if v else '**not met**'}" for k, v in report["goal"].items()
    )
    sizes = ", ".join(f"{k} {v:,} bytes" for k, v in report["bundle_bytes"].items())
    return "\n".join([*lines, "", f"Goals: {goals}. Bundle files: {sizes}."])


def serve(results: Path) -> str:
    report = load(results, "serve")
    if report is None:
        return _missing("serve")
    ceiling = report["session_run_ceiling"]
    lines = [
        f"{report['model']}; load: {report['load']}; {report['machine']}, Python {report['python']}; "
        f"load average after the run: {', '.join(str(x) for x in report['load_average_after'])}.",
        "",
        "| what | req/s | p50 | p99 | non-2xx |",
        "|---|---:|---:|---:|---:|",
        f"| in-process `session.run`, batch 1 (ceiling) | {ceiling['batch1_rows_per_s']:,} | | | |",
        f"| in-process `session.run`, batch 16 (rows/s) | {ceiling['batch16_rows_per_s']:,} | | | |",
    ]
    for kind in ("json", "binary"):
        r = report[kind]
        lines.append(
            f"| `toolkit serve`, {kind} | {r['req_per_s']:,} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
            f"{r['non_2xx']} |"
        )
    return "\n".join(lines)


def imported(results: Path) -> str:
    """`toolkit quantize --data` on an imported foreign CNN (bench/import_bench.py)."""
    report = load(results, "import")
    if report is None:
        return _missing("import")
    lines = [
        f"{report['benchmark']}. Measured {report['date']}, {report['machine']}; data: "
        f"`{Path(report['data']['source']).name}` ({report['data']['validation_samples']} labelled images, "
        f"{report['data']['calibration_samples']} calibration rows). fp32 accuracy {report['fp32_accuracy']:.4f}.",
        "",
        "| candidate | accuracy | drop | gate | × fp32 at batch 1 | × fp32 at batch 64 |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for c in report["candidates"]:
        speed = c.get("speedup") or {}
        cells = [f"{speed[b]:.2f}" if b in speed else "" for b in ("1", "64")]
        metric = "" if c["metric"] is None else f"{c['metric']:.4f}"
        drop = "" if c["drop"] is None else f"{c['drop'] * 100:+.2f} pt"
        gate = "error" if c["error"] else ("pass" if c["passed_gate"] else "fail")
        lines.append(f"| {c['name']} | {metric} | {drop} | {gate} | {cells[0]} | {cells[1]} |")
    goals = ", ".join(
        f"{k.replace('_', ' ')}: {'met' if v else '**not met**'}" for k, v in report["goal"].items()
    )
    return "\n".join([*lines, "", f"Decision: {report['decision']}. Goals: {goals}."])


def distributed(results: Path) -> str:
    """1 vs 2 processes side by side, the accuracy goal, the compute/communication split, the projection."""
    report = load(results, "distributed")
    if report is None:
        return _missing("distributed")
    m, tp, acc, comm = report["machine"], report["throughput"], report["accuracy"], report["communication"]
    lines = [
        f"Measured {report['date']} on {m['processor']}, {m['cpu_count']} CPUs ({m['note']}), Python "
        f"{m['python']}, torch {m['torch']}; {tp['rounds']} interleaved rounds of {tp['epochs_per_run']} epochs.",
        "",
        "| contender | samples/s (median epoch) | 2 processes' speed-up over it | efficiency (speed-up / 2) |",
        "|---|---:|---:|---:|",
    ]
    for name, rate in tp["samples_per_s"].items():
        if name in tp["speedup_2_vs"]:
            speedup, eff = tp["speedup_2_vs"][name], tp["efficiency_2_vs"][name]
            lines.append(f"| {name} | {rate:,.0f} | {speedup:.2f}× | {eff:.2f} |")
        else:
            lines.append(f"| {name} | {rate:,.0f} | | |")
    lines += [
        "",
        "The fair pair is 2 processes of one torch thread against 1 process of one thread: the same cores, "
        "the same threads. One process with torch's default threads (one per core) is shown because it is "
        "what `toolkit train` does without `--nproc`; on a loaded shared machine its OpenMP threads wait for "
        f"each other (load average before the run: {m.get('load_average_before', '?')}).",
        "",
        "| seed | test accuracy, 1 process | test accuracy, 2 processes |",
        "|---:|---:|---:|",
    ]
    for r in acc["runs"]:
        lines.append(f"| {r['seed']} | {r['accuracy_1'] * 100:.2f}% | {r['accuracy_2'] * 100:.2f}% |")
    goal = "met" if acc["within_goal"] else "**not met**"
    lines += [
        "",
        f"Mean over seeds: {acc['mean_accuracy_1_pct']:.2f}% vs {acc['mean_accuracy_2_pct']:.2f}% (gap "
        f"{acc['mean_gap_points']:.2f} point; goal within {acc['goal_points']:g}: {goal}).",
        "",
        f"One step (batch {comm['batch_size']}): {comm['gradient_bytes_per_step']:,} gradient bytes, "
        f"{comm['compute_ms_per_step_1proc']:.2f} ms compute in one process, "
        f"{comm['allreduce_ms_gloo_loopback_2proc']:.3f} ms to all-reduce them between two gloo processes on "
        f"loopback ({comm['communication_fraction'] * 100:.0f}% of a step).",
        "",
        "Projected speed-up on N nodes (ring all-reduce; compute / N + 2(N-1)/N x bytes / bandwidth + latency):",
        "",
        "| network | "
        + " | ".join(f"{n} nodes" for n in sorted({r["nodes"] for r in report["projection"]}))
        + " |",
        "|---|" + "---:|" * len({r["nodes"] for r in report["projection"]}),
    ]
    for gbit in sorted({r["network_gbit"] for r in report["projection"]}):
        cells = [f"{r['speedup']:.2f}×" for r in report["projection"] if r["network_gbit"] == gbit]
        lines.append(f"| {gbit} Gbit/s | " + " | ".join(cells) + " |")
    best = max(report["projection"], key=lambda r: r["efficiency"] if r["nodes"] > 1 else 0)
    lines += [
        "",
        f"Reading it: the model is small ({comm['parameters']:,} parameters), so a step is compute-bound and the "
        "all-reduce costs little bandwidth; what limits scaling is the per-step latency of the ring "
        "(2(N-1) messages, each at least the loopback figure), against a compute share that shrinks as the "
        f"fixed global batch of {comm['batch_size']} is split over more nodes. Two nodes come close to 2× "
        f"(best efficiency {best['efficiency']:.2f} at {best['nodes']} nodes, {best['network_gbit']} Gbit/s); past "
        "8 nodes each node holds only a few samples per step and the gain flattens. Growing the global batch "
        "with the nodes (the same batch per node) keeps each node's compute, and the communication share stays "
        "near the two-process figure. Measured on loopback, so real networks add latency: a projection, not a "
        "measurement of several machines.",
    ]


def tables(results: Path) -> str:
    """bench/tables_bench.py: the 1M-row load and epoch beside their references, and the accuracy goal."""
    report = load(results, "tables")
    if report is None:
        return _missing("tables")
    m, ld, ep = report["machine"], report["load"]["median_s"], report["epoch"]
    rows = report["settings"]["rows"]
    lines = [
        f"Measured {report['date']} on {m['processor']}, {m['cpu_count']} CPUs ({m['note']}), torch {m['torch']}, "
        f"pyarrow {m['pyarrow']}; {report['settings']['rounds']} round(s), medians.",
        "",
        "| step | toolkit | reference | reference / toolkit |",
        "|---|---:|---:|---:|",
        f"| load {rows:,} rows × 20 columns (3 categorical), split and encode | {ld['toolkit_mixed']:.1f} s | "
        "(the old reader refused categories) | |",
        f"| load the numeric twin (17 columns) | {ld['toolkit_numeric']:.1f} s | old csv-module reader "
        f"{ld['old_numeric']:.1f} s | {report['load']['old_over_toolkit']:.1f}× |",
        f"| one mlp-tabular epoch, {ep['rows']:,} train rows, batch {ep['batch_size']}, input width "
        f"{ep['input_width']} | {ep['median_trainer_s']:.1f} s | bare PyTorch loop {ep['median_bare_s']:.1f} s | "
        f"{1 / ep['ratio']:.2f}× |",
        "",
        f"Mixed numeric/categorical tables: mlp-tabular (recipe defaults, {report['settings']['epochs']} epochs, "
        "batch 128) against scikit-learn's LogisticRegression on one-hot columns, same split; goal: within "
        f"{report['goal_points']:g} point or better.",
        "",
        "| truth | rows | mlp-tabular | logistic regression (one-hot) | difference | goal |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for truth, r in report["accuracy"].items():
        lines.append(
            f"| {truth} | {r['rows']:,} | {r['mlp_accuracy']:.4f} | {r['logreg_onehot_accuracy']:.4f} | "
            f"{r['points']:+.2f} points | {'met' if r['within_goal'] else '**not met**'} |"
        )
    return "\n".join(lines)


def soak(results: Path) -> str:
    """One row per soak run (bench/serve_soak.py): bench/results/serve_soak*.json."""
    rows = []
    for path in sorted(results.glob("serve_soak*.json")):
        r = json.loads(path.read_text())
        extra = []
        if r.get("signed"):
            extra.append(f"{r['tampered_versions_refused']} tampered versions refused")
        if r.get("slow_clients"):
            held = r.get("slow_connection_held_s") or {}
            extra.append(
                f"{r['slow_connections_closed']:,} slow connections closed (held ≤ {held.get('max', '?')} s)"
            )
        rows.append(
            f"| `{path.name}` | {r['mode']} | {r['requests']:,} | {r['req_per_s']:,} | {r['p99_ms']:.1f} ms | "
            f"{r['errors']} | {r['reloads']} | {r['memory_growth_mb']:+.1f} MB | {'; '.join(extra) or '–'} |"
        )
    if not rows:
        return _missing("serve_soak")
    head = "| file | run | requests | req/s | p99 | errors | reloads | memory growth | also |"
    return "\n".join([head, "|---|---|---|---|---|---|---|---|---|", *rows])


KNOWN = (
    "pipeline",
    "train_overhead",
    "edge",
    "serve",
    "gpu_check",
    "serve_soak",
    "serve_soak_1m",
    "serve_soak_signed",
    "import",
    "distributed",
    "tables",
    "images",
    "pretrain",
)


def images(results: Path) -> str:
    """bench/images_bench.py: memory, input throughput, cnn epoch, accuracy, fine-tuned mobilenet."""
    report = load(results, "images")
    if report is None:
        return _missing("images")
    m = report["machine"]
    lines = [
        f"{m['cpus']} CPUs ({m['note']}), load average {m['load_1min']:.1f} at the start, Python {m['python']}, "
        f"torch threads {report['omp_threads']}, {report['image_size']}×{report['image_size']} RGB PNGs.",
        "",
        "| what | measured | goal | met |",
        "|---|---|---|---|",
    ]
    verdict = lambda r: "yes" if r["met"] else "**no**"  # noqa: E731
    if "memory" in report:
        r = report["memory"]
        rss = " vs ".join(
            f"{int(n):,} images {v['max_process_rss_mb']:.0f} MB" for n, v in r["images"].items()
        )
        pss = " vs ".join(f"{v['tree_pss_mb']:.0f} MB" for v in r["images"].values())
        lines.append(
            f"| peak RSS of the `toolkit train` process | {rss}; ratio {r['ratio']:.2f} (whole process tree, "
            f"workers included, PSS: {pss}; ratio {r['tree_ratio']:.2f}) | {r['goal']} | {verdict(r)} |"
        )
    if "throughput" in report:
        r = report["throughput"]
        lines.append(
            f"| input pipeline, {r['images']:,} images, {r['workers']} workers, batch {r['batch']} | "
            f"{r['toolkit_img_s']:.0f} vs {r['torchvision_img_s']:.0f} img/s (bare ImageFolder); "
            f"{r['ratio']:.2f}× | {r['goal']} | {verdict(r)} |"
        )
    if "epoch" in report:
        r = report["epoch"]
        lines.append(
            f"| cnn recipe epoch vs bare strided CNN, {r['images']:,} images | "
            f"{min(r['recipe_s']):.1f} s vs {min(r['bare_s']):.1f} s; {r['ratio']:.2f}× | "
            f"{r['goal']} | {verdict(r)} |"
        )
    if "accuracy" in report:
        r = report["accuracy"]
        lines.append(
            f"| cnn recipe accuracy, {r['images']:,} images, {r['epochs']} epochs | "
            f"{r['accuracy']:.3f} in {r['seconds']:.0f} s | {r['goal']} | {verdict(r)} |"
        )
    if "mobilenet" in report:
        r = report["mobilenet"]
        lines.append(
            f"| mobilenet_v3_small from a state_dict, {r['images']:,} images, {r['epochs']} epochs | "
            f"lr by epoch {r['lr_by_epoch']}; parity {r['parity_max_abs']:.1e}; INT8 drop "
            f"{r['int8_drop']} | {r['goal']} | {verdict(r)} |"
        )
    if "sizes" in report:
        r = report["sizes"]
        lines += [
            "",
            f"The cnn recipe's training step by image side (batch {r['batch']}, synthetic data):",
            "",
            "| side | stem convolutions | parameters | ms per image |",
            "|---:|---:|---:|---:|",
        ]
        for side, v in r["sizes"].items():
            lines.append(f"| {side} | {v['stem']} | {v['params']:,} | {v['ms_per_image']:.2f} |")
    return "\n".join(lines)


def pretrain(results: Path) -> str:
    """bench/pretrain_bench.py: few labels from scratch vs from a SimCLR-pretrained encoder, and linear probes."""
    report = load(results, "pretrain")
    if report is None:
        return _missing("pretrain")
    st, goals = report["settings"], report["goals"]
    cost = ", ".join(f"{s:.0f} s" for s in report["pretrain_seconds"])
    lines = [
        f"{report['machine']}. Pretraining: cnn-contrastive, {st['pretrain_epochs']} epochs on the whole train "
        f"split (labels unused), wall time per seed {cost}; fine-tuning: cnn-image, {st['epochs']} epochs, "
        f"seeds {st['seeds']} (the seed also draws the split).",
        "",
        "| labels used | seeds | scratch | init_from (pretrained) | gain (points) | probe on encoder | "
        "linear on pixels |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["summary"]:
        lines.append(
            f"| {100 * r['fraction']:g}% | {r.get('seeds', '')} | {r['scratch']:.3f} | {r['init_from']:.3f} | "
            f"{r['gain_points']:+.1f} | {r['probe_encoder']:.3f} | {r['probe_pixels']:.3f} |"
        )
    gain = goals["gain_at_5pct_points"]
    lines += [
        "",
        f"Goal: at 5% of the labels init_from ≥ 5 points above scratch: "
        f"{'measured ' + format(gain, '+.1f') if gain is not None else 'not measured'} "
        f"({'met' if goals['gain_at_5pct_met'] else '**not met**'}); the probe on the encoder beats the linear "
        f"model on pixels at every fraction: {'yes' if goals['probe_beats_pixels'] else '**no**'}.",
    ]
    return "\n".join(lines)


def others(results: Path) -> str:
    """The result files this page has no table for, each with its top-level figures, so none goes unmentioned."""
    rows = []
    for path in sorted(results.glob("*.json")):
        if path.stem in KNOWN:
            continue
        doc = json.loads(path.read_text())
        items = doc.items() if isinstance(doc, dict) else []
        figures = [f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in items if _scalar(v)]
        rows.append(f"| `bench/results/{path.name}` | {'; '.join(figures[:8])} |")
    if not rows:
        return "*None.*"
    return "\n".join(["| file | figures (top level) |", "|---|---|", *rows])


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | bool) or (isinstance(value, str) and 0 < len(value) <= 60)


def gpu(results: Path) -> str:
    report = load(results, "gpu_check")
    if report is None:
        return (
            "*No `bench/results/gpu_check.json` yet: `make gpu-check` has not run on a machine with an NVIDIA "
            "GPU. Its report lands here when it does.*"
        )
    text = json.dumps(report, indent=2)
    return f"```json\n{text[:6000]}\n```"


def speedup_plot(results: Path) -> bytes | None:
    """A bar chart of the pipeline's paired speed-ups (ORT fp32 vs PyTorch eager at batch 1 and 64, and the
    kept INT8 variant vs ORT fp32 at batch 64), as PNG bytes; None without pipeline.json or matplotlib."""
    report = load(results, "pipeline")
    if report is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = report["results"]
    names = [r["recipe"] for r in rows]
    series = {
        "ORT fp32 / PyTorch, batch 1": [r["latency"]["1"]["ort_vs_pytorch"] for r in rows],
        "ORT fp32 / PyTorch, batch 64": [r["latency"]["64"]["ort_vs_pytorch"] for r in rows],
        "kept INT8 / ORT fp32, batch 64": [r["latency"]["64"]["quantized_vs_fp32"] or 0 for r in rows],
    }
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    width = 0.27
    for i, (label, values) in enumerate(series.items()):
        ax.bar([k + (i - 1) * width for k in range(len(names))], values, width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("speed-up (×, paired per round)")
    m = report["machine"]
    ax.set_title(f"pipeline benchmark {report['date']} · {m['cpu']}, {m['cores']} cores", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
