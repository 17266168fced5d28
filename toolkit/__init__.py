"""toolkit: train PyTorch models from recipes, export them to self-describing ONNX, deploy without torch."""

__version__ = "0.1.0"
