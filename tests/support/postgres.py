"""A throwaway PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` from Debian's
``postgresql`` package (scripts/install.sh installs it), run as an unprivileged user, on
a free 127.0.0.1 port and a private socket directory, stopped and removed afterwards.

A missing server is a failure, not a skip: PostgreSQL is a supported database, so the
tests that run on it must run.

Databases are cheap to make: :meth:`PostgresCluster.create_database` (empty, or a copy of a
template via ``CREATE DATABASE … TEMPLATE``, a file copy on the server side).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
SUPERUSER = "fashionbot"  # the cluster's superuser (trust authentication, loopback and socket only)


class PostgresMissing(RuntimeError):
    pass


def find_binary(name: str) -> Path:
    for d in BIN_DIRS:
        if (d / name).exists():
            return d / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise PostgresMissing(
        f"PostgreSQL's {name} was not found (looked in /usr/lib/postgresql/*/bin and PATH): "
        "install Debian's postgresql package (scripts/install.sh does)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    root: Path
    port: int
    user: str | None  # the OS user the server runs as (None: this one)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str, driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # ---- running commands as the server's user ------------------------------
    def _as_user(self, argv: list[str]) -> list[str]:
        if self.user is None:
            return argv
        return ["runuser", "-u", self.user, "--", *argv]

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("timeout", 120)  # a stuck server or command fails the test, it never hangs it
        return subprocess.run(self._as_user(argv), check=True, capture_output=True, text=True, **kw)

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self.run(
            [str(find_binary("psql")), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql]
        )  # fmt: skip
        return out.stdout

    # ---- databases -----------------------------------------------------------
    def create_database(self, prefix: str = "t", template: str | None = None) -> str:
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        self.run(
            [str(initdb), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"]
        )  # fmt: skip
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=off",  # a throwaway cluster: durability buys nothing here
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=64MB",
            ]
        )
        self.run([str(pg_ctl), "-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", "60", "start"])  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self.psql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run([str(find_binary("pg_ctl")), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "server.log").read_text().splitlines()[-lines:])
        return ""


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` system user
    (Debian's package makes it); as anyone else, as oneself."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise PostgresMissing("running as root and there is no 'postgres' user to run the server as") from err
    return "postgres"


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster; yield it; stop it and remove its files."""
    find_binary("initdb")  # fail early, and clearly
    user = _server_user()
    # Not under pytest's tmp dirs: those are private to the test user, and the server's
    # user must reach its data and socket directories.
    root = Path(tempfile.mkdtemp(prefix="fashionbot-pg-"))
    (root / "socket").mkdir()
    os.chmod(root, 0o755)
    if user is not None:
        pw = pwd.getpwnam(user)
        for p in (root, root / "socket"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    cluster = PostgresCluster(root=root, port=free_port(), user=user)
    try:
        try:
            cluster.start()
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"PostgreSQL did not start: {err.stderr}\n{cluster.log_tail()}") from err
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
