"""toolkit: train PyTorch models from recipes, export them to self-describing ONNX, deploy without torch.

The version lives in one place, pyproject.toml; `toolkit.__version__` reads it from the installed package's
metadata when first asked for (importlib.metadata costs milliseconds, so not at every import).
"""


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("toolkit")
        except PackageNotFoundError:  # a source tree on sys.path that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
