#!/usr/bin/env bash
# `make demo`: the main job end to end on built-in data. Each stage reads only what the stage before wrote.
# Stages land issue by issue; this script runs every stage that exists.
set -euo pipefail
cd "$(dirname "$0")/.."
TK=.venv/bin/toolkit
OUT=${DEMO_DIR:-runs/demo}
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== recipes"
$TK recipes

echo "== train: CNN on scikit-learn digits (8x8 images)"
$TK train cnn --out "$OUT/cnn"

echo "== eval: test metrics and confusion matrix from the best checkpoint"
$TK eval "$OUT/cnn"

echo "== train: MLP on scikit-learn breast_cancer (tabular)"
$TK train mlp --out "$OUT/mlp" --no-progress

echo "== train: LSTM forecaster on statsmodels' yearly sunspots (vs persistence and AR baselines)"
$TK train lstm --out "$OUT/lstm" --no-progress
$TK eval "$OUT/lstm"

echo "== export: the CNN to self-describing ONNX, parity with PyTorch proven at several batch sizes"
$TK export "$OUT/cnn"

echo "== validate: the ONNX model alone reproduces the test metrics (onnxruntime, no torch needed)"
$TK validate "$OUT/cnn/model.onnx" --run "$OUT/cnn"
$TK info "$OUT/cnn/model.onnx"

echo "== quantize: INT8 candidates scored on the validation split and timed beside fp32; kept only if both hold"
$TK quantize "$OUT/cnn/model.onnx"
if [ -f "$OUT/cnn/model.int8.onnx" ]; then
  $TK validate "$OUT/cnn/model.int8.onnx"
  $TK bench "$OUT/cnn/model.onnx" "$OUT/cnn/model.int8.onnx" --run "$OUT/cnn" --batch 1,64 --rounds 3
else
  $TK bench "$OUT/cnn/model.onnx" --run "$OUT/cnn" --batch 1,64 --rounds 3
fi

echo "== predict: PNG files in, labels out (preprocessing from the model's metadata, no torch)"
mkdir -p "$OUT/digits"
.venv/bin/python - "$OUT/digits" <<'PY'
import sys
from PIL import Image
from sklearn.datasets import load_digits
d = load_digits()
for i in range(3):
    Image.fromarray((d.images[i] * 255 / 16).astype("uint8"), mode="L").save(f"{sys.argv[1]}/digit{i}-is-{d.target[i]}.png")
PY
$TK predict "$OUT/cnn/model.onnx" "$OUT/digits" --top-k 2

echo "== serve: Open Inference Protocol server on 127.0.0.1, one V2 request and one KServe V1 request, then SIGTERM"
PORT=${DEMO_PORT:-18765}
$TK serve "$OUT/cnn/model.onnx" --port "$PORT" --grpc-port $((PORT + 1)) &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/v2/health/ready" >/dev/null && break; sleep 0.2; done
curl -sf "127.0.0.1:$PORT/v2/models/cnn"; echo  # a model file is served under its run directory's name
.venv/bin/python - "$PORT" "$OUT/digits" <<'PY'
import base64, json, sys, urllib.request
from pathlib import Path
port, folder = sys.argv[1], Path(sys.argv[2])
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
out = post("/v2/models/cnn/infer", {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]})
print("V2 infer:", [(o["name"], o["shape"]) for o in out["outputs"]])
files = sorted(folder.glob("*.png"))
out = post("/v1/models/cnn:predict", {"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]})
for f, p in zip(files, out["predictions"]):
    print(f"V1 predict: {f.name} -> {p['label']} ({p['probability']:.3f})")
PY
kill -TERM $SERVER; wait $SERVER || true
trap - EXIT

echo
echo "demo done: run directories under $OUT (curves.png, confusion.png, forecast.png, metrics.json, model.onnx,"
echo "model.int8.onnx, quantize.json, bench.json, bench.png)"
