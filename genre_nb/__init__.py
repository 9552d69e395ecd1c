__version__ = "0.1.0"


def __getattr__(name):
    "`genre_nb.predict(paths_or_arrays, model=None) -> DataFrame`, imported on first use (keeps `import genre_nb` light)."
    if name == "predict":
        from .inference import predict
        return predict
    raise AttributeError(f"module 'genre_nb' has no attribute {name!r}")
