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

echo
echo "demo done: run directories under $OUT (curves.png, confusion.png, forecast.png, metrics.json, model.onnx)"
