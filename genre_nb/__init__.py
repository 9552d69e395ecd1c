"""genre_nb: music genre classification on GTZAN, a reproduction in notebooks.

The public names are the chapters' modules, `predict` and `predict_iter`; they are imported on first use (as librosa
does), so `import genre_nb` and `dir(genre_nb)` stay light: neither imports TensorFlow."""
__version__ = "0.1.0"

import importlib

_SUBMODULES = ("core", "audio", "cluster", "data", "download", "features", "embeddings", "musicnn_onnx", "mn04",
               "cluster_features", "featureset", "evaluate", "baselines", "training", "cnn", "rnn", "hybrid", "bundle",
               "report", "transfer", "models", "inference", "library", "reproduce", "cli")
__all__ = [*_SUBMODULES, "predict", "predict_iter", "__version__"]


def __getattr__(name):
    """A chapter's module, imported on first use; `predict(paths_or_arrays, model=None) -> DataFrame` and
    `predict_iter(paths_or_arrays, model=None)` (its rows, each file's as soon as it is done), from `inference`."""
    if name in _SUBMODULES: return importlib.import_module(f".{name}", __name__)
    if name in ("predict", "predict_iter"): return getattr(importlib.import_module(".inference", __name__), name)
    raise AttributeError(f"module 'genre_nb' has no attribute {name!r}")


def __dir__():
    "The public names: what `__all__` declares."
    return list(__all__)
