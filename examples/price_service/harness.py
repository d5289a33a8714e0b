"""Start the price service under a real WSGI server, fire bursts at it, stop it.

Shared by ``run.py``, ``tests/integration/`` and ``benchmarks/wsgi_burst.py``.
Every server binds 127.0.0.1 on a port the OS picks; every process started
here is stopped by its pid (SIGTERM, then SIGKILL to its process group).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; only the checker reads this

__all__ = [
    "EXAMPLE_DIR",
    "AppServer",
    "BurstResult",
    "age_cached",
    "burst",
    "cached_quote_key",
    "delete_cached",
    "http_json",
    "read_cached",
    "setup_db",
    "start_app_server",
]

EXAMPLE_DIR = Path(__file__).resolve().parent
ServerKind = Literal["gunicorn", "gunicorn-gevent", "waitress"]
_LISTENING = {
    # gunicorn's arbiter logs the bound socket, waitress logs what it serves on; both name the real port.
    "gunicorn": re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)"),
    "gunicorn-gevent": re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)"),
    "waitress": re.compile(r"Serving on http://127\.0\.0\.1:(\d+)"),
}


def http_json(url: str, *, method: str = "GET", timeout: float = 10.0) -> tuple[int, Any]:
    """One request; return (status, decoded JSON body or None). HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, None


def _env(exchange_url: str, db_path: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    pythonpath = [str(EXAMPLE_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        DJANGO_SETTINGS_MODULE="price_service.settings",
        PYTHONPATH=os.pathsep.join(pythonpath),
        PRICE_SERVICE_EXCHANGE_URL=exchange_url,
        PRICE_SERVICE_DB=str(db_path),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def setup_db(db_path: Path, *, rows: int = 5000, timeout: float = 60.0) -> None:
    """Migrate and seed the SQLite file at ``db_path`` (``manage.py setup_db`` in a subprocess)."""
    env = _env("http://127.0.0.1:9", db_path, None)
    subprocess.run(
        [sys.executable, str(EXAMPLE_DIR / "manage.py"), "setup_db", "--rows", str(rows)],
        cwd=EXAMPLE_DIR,
        env=env,
        check=True,
        timeout=timeout,
        capture_output=True,
    )


@dataclasses.dataclass
class AppServer:
    """A running WSGI server process serving the price service."""

    kind: ServerKind
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, *, grace: float = 10.0) -> int | None:
        """SIGTERM the server, wait up to ``grace`` seconds, then SIGKILL its process group. Return its exit code."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Still running, so the group id is still ours: the gunicorn worker goes with its arbiter.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=grace)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_app_server(  # noqa: PLR0913  (all keyword-only; each is a knob the tests turn)
    kind: ServerKind,
    *,
    workdir: Path,
    exchange_url: str,
    db_path: Path,
    threads: int = 32,
    workers: int = 1,
    env: dict[str, str] | None = None,
    ready_timeout: float = 30.0,
) -> AppServer:
    """Start gunicorn (gthread, ``workers`` processes) or waitress with ``threads`` threads each; wait until it answers.

    ``workers`` above 1 needs gunicorn: waitress serves from one process.

    Logs (and gunicorn's pid file) go to ``workdir``. On any failure to come up,
    the process is stopped and RuntimeError carries its log.
    """
    if workers != 1 and kind != "gunicorn":
        msg = f"workers={workers!r} needs kind='gunicorn' (gthread); {kind} runs one process"
        raise ValueError(msg)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{kind}.log"
    if kind in ("gunicorn", "gunicorn-gevent"):
        # gthread: one worker with ``threads`` threads; gevent: one worker
        # where every request is a greenlet and none waits for a thread.
        worker_args = (
            ["--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads)]
            if kind == "gunicorn"
            else ["--worker-class", "gevent", "--workers", "1", "--worker-connections", "1000"]
        )
        cmd = [
            sys.executable, "-m", "gunicorn", *worker_args,
            "--bind", "127.0.0.1:0",
            "--pid", str(workdir / "gunicorn.pid"),
            "--error-logfile", str(log_path),
            "--graceful-timeout", "5", "--timeout", "60",
            "--chdir", str(EXAMPLE_DIR),
            *_gunicorn_extra_flags(),
            "price_service.wsgi:application",
        ]  # fmt: skip
    elif kind == "waitress":
        cmd = [
            sys.executable, "-m", "waitress",
            "--listen=127.0.0.1:0", f"--threads={threads}",
            "--connection-limit=1000", "--backlog=1024",
            "price_service.wsgi:application",
        ]  # fmt: skip
    else:
        msg = f"kind must be 'gunicorn', 'gunicorn-gevent' or 'waitress', not {kind!r}"
        raise ValueError(msg)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            cwd=EXAMPLE_DIR,
            env=_env(exchange_url, db_path, env),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so stop() can reach the workers
        )
    server = AppServer(kind, process, log_path, workers=workers)
    try:
        _wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _gunicorn_extra_flags() -> list[str]:
    # Recent gunicorn (27 here) opens a control socket at ~/.gunicorn/gunicorn.ctl by default: one path shared
    # by every instance on the machine. Test servers need none; older versions lack the flag.
    from gunicorn.config import KNOWN_SETTINGS  # noqa: PLC0415  (only when gunicorn is asked for)

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def _wait_ready(server: AppServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pattern = _LISTENING[server.kind]
    pids: set[int] = set()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            msg = f"{server.kind} exited with {server.process.returncode} before serving:\n{server.log()}"
            raise RuntimeError(msg)
        if not server.port and (match := pattern.search(server.log())):
            server.port = int(match.group(1))
        if server.port:
            try:
                status, body = http_json(f"{server.url}/healthz", timeout=2.0)
            except OSError:
                status, body = 0, None
            if status == 200:
                pids.add(body["pid"])
                if len(pids) >= server.workers:  # every worker process answers, not just the first up
                    return
        time.sleep(0.05)
    msg = f"{server.kind} not ready after {timeout} s:\n{server.log()}"
    raise RuntimeError(msg)


@dataclasses.dataclass
class BurstResult:
    """What ``n`` simultaneous requests got: per request (status, body, seconds), and the burst's wall time.

    ``released`` is when the Barrier let the clients go and ``spans`` each
    request's (start, end), all ``time.monotonic()`` seconds: the clock of the
    exchange's ``intervals``, so a test can line requests up with upstream calls.
    """

    responses: list[tuple[int, Any, float]]
    elapsed: float
    released: float = 0.0
    spans: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    @property
    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for status, _, _ in self.responses:
            counts[status] = counts.get(status, 0) + 1
        return counts

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return len(self.responses) - self.ok

    def latency_ms(self, pct: float) -> float:
        ordered = sorted(seconds for _, _, seconds in self.responses)
        index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


def burst(url: str, n: int = 200, *, timeout: float = 30.0) -> BurstResult:
    """Send ``n`` GETs to ``url`` from ``n`` threads released together by a Barrier.

    ``elapsed`` runs from the release of the Barrier (before any request is
    sent) to the end of the last response (after every request is answered).

    A request that fails at the socket level (refused, reset, timed out)
    counts with status 0 and the exception text as its body.
    """
    if n < 1:
        msg = f"n must be at least 1, not {n!r}"
        raise ValueError(msg)
    # The Barrier's action runs once every party has arrived and before any is released, so
    # ``released`` is no later than the first request: ``elapsed`` covers the whole burst.
    released: list[float] = []
    barrier = threading.Barrier(n + 1, action=lambda: released.append(time.monotonic()))
    responses: list[tuple[int, Any, float]] = [(0, "not run", 0.0)] * n
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * n

    def client(i: int) -> None:
        barrier.wait(timeout=timeout)
        start = time.monotonic()
        try:
            status, body = http_json(url, timeout=timeout)
        except OSError as exc:
            status, body = 0, f"{type(exc).__name__}: {exc}"
        end = time.monotonic()
        responses[i] = (status, body, end - start)
        spans[i] = (start, end)

    threads = [threading.Thread(target=client, args=(i,), name=f"burst-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=timeout)
    for thread in threads:
        thread.join(timeout + 5)
    return BurstResult(responses, time.monotonic() - released[0], released[0], spans)


# The cached quotes of the "swr" and "blocking" aliases live in Redis under
# Django's RedisCache key "<KEY_PREFIX>:<version>:<key>", pickled. Tests and
# run.py read them and age them here with redis-py, as another process would.


def cached_quote_key(alias: str, symbol: str, *, prefix: str = "price-service") -> str:
    """The Redis key of ``symbol``'s quote in the cache ``alias``, for ``PRICE_SERVICE_CACHE_PREFIX=prefix``."""
    return f"{prefix}:{alias}:1:price:{symbol}"


def read_cached(redis_url: str, key: str) -> Any:
    """What Django's RedisCache keeps under ``key`` (an envelope dict for the ``"swr"`` alias), or None."""
    import redis  # noqa: PLC0415  (only the cached endpoints need redis-py)

    client = redis.Redis.from_url(redis_url)
    try:
        data = client.get(key)
    finally:
        client.close()
    if data is None:
        return None
    try:
        return int(data)  # RedisSerializer stores ints as they are, everything else pickled
    except ValueError:
        return pickle.loads(data)  # our own server, written by our own app


def age_cached(redis_url: str, key: str, seconds: float) -> dict[str, Any]:
    """Move the envelope under ``key`` ``seconds`` into the past (its ``created``); return the new envelope.

    This is what the entry looks like ``seconds`` later, without waiting for
    them. Redis's own expiry of the key is kept. Raises LookupError when
    ``key`` holds no envelope.
    """
    import redis  # noqa: PLC0415  (only the cached endpoints need redis-py)

    client = redis.Redis.from_url(redis_url)
    try:
        data = client.get(key)
        envelope = pickle.loads(data) if data is not None else None
        if not (isinstance(envelope, dict) and "created" in envelope):
            msg = f"no envelope under {key!r}: {envelope!r}"
            raise LookupError(msg)
        envelope["created"] -= seconds
        client.set(key, pickle.dumps(envelope, pickle.HIGHEST_PROTOCOL), keepttl=True)
    finally:
        client.close()
    return envelope


def delete_cached(redis_url: str, key: str) -> None:
    """Remove ``key`` from Redis: what its expiry does when the cache's timeout has passed."""
    import redis  # noqa: PLC0415  (only the cached endpoints need redis-py)

    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(key)
    finally:
        client.close()
