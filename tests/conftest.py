"""Shared pytest fixtures: the optional real GTZAN material (skipped, saying why, when absent) and bad audio files.

The real material is found by `genre_nb.core.real_data`, the one place that knows where it is (see its docstring).
Point GENRE_NB_TEST_DATA at an empty folder to run without it."""
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_nb.core import real_data

ROOT = Path(__file__).resolve().parents[1]


def _material(*parts: str, what: str) -> Path:
    "`real_data(*parts)`, or skip the test with a one-line reason naming GENRE_NB_TEST_DATA."
    p, rel = real_data(*parts), "/".join(parts)
    if p is None:
        where = (f"no {rel} in GENRE_NB_TEST_DATA={os.environ['GENRE_NB_TEST_DATA']!r}" if "GENRE_NB_TEST_DATA" in os.environ
                 else f"GENRE_NB_TEST_DATA is unset and the default material folder (genre_nb.core.real_data) has no {rel}")
        pytest.skip(f"optional real {what} not found: {where}")
    return p


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Every test gets its own cache unless it asks otherwise: nothing leaks into ~/.cache."
    monkeypatch.setenv("GENRE_NB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("GENRE_NB_DATA", raising=False)


@pytest.fixture(scope="session")
def gtzan_dir() -> Path:
    "The real GTZAN material (10 excerpts under audio/genres_original, feature table, splits); skip when absent."
    return _material("gtzan", "audio", "genres_original", what="GTZAN excerpts").parents[1]


@pytest.fixture(scope="session")
def kaggle_csv() -> Path:
    "Kaggle's real GTZAN feature table, features_30_sec.csv (1000 rows); skip when absent."
    return _material("gtzan", "features_30_sec.csv", what="GTZAN feature table")


@pytest.fixture(scope="session")
def gtzan_mini_dir() -> Path:
    "gtzan_mini: 10 real FLAC excerpts per genre, Marsyas layout (genres/<genre>/<genre>.000NN.flac); skip when absent."
    return _material("gtzan_mini", "genres", what="gtzan_mini FLACs")


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    "A Kaggle-layout folder with one good track and one of each kind of bad file."
    root = tmp_path / "data" / "genres_original"
    (root / "blues").mkdir(parents=True); (root / "rock").mkdir()
    t = np.arange(22050 * 6) / 22050
    good = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(root / "blues" / "blues.00000.wav", good, 22050, subtype="PCM_16")
    data = (root / "blues" / "blues.00000.wav").read_bytes()
    (root / "blues" / "blues.00001.wav").write_bytes(data[: len(data) * 2 // 3])     # truncated
    (root / "rock" / "rock.00000.wav").write_bytes(b"")                              # empty
    (root / "rock" / "rock.00001.wav").write_text("definitely not a RIFF file\n")    # text named .wav
    sf.write(root / "rock" / "rock.00002.wav", np.zeros(22050 * 5, np.float32), 22050)   # silent
    sf.write(root / "rock" / "rock.00003.wav", good[:22050], 22050)                  # 1 s: too short
    sf.write(root / "rock" / "rock.00004.wav", good, 22050, subtype="PCM_16")        # a duplicate of blues.00000
    return root.parent
