"""cvtune: find the fastest way to run a vision model within an accuracy budget, measured on the target."""

__version__ = "0.1.0"


def load_deployed(path):  # noqa: ANN001, ANN201 - thin lazy re-export keeps `import cvtune` light
    """Load an exported `deploy.json` (or its folder): `.predict(image)`, `.open()`, `.runtime`, `.task`."""
    from .deploy import load_deployed as _load_deployed

    return _load_deployed(path)
