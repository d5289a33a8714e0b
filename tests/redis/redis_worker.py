"""A worker process for the RedisGroup tests: ``python redis_worker.py '<json config>'``.

Config keys: ``url``, ``ns``, ``key``; group options ``lease``, ``recheck``,
``result_ttl``, ``on_error``, ``on_unavailable``; ``threads`` callers per
flight; ``flights`` flights, each released by the test through a Redis
barrier (this process pushes its pid to ``<ns>:ready`` and pops
``<ns>:go``); ``work``: ``sleep`` seconds, ``hang_first`` (the first
execution across all processes announces itself on ``<ns>:started`` and
hangs), ``raise_first``/``raise`` (an error message), ``announce`` (the first
execution pushes to ``<ns>:started``), ``block`` (it also waits for
``<ns>:release``); ``barrier`` false starts at once.

Every execution increments ``<ns>:execs``. The last line printed is JSON:
``{"results": [[outcome per caller] per flight], "stats": {...}}``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from typing import Any


def main(config: dict[str, Any]) -> None:
    import redis  # noqa: PLC0415 - imported only when run, never by pytest's collection

    from singleflight_sync.redis import RedisGroup, RemoteFlightError  # noqa: PLC0415

    ns = config["ns"]
    r = redis.Redis.from_url(config["url"], socket_timeout=90)  # BLPOP waits up to 60 s
    options = {
        name: config[name]
        for name in ("lease", "recheck", "result_ttl", "on_error", "on_unavailable", "timeout")
        if name in config
    }
    group = RedisGroup(config["url"], namespace=ns, **options)
    work_cfg = config.get("work", {})
    pid = os.getpid()

    def work(flight: int) -> dict[str, Any]:
        n = int(r.incr(f"{ns}:execs"))
        if n == 1 and (work_cfg.get("announce") or work_cfg.get("hang_first") or work_cfg.get("block")):
            r.rpush(f"{ns}:started", json.dumps({"pid": pid, "at": time.time()}))
            if work_cfg.get("hang_first"):
                time.sleep(120)  # until killed
            elif work_cfg.get("block"):
                r.blpop([f"{ns}:release"], timeout=60)
        if work_cfg.get("sleep"):
            time.sleep(work_cfg["sleep"])
        if work_cfg.get("raise") or (n == 1 and work_cfg.get("raise_first")):
            msg = work_cfg.get("raise") or work_cfg["raise_first"]
            raise ValueError(msg)
        return {"flight": flight, "token": uuid.uuid4().hex, "pid": pid, "n": n, "at": time.time()}

    def call(flight: int, out: list[Any], gate: threading.Barrier) -> None:
        gate.wait()
        try:
            value = group.do(config["key"], work, flight)
        except RemoteFlightError as exc:
            out.append(
                {
                    "error": type(exc).__name__,
                    "remote_type": exc.remote_type,
                    "message": exc.remote_message,
                    "traceback": exc.remote_traceback,
                    "at": time.time(),
                }
            )
        except Exception as exc:
            out.append({"error": type(exc).__name__, "message": str(exc), "at": time.time()})
        else:
            out.append({"ok": value, "at": time.time()})

    results = []
    threads = int(config.get("threads", 1))
    for flight in range(int(config.get("flights", 1))):
        out: list[Any] = []
        gate = threading.Barrier(threads + 1)
        workers = [threading.Thread(target=call, args=(flight, out, gate)) for _ in range(threads)]
        for t in workers:
            t.start()
        if config.get("barrier", True):
            r.rpush(f"{ns}:ready", pid)
            r.blpop([f"{ns}:go"], timeout=60)
        gate.wait()
        for t in workers:
            t.join()
        results.append(out)
    stats = group.redis_stats()._asdict()
    group.close()
    r.close()
    print(json.dumps({"results": results, "stats": stats, "pid": pid}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
