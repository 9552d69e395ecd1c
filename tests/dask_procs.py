"""A Dask scheduler and worker processes on 127.0.0.1, started and stopped by a test or a benchmark (not a test file).

`LocalDask` starts `dask scheduler` (a scheduler file in a temporary folder, a free port, no dashboard) and
`dask worker` processes (one thread each, no nanny: the worker's pid is the process that does the work), and always
stops them.
`cpu_seconds` reads a process's CPU time (its own and its children's) from outside, through psutil."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")
START_S = 120          # generous: four agents share two cores here, and `distributed` takes seconds to import


def cpu_seconds(pid: int) -> float:
    "User + system CPU seconds of process `pid` and of its children (waited for or alive), read from outside."
    import psutil
    p = psutil.Process(pid)
    t = p.cpu_times()
    alive = sum(sum(c.cpu_times()[:2]) for c in p.children(recursive=True) if c.is_running())
    return t.user + t.system + t.children_user + t.children_system + alive


class LocalDask:
    "A scheduler and `n` workers (`w0`, `w1`, ...) on 127.0.0.1 in their own processes; a context manager."
    def __init__(self, folder: Path, n: int = 1, cwd: Path | None = None, env: dict | None = None):
        self.folder, self.n, self.cwd = Path(folder), n, cwd   # cwd: the workers' working folder
        self.env = {**os.environ, **(env or {})}
        self.info = self.folder / "scheduler.json"
        self.scheduler, self.workers = None, {}

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        try: self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc): self.stop()

    def _log(self, name: str):
        return open(self.folder / f"{name}.log", "wb")

    def _start(self):
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
             str(self.info)], stdout=subprocess.DEVNULL, stderr=self._log("scheduler"), env=self.env)
        t0 = time.monotonic()
        while not self.info.exists():
            if self.scheduler.poll() is not None or time.monotonic() - t0 > START_S:
                raise RuntimeError(f"the Dask scheduler did not start: {self.logs('scheduler')}")
            time.sleep(0.2)
        for k in range(self.n): self.add_worker(f"w{k}")
        self.wait_for(self.n)

    def add_worker(self, name: str) -> subprocess.Popen:
        "Start one more worker process named `name`."
        p = subprocess.Popen([DASK, "worker", "--scheduler-file", str(self.info), "--host", "127.0.0.1",
                              "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--no-dashboard", "--name", name],
                             stdout=subprocess.DEVNULL, stderr=self._log(name), cwd=self.cwd, env=self.env)
        self.workers[name] = p
        return p

    def wait_for(self, n: int):
        "Wait until the scheduler knows `n` workers."
        from distributed import Client
        with Client(scheduler_file=str(self.info), timeout=f"{START_S}s") as c:
            c.wait_for_workers(n, timeout=START_S)

    @property
    def address(self) -> str:
        return json.loads(self.info.read_text())["address"]

    def pid(self, name: str = "w0") -> int: return self.workers[name].pid

    def cpu(self) -> dict[str, float]:
        "CPU seconds of each worker process that is alive."
        return {k: cpu_seconds(p.pid) for k, p in self.workers.items() if p.poll() is None}

    def logs(self, name: str) -> str:
        f = self.folder / f"{name}.log"
        return f.read_text(errors="replace")[-3000:] if f.exists() else ""

    def stop(self):
        "Stop every process started here: the workers first, then the scheduler (terminate; kill after 30 s)."
        for group in (list(self.workers.values()), [self.scheduler] if self.scheduler else []):
            for p in group:
                if p.poll() is None: p.terminate()
            for p in group:
                try: p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=30)


def timed_run(cmd: list, timeout: float = 600, **kw) -> tuple[subprocess.CompletedProcess, float]:
    "Run `cmd` to the end; (its result, its CPU seconds and its children's), read from outside by `os.wait4`."
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    import threading
    out = {}
    readers = [threading.Thread(target=lambda k, f: out.__setitem__(k, f.read()), args=(k, f), daemon=True)
               for k, f in (("stdout", p.stdout), ("stderr", p.stderr))]
    for t in readers: t.start()
    t0 = time.monotonic()
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid: break
        if time.monotonic() - t0 > timeout:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers: t.join(timeout=30)
    # ru_utime/ru_stime of wait4: the process and the children it waited for (loky workers, for instance)
    return subprocess.CompletedProcess(p.args, p.returncode, out.get("stdout", ""), out.get("stderr", "")), \
        ru.ru_utime + ru.ru_stime
