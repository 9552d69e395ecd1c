"""`genre-nb download mini` as a user runs it, against a local HTTP server on 127.0.0.1 (no network needed).

The server serves a zip laid out like GTZAN-mini's archive (`gtzan_mini-main/genres/<genre>/<genre>.000NN.wav`)
with a few tiny generated tones; `--url` and `--md5` point the command at it. The real archive is never fetched.
"""
import hashlib
import http.server
import io
import socket
import subprocess
import sys
import threading
import zipfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

GENRE_NB = str(Path(sys.executable).parent / "genre-nb")   # the console script installed beside this Python


def genre_nb(*args):
    return subprocess.run([GENRE_NB, *map(str, args)], capture_output=True, text=True, timeout=120)


def tones_zip(path, genres=("blues", "rock"), per_genre=2, top="gtzan_mini-main") -> str:
    "Write a zip laid out like GTZAN-mini's archive, with 0.25 s tones (8 kHz) as audio; return its md5."
    t = np.arange(2000) / 8000
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{top}/README.md", "a test archive\n")
        for i, g in enumerate(genres):
            for k in range(per_genre):
                buf = io.BytesIO()
                sf.write(buf, (0.3 * np.sin(2 * np.pi * 110 * (2 * i + k + 1) * t)).astype(np.float32), 8000,
                         format="WAV", subtype="PCM_16")
                z.writestr(f"{top}/genres/{g}/{g}.{k:05d}.wav", buf.getvalue())
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    "Serves a folder's files; `/short/<name>` promises the whole file, sends half and hangs up."
    timeout = 10
    def log_message(self, *args): pass
    def do_GET(self):
        if not self.path.startswith("/short/"): return super().do_GET()
        data = (Path(self.directory) / self.path[len("/short/"):]).read_bytes()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data[: len(data) // 2]); self.close_connection = True


@contextmanager
def serve(folder):
    "Serve `folder` over HTTP on 127.0.0.1 (a free port) from a thread; yield the base URL; stop the server on exit."
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(folder)))
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True); th.start()
    try: yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally: srv.shutdown(); srv.server_close(); th.join(5)


def closed_port_url() -> str:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/main.zip"


@pytest.fixture
def site(tmp_path):
    "A served folder with a good archive and a truncated one; yields (base URL, md5 of main.zip, md5 of the truncated one)."
    d = tmp_path / "site"; d.mkdir()
    md5 = tones_zip(d / "main.zip")
    (d / "truncated.zip").write_bytes((d / "main.zip").read_bytes()[:-300])
    with serve(d) as base:
        yield base, md5, hashlib.md5((d / "truncated.zip").read_bytes()).hexdigest()


def assert_one_line_error(r):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("genre-nb download: error: "), r.stderr


def test_help_names_the_options():
    r = genre_nb("download", "--help")
    assert r.returncode == 0
    for opt in ("mini", "--dest", "--url", "--md5"): assert opt in r.stdout


def test_right_checksum_prints_the_folder_and_leaves_only_the_copy(site, tmp_path):
    base, md5, _ = site
    dest = tmp_path / "new" / "data"
    r = genre_nb("download", "mini", "--dest", dest, "--url", f"{base}/main.zip", "--md5", md5)
    assert r.returncode == 0, r.stderr
    folder = Path(r.stdout.strip())
    assert r.stdout.count("\n") == 1 and folder == (dest / "gtzan_mini" / "genres").resolve()
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.wav")) == [
        "blues/blues.00000.wav", "blues/blues.00001.wav", "rock/rock.00000.wav", "rock/rock.00001.wav"]
    assert [p.name for p in dest.iterdir()] == ["gtzan_mini"]          # no archive, no temporary folder
    a = genre_nb("audit", folder, "--out", tmp_path / "audit")           # the printed folder is one genre-nb reads
    assert a.returncode == 0, a.stderr
    # a second run reuses the copy without the network (nothing answers at this address) and says so
    r2 = genre_nb("download", "mini", "--dest", dest, "--url", closed_port_url(), "--md5", md5)
    assert r2.returncode == 0, r2.stderr
    assert Path(r2.stdout.strip()) == folder and "already" in r2.stderr


@pytest.mark.parametrize("case", ["wrong_checksum", "truncated_archive", "dropped_connection", "no_network", "http_404"])
def test_a_failed_download_is_one_line_and_leaves_nothing(site, tmp_path, case):
    base, md5, truncated_md5 = site
    url, want, expect = {"wrong_checksum": (f"{base}/main.zip", "0" * 32, f"expected md5 {'0' * 32}, got {md5}"),
                         "truncated_archive": (f"{base}/truncated.zip", truncated_md5, "archive is damaged"),
                         "dropped_connection": (f"{base}/short/main.zip", md5, "interrupted"),
                         "no_network": (closed_port_url(), md5, "no network"),
                         "http_404": (f"{base}/nope.zip", md5, "HTTP 404")}[case]
    dest = tmp_path / "out" / "data"
    r = genre_nb("download", "mini", "--dest", dest, "--url", url, "--md5", want)
    assert_one_line_error(r)
    assert expect in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()                              # not even the folders it created


def test_failure_in_an_existing_folder_leaves_it_as_it_was(site, tmp_path):
    base, _, _ = site
    (tmp_path / "mine.txt").write_text("a user's file")
    r = genre_nb("download", "mini", "--dest", tmp_path, "--url", f"{base}/main.zip", "--md5", "1" * 32)
    assert_one_line_error(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", "site"]


def test_an_incomplete_copy_is_reported_not_replaced(site, tmp_path):
    base, md5, _ = site
    r = genre_nb("download", "mini", "--dest", tmp_path / "d", "--url", f"{base}/main.zip", "--md5", md5)
    assert r.returncode == 0, r.stderr
    (Path(r.stdout.strip()) / "rock" / "rock.00001.wav").unlink()
    r = genre_nb("download", "mini", "--dest", tmp_path / "d", "--url", f"{base}/main.zip", "--md5", md5)
    assert_one_line_error(r)
    assert "is incomplete" in r.stderr and "remove it" in r.stderr


@pytest.mark.parametrize("args, expect", [(["--md5", "xyz"], "32 hexadecimal digits"),
                                          (["--url", "github.com/a.zip"], "http:// or https://")])
def test_bad_options_are_one_line(tmp_path, args, expect):
    r = genre_nb("download", "mini", "--dest", tmp_path / "d", *args)
    assert_one_line_error(r)
    assert expect in r.stderr and not (tmp_path / "d").exists()
