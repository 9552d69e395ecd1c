"""The inference path without TensorFlow: musicnn on ONNX Runtime with a numpy front end agrees with the Keras port,
imports neither TensorFlow, Keras nor librosa, refuses a damaged file in one line, and falls back to TensorFlow."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_nb import inference as I
from genre_nb import musicnn_onnx as O
from genre_nb.data import load_audio

ROOT = Path(__file__).resolve().parents[1]


def _py(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture(scope="module")
def excerpts(gtzan_dir) -> list[Path]:
    "The 10 real GTZAN excerpts (one per genre)."
    return sorted((gtzan_dir / "audio" / "genres_original").glob("*/*.wav"))


@pytest.fixture
def song(tmp_path) -> Path:
    "A 30 s stereo WAV at 44.1 kHz (not real music: for import and plumbing checks)."
    t = np.arange(44100 * 30) / 44100
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2).astype(np.float32)
    sf.write(tmp_path / "song.wav", np.stack([y, y[::-1]], 1), 44100)
    return tmp_path / "song.wav"


def test_front_end_equals_librosa_on_real_excerpts(excerpts):
    from genre_nb.embeddings import musicnn_logmel
    d = max(float(np.abs(O.numpy_logmel(y, 22050) - musicnn_logmel(y, 22050)).max())
            for y in map(load_audio, excerpts))
    print(f"numpy vs librosa log-mel, {len(excerpts)} real excerpts: max abs diff {d:.2e}")
    assert d < 1e-5


def test_embeddings_and_top_genre_agree_on_real_excerpts(excerpts):
    from genre_nb.embeddings import musicnn_outputs
    worst = {f"{m}/{k}": 0.0 for m, layers in O.ONNX_LAYERS.items() for k in layers}
    for y in map(load_audio, excerpts):
        for m, layers in O.ONNX_LAYERS.items():
            a, b = O.onnx_outputs(y, 22050, m), musicnn_outputs(y, 22050, m)
            for k in layers: worst[f"{m}/{k}"] = max(worst[f"{m}/{k}"], float(np.abs(a[k] - b[k]).max()))
    print(f"ONNX vs Keras, {len(excerpts)} real excerpts: max abs diff {worst}")
    assert max(worst.values()) < 1e-4
    onnx, tf = I.predict(excerpts, backend="onnx"), I.predict(excerpts, backend="tf")
    assert onnx.error.isna().all() and tf.error.isna().all()
    assert onnx.genre.tolist() == tf.genre.tolist()
    labels = I.model_labels(I.load_model())
    assert np.abs(onnx[labels].to_numpy(float) - tf[labels].to_numpy(float)).max() < 1e-4


def test_onnx_prediction_imports_no_tensorflow_keras_or_librosa(song):
    r = _py(f"""import sys, genre_nb.inference as I
df = I.predict([{str(song)!r}])
assert df.error.isna().all(), df.error.tolist()
print(sorted(m for m in ('tensorflow', 'keras', 'librosa', 'tf_keras', 'sklearn', 'matplotlib') if m in sys.modules))""")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]" and r.stderr == "", (r.stdout, r.stderr)


def test_backend_tf_forces_tensorflow(song):
    r = _py(f"""import sys, genre_nb.inference as I
df = I.predict([{str(song)!r}])
print('tensorflow' in sys.modules, df.genre.iloc[0])""", env={"GENRE_NB_BACKEND": "tf"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[0] == "True"


def _damaged_copy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = O.onnx_file(folder=folder)
    data = bytearray(O.onnx_file().read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    shutil.copy(O.onnx_file().with_name("MSD_musicnn.onnx.sha256"), folder)
    return f


def test_missing_or_damaged_file_is_one_line(tmp_path):
    O.check_onnx(O.onnx_file())
    with pytest.raises(O.OnnxUnavailable, match="missing") as e: O.onnx_session(path=tmp_path / "MSD_musicnn.onnx")
    assert "\n" not in str(e.value) and "GENRE_NB_BACKEND=tf" in str(e.value)
    bad = _damaged_copy(tmp_path / "bad")
    with pytest.raises(O.OnnxUnavailable, match="damaged") as e: O.onnx_session(path=bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_damaged_file_falls_back_to_tensorflow_once(tmp_path, monkeypatch, capsys):
    _damaged_copy(tmp_path / "bad")
    monkeypatch.setattr(O, "onnx_dir", lambda: tmp_path / "bad")
    monkeypatch.setattr(O, "_SESSIONS", {})
    monkeypatch.setattr(I, "_NOTICED", set())
    m = I.load_model()
    assert [I.resolve_backend(m) for _ in range(3)] == ["tf"] * 3
    err = capsys.readouterr().err
    assert err.count("ONNX file is damaged") == 1 and "predicting with TensorFlow" in err, err
    with pytest.raises(O.OnnxUnavailable): I.resolve_backend(m, "onnx")


def test_models_without_onnx_path_fall_back_once(monkeypatch, capsys):
    monkeypatch.setattr(I, "_NOTICED", set())
    shipped = I.load_model()
    vgg = I.TransferModel(shipped.labels, shipped.mean, shipped.scale, shipped.coef, shipped.intercept,
                          {**shipped.meta, "embedding": {"name": "vggish", "sr": 16000}})
    assert I.resolve_backend(shipped) == "onnx" and I.resolve_backend(shipped, "tf") == "tf"
    assert [I.resolve_backend(vgg) for _ in range(2)] == ["tf", "tf"]
    assert capsys.readouterr().err.count("no ONNX path") == 1
    with pytest.raises(I.ParameterError, match="ONNX path"): I.resolve_backend(vgg, "onnx")
    with pytest.raises(I.ParameterError, match="auto, onnx, tf"): I.resolve_backend(shipped, "cuda")


def test_workers_keep_input_order_and_errors(song, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(22050 * 5, np.float32), 22050)
    y, again = load_audio(song), shutil.copy(song, tmp_path / "again.wav")
    items = [song, tmp_path / "missing.wav", (y[: 22050 * 8], 22050), quiet, again]
    one, many = I.predict(items, jobs=1), I.predict(items, jobs=3)
    assert one.file.tolist() == many.file.tolist() == [str(song), str(tmp_path / "missing.wav"), "array2", str(quiet), str(again)]
    assert many.error.tolist()[1].startswith("no such file") and many.error.tolist()[3].startswith("silent")
    ok = many.error.isna().to_numpy()
    labels = I.model_labels(I.load_model())
    np.testing.assert_allclose(many[labels].to_numpy(float)[ok], one[labels].to_numpy(float)[ok], atol=1e-6)
    with pytest.raises(I.ParameterError): I.predict([song], jobs=0)


def test_export_reproduces_the_shipped_network(tmp_path):
    pytest.importorskip("tf2onnx", reason="tf2onnx is a development-time tool (pip install tf2onnx) for the export")
    X = np.random.default_rng(0).uniform(0, 3, (4, 187, 96)).astype(np.float32)
    for m, layers in O.ONNX_LAYERS.items():
        p = O.export_onnx(m, folder=tmp_path)
        a = O.onnx_session(path=p).run(list(layers), {"logmel": X})
        b = O.onnx_session(m).run(list(layers), {"logmel": X})
        for u, v in zip(a, b): np.testing.assert_allclose(u, v, atol=1e-5)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["LICENSE.musicnn.md", *sorted(
        f"{m}.onnx{s}" for m in O.ONNX_MODELS for s in ("", ".sha256"))]
