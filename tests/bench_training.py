"""Benchmark of the deep models on this machine (not collected by pytest: run it by hand).

    .venv/bin/python tests/bench_training.py [--clips 600] [--epochs 3] [--models cnn,rnn,hybrid]

Prints, per model: seconds per training epoch on a GTZAN-sized training split (600 clips of 30 s, 3 s segments, one
random crop per clip per epoch, plus the per-epoch validation of 200 clips and the checkpoint), and the inference time
per 30 s clip once the bundle is loaded: from features (scaling, 10 segments, the model) and from the waveform (the
features computed too; the embedding branch's pretrained model excluded, see below). Random arrays of the real shapes
stand in for the features: the cost of a model does not depend on the values.
"""
import argparse, os, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np

from genre_nb import training as T

SHAPES = {"cnn": {"spec": 152}, "rnn": {"seq": 49}, "hybrid": {"spec": 152, "seq": 49, "embedding": 200}}
FEATURES = {"spec": ["mel", "chroma"], "seq": ["mfcc", "wavelet"], "embedding": ["musicnn"]}
ROWS = {"mel": 128, "chroma": 24, "mfcc": 40, "wavelet": 9, "musicnn": 200}
FRAMES = 1293  # 30 s at hop 512


def _clips(n, model, rng):
    inputs = {}
    for name, dim in SHAPES[model].items():
        frames = 10 if name == "embedding" else FRAMES   # musicnn: one frame per 3 s
        inputs[name] = [rng.normal(size=(dim, frames)).astype(np.float32) for _ in range(n)]
    return T.ClipSet(inputs, np.arange(n) % 10, [f"c{i}" for i in range(n)])


def _builder(model, seg):
    if model == "cnn":
        from genre_nb.cnn import build_cnn
        return lambda: build_cnn(seg.frames, 152)
    if model == "rnn":
        from genre_nb.rnn import build_rnn
        return lambda: build_rnn(seg.frames, 49)
    from genre_nb.hybrid import build_hybrid
    return lambda: build_hybrid(seg.frames, SHAPES["hybrid"])


def _identity(rows: int):
    "A fitted scaler that changes nothing (mean 0, scale 1): bundles store scalers as arrays."
    from genre_nb.features import FeatureScaler
    s = FeatureScaler(); s.mean_, s.scale_ = np.zeros(rows, np.float32), np.ones(rows, np.float32)
    return s


def bench(model, n_train, n_valid, epochs, crops, rng):
    seg = T.SegmentConfig(3.0, pooled={"embedding": T.embedding_fps("musicnn")} if model == "hybrid" else {})
    train, valid = _clips(n_train, model, rng), _clips(n_valid, model, rng)
    cfg = T.TrainConfig(epochs=epochs, batch_size=32, seed=0, crops_per_clip=crops)
    with tempfile.TemporaryDirectory() as d:
        res = T.fit(_builder(model, seg), train, valid, seg, cfg, checkpoint_dir=Path(d) / "ck", verbose=False)
        per_epoch = res.history.seconds.iloc[1:].mean() if len(res.history) > 1 else res.history.seconds.iloc[0]
        inputs = {k: FEATURES[k] for k in SHAPES[model]}
        cfgd = {"model": model, "inputs": inputs, "pooled": seg.pooled, "segment": {"seconds": 3.0}}
        scalers = {f: _identity(ROWS[f]) for fs in inputs.values() for f in fs}
        T.save_bundle(Path(d) / "b", res.model, cfgd, scalers)
        b = T.load_bundle(Path(d) / "b")
        feats = {f: rng.normal(size=(ROWS[f], 10 if f == "musicnn" else FRAMES)).astype(np.float32)
                 for fs in inputs.values() for f in fs}
        b.predict_features(feats)                     # warm-up (tracing)
        t0 = time.perf_counter(); n = 20
        for _ in range(n): b.predict_features(feats)
        ms_features = (time.perf_counter() - t0) / n * 1000
        y = (0.1 * rng.normal(size=30 * 22050)).astype(np.float32)
        from genre_nb import features as F
        hand = [f for f in feats if f != "musicnn"]
        F.compute_features(y, 22050, hand)
        t0 = time.perf_counter()
        for _ in range(5): F.compute_features(y, 22050, hand)
        ms_extract = (time.perf_counter() - t0) / 5 * 1000
    return per_epoch, ms_features, ms_extract


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=600, help="training clips (GTZAN's paper split: 600)")
    ap.add_argument("--valid", type=int, default=200, help="validation clips evaluated after every epoch")
    ap.add_argument("--epochs", type=int, default=3, help="epochs to time (the first, with tracing, is left out)")
    ap.add_argument("--crops", type=int, default=1, help="random crops per clip per epoch")
    ap.add_argument("--models", default="cnn,rnn,hybrid")
    a = ap.parse_args(argv)
    import tensorflow as tf
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; {a.clips} training clips x {a.crops} crop(s) of 3 s, "
          f"{a.valid} validation clips per epoch")
    rng = np.random.default_rng(0)
    for m in a.models.split(","):
        per_epoch, ms_feat, ms_extract = bench(m, a.clips, a.valid, a.epochs, a.crops, rng)
        print(f"{m:7s} train {per_epoch:6.1f} s/epoch | inference {ms_feat:6.1f} ms per 30 s clip from features "
              f"(10 segments), + {ms_extract:5.1f} ms to compute the handcrafted features from the waveform")
    print("(the hybrid's musicnn embedding of a 30 s clip costs extra: see genre_nb.embeddings, about 0.5 s on 2 cores)")


if __name__ == "__main__":
    sys.exit(main())
