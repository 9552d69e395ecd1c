"""Shared pytest fixtures: the real GTZAN material beside the project (skipped when absent) and bad audio files."""
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
GTZAN = ROOT.parent / "shared" / "data" / "gtzan"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Every test gets its own cache unless it asks otherwise: nothing leaks into ~/.cache."
    monkeypatch.setenv("GENRE_NB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("GENRE_NB_DATA", raising=False)


@pytest.fixture(scope="session")
def gtzan_dir() -> Path:
    "The shared real GTZAN material (10 excerpts, feature table, splits); skip when this checkout lacks it."
    if not (GTZAN / "audio" / "genres_original").is_dir():
        pytest.skip(f"real GTZAN material not found at {GTZAN} (it sits beside the project in development, not in a fresh clone)")
    return GTZAN


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
