"""Cache stampede: 200 concurrent requests at the moment a hot key expires, with a 100 ms build.

    python benchmarks/bench_stampede.py            # ~1.5 min: 9 rounds of bursts, 8 s of steady load per mode
    python benchmarks/bench_stampede.py --quick    # smoke run, ~15 s, rough figures

Every mode reads through Django's LocMemCache (Django configured in-process);
the build sleeps ``--build-ms`` and counts its calls.

First, one thread without contention: the cost of a plain ``cache.get`` hit,
of a filler's fresh hit and of a stale read that joins a running refresh.

Bursts: ``--threads`` threads are released together by a ``threading.Barrier``
at the moment the hot key expires. For no protection, Django's
``cache.get_or_set``, the blocking ``CacheFiller`` and
``SingleFlightCache.get_or_set`` the entry has been deleted; for
stale-while-revalidate (``refresh_after``) it is past ``refresh_after`` and
before ``ttl``; for early refresh (``beta``) it is one build duration short
of its refresh point. Fillers get a fake clock (``time.time()`` plus an
offset, set as the barrier releases the threads) so the entry's age is
exact; ``SingleFlightCache`` has no clock option, so its stale burst waits
``REFRESH_AFTER`` seconds of real time. A request's latency runs from its
thread leaving the barrier to the return of its read. Reported per mode, as
medians over ``--rounds`` interleaved rounds after a warm-up round: builds
per burst (background refreshes included, waited for between bursts), p50
and p99 latency, requests that waited for a build. Two "hit" rows (a fresh
entry) are the baseline; the goal: stale-while-revalidate's p99 within 2x a
plain ``cache.get`` hit's, and exactly 1 build per expiry.

Steady load: ``--steady-threads`` threads read one hot key in a loop
(``--think-ms`` between reads) for ``--steady-seconds`` of real time per mode,
with a short ``--ttl`` and ``--refresh-after``; reported: upstream calls
(builds) per minute at that time scale, and request latency.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
import timeit
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import django
from django.conf import settings

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks._common import Table, environment, median, run_threads
else:
    from ._common import Table, environment, median, run_threads

from singleflight_sync import CacheFiller, Group
from singleflight_sync.envelope import is_envelope

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
# Bursts age entries with a fake clock, so these can be long: LocMemCache
# (real time) never expires an entry during the run.
BURST_TTL = 3600.0
BURST_REFRESH_AFTER = 1800.0
# Mode names the summary lines refer to.
HIT = "hit: cache.get, fresh entry"
FILLER_HIT = "hit: CacheFiller SWR, fresh entry"
SWR = "CacheFiller, stale-while-revalidate"
BETA = "CacheFiller, early refresh (beta=1)"
SWR_BETA = "CacheFiller, SWR + beta=1"
SF_STALE = "SingleFlightCache.get_or_set, stale"


class Counter:
    """A thread-safe count (of upstream calls: builds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0

    def add(self) -> int:
        with self._lock:
            self.n += 1
            return self.n

    def reset(self) -> None:
        with self._lock:
            self.n = 0


class FakeClock:
    """``time.time()`` plus an offset the benchmark sets: ages an entry without waiting.

    Real time still passes, so a build's measured duration (the envelope's
    ``duration``, which XFetch uses) is the real one.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def make_build(counter: Counter, seconds: float) -> Any:
    def build() -> dict[str, Any]:
        n = counter.add()
        time.sleep(seconds)
        return {"build": n, "rows": list(range(50))}

    return build


def settle(group: Group[Any, Any], timeout: float = 30.0) -> None:
    """Wait until ``group`` has nothing in flight (background refreshes included)."""
    deadline = time.monotonic() + timeout
    while len(group):
        if time.monotonic() > deadline:
            msg = f"flights still running after {timeout} s: {group.keys()!r}"
            raise RuntimeError(msg)
        time.sleep(0.002)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Mode:
    name: str
    note: str
    # Called in each thread before the barrier: returns the request, a no-argument callable.
    prepare: Any
    # Called in the main thread before a run; the build counter is reset after it.
    before: Any
    counter: Counter
    # The groups whose flights (background refreshes) must land before the next run.
    groups: list[Group[Any, Any]] = field(default_factory=list)
    # Called by the barrier once every thread is waiting, just before it releases them.
    release: Any = None
    results: dict[str, list[Any]] = field(default_factory=dict)

    def record(self, name: str, value: Any) -> None:
        self.results.setdefault(name, []).append(value)


def burst(mode: Mode, threads: int, build_s: float) -> dict[str, Any]:
    mode.before()
    for g in mode.groups:
        settle(g)
    mode.counter.reset()
    latencies = [0.0] * threads
    bad = Counter()  # requests that returned no value
    barrier = threading.Barrier(threads, action=mode.release)

    def body(i: int) -> None:
        request = mode.prepare()
        barrier.wait()
        t0 = time.perf_counter()
        value = request()
        latencies[i] = time.perf_counter() - t0
        if not (isinstance(value, dict) and "build" in value):
            bad.add()

    run_threads(threads, body)
    for g in mode.groups:
        settle(g)
    return {
        "builds": mode.counter.n,
        "p50": pct(latencies, 50) * 1e6,
        "p99": pct(latencies, 99) * 1e6,
        "waited": sum(1 for x in latencies if x >= build_s / 2),
        "bad": bad.n,
    }


def steady(mode: Mode, threads: int, seconds: float, think_s: float, build_s: float) -> dict[str, Any]:
    mode.before()
    for g in mode.groups:
        settle(g)
    mode.counter.reset()
    lat: list[list[float]] = [[] for _ in range(threads)]
    window = [0.0, 0.0]
    bad = Counter()  # requests that returned no value

    def start() -> None:
        window[0] = time.perf_counter()
        window[1] = window[0] + seconds

    barrier = threading.Barrier(threads, action=start)

    def body(i: int) -> None:
        request = mode.prepare()
        mine = lat[i]
        barrier.wait()
        end = window[1]
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            value = request()
            mine.append(time.perf_counter() - t0)
            if not (isinstance(value, dict) and "build" in value):
                bad.add()
            time.sleep(think_s)

    run_threads(threads, body)
    builds_in_window = mode.counter.n
    for g in mode.groups:
        settle(g)
    everything = [x for per in lat for x in per]
    return {
        "requests": len(everything),
        "builds": builds_in_window,
        "per_min": builds_in_window / seconds * 60,
        "p50": pct(everything, 50) * 1e3,
        "p99": pct(everything, 99) * 1e3,
        "max": max(everything) * 1e3,
        "waited": sum(1 for x in everything if x >= build_s / 2),
        "bad": bad.n,
    }


def configure_django(refresh_after: float) -> None:
    settings.configure(
        CACHES={
            "default": {"BACKEND": LOCMEM, "LOCATION": "bench-default"},
            "plain": {"BACKEND": LOCMEM, "LOCATION": "bench-plain", "OPTIONS": {"MAX_ENTRIES": 10_000}},
            "sf": {
                "BACKEND": "singleflight_sync.django.SingleFlightCache",
                "LOCATION": "bench-sf",
                "OPTIONS": {"BACKEND": LOCMEM, "OPTIONS": {"MAX_ENTRIES": 10_000}, "REFRESH_AFTER": refresh_after},
            },
        },
        USE_TZ=True,
    )
    django.setup()


def get_build_set(key: str, build: Any, ttl: float) -> Any:
    """``prepare`` of no protection: each thread's request gets, and on a miss builds and sets."""

    def prepare() -> Any:
        from django.core.cache import caches  # noqa: PLC0415 - after django.setup()

        cache = caches["plain"]

        def request() -> Any:
            value = cache.get(key)
            if value is None:
                value = build()
                cache.set(key, value, ttl)
            return value

        return request

    return prepare


def get_or_set(alias: str, key: str, build: Any, ttl: float) -> Any:
    """``prepare`` of ``caches[alias].get_or_set``, with the thread's own cache object, as in a request."""

    def prepare() -> Any:
        from django.core.cache import caches  # noqa: PLC0415 - after django.setup()

        cache = caches[alias]
        return lambda: cache.get_or_set(key, build, ttl)

    return prepare


def burst_modes(refresh_after: float, build_s: float) -> list[Mode]:
    """The burst modes, each with its setup."""
    from django.core.cache import caches  # noqa: PLC0415 - after django.setup()

    plain = caches["plain"]
    sf = caches["sf"]
    lead = build_s  # bursts "shortly before" a refresh point come one build duration before it
    modes: list[Mode] = []

    # -- baselines: a fresh entry -----------------------------------------------------------
    c_hit = Counter()
    build_hit = make_build(c_hit, build_s)

    def before_hit() -> None:
        if plain.get("hit") is None:
            plain.set("hit", build_hit(), BURST_TTL)

    def prepare_hit() -> Any:
        cache = caches["plain"]
        return lambda: cache.get("hit")

    modes.append(Mode(HIT, "the baseline: a plain LocMemCache hit", prepare_hit, before_hit, c_hit))

    c_fhit, g_fhit = Counter(), Group()
    build_fhit = make_build(c_fhit, build_s)
    f_fhit = CacheFiller(
        plain, ttl=BURST_TTL, refresh_after=BURST_REFRESH_AFTER, clock=FakeClock(), group=g_fhit, scope="b-swr-hit"
    )
    modes.append(
        Mode(
            FILLER_HIT,
            "filler with refresh_after, entry younger than it",
            lambda: lambda: f_fhit.fill("swr-hit", build_fhit),
            lambda: f_fhit.fill("swr-hit", build_fhit),
            c_fhit,
            [g_fhit],
        )
    )

    # -- the entry is gone ------------------------------------------------------------------
    c_none = Counter()
    modes.append(
        Mode(
            "no protection: get, build, set",
            "every request that misses builds",
            get_build_set("none", make_build(c_none, build_s), BURST_TTL),
            lambda: plain.delete("none"),
            c_none,
        )
    )

    c_gos = Counter()
    modes.append(
        Mode(
            "Django cache.get_or_set",
            "LocMemCache.get_or_set: no stampede protection",
            get_or_set("plain", "gos", make_build(c_gos, build_s), BURST_TTL),
            lambda: plain.delete("gos"),
            c_gos,
        )
    )

    c_blk, g_blk = Counter(), Group()
    build_blk = make_build(c_blk, build_s)
    f_blk = CacheFiller(plain, ttl=BURST_TTL, group=g_blk, scope="b-blocking")
    modes.append(
        Mode(
            "CacheFiller, blocking",
            "no refresh_after: one build, everyone waits for it",
            lambda: lambda: f_blk.fill("blocking", build_blk),
            lambda: plain.delete("blocking"),
            c_blk,
            [g_blk],
        )
    )

    c_sfd = Counter()
    modes.append(
        Mode(
            "SingleFlightCache.get_or_set, deleted",
            "the Django wrapper on a missing entry",
            get_or_set("sf", "sf-deleted", make_build(c_sfd, build_s), BURST_TTL),
            lambda: sf.delete("sf-deleted"),
            c_sfd,
            [sf.filler.group],
        )
    )

    # -- the entry is stale (past refresh_after), or near its refresh point -------------------
    def aged_filler(name: str, note: str, key: str, age: float, **options: Any) -> Mode:
        counter, group, clock = Counter(), Group(), FakeClock()
        build = make_build(counter, build_s)
        filler = CacheFiller(plain, ttl=BURST_TTL, clock=clock, group=group, scope=f"b-{key}", **options)
        created = [0.0]

        def before() -> None:
            plain.delete(key)
            filler.fill(key, build)  # a fresh entry, with its real build duration
            created[0] = plain.get(key)["created"]

        def release() -> None:
            # The entry is exactly ``age`` old when the threads are released.
            clock.offset = created[0] + age - time.time()

        return Mode(name, note, lambda: lambda: filler.fill(key, build), before, counter, [group], release)

    modes.append(
        aged_filler(
            SWR,
            "refresh_after: entry past it, before ttl; one background refresh",
            "swr",
            BURST_REFRESH_AFTER + 1,
            refresh_after=BURST_REFRESH_AFTER,
        )
    )
    modes.append(
        aged_filler(
            "CacheFiller, early refresh (beta=1)",
            f"no refresh_after; burst {lead * 1e3:g} ms before ttl: an early draw rebuilds in the request",
            "beta",
            BURST_TTL - lead,
            beta=1.0,
        )
    )
    modes.append(
        aged_filler(
            "CacheFiller, SWR + beta=1",
            f"burst {lead * 1e3:g} ms before refresh_after: an early draw starts the background refresh",
            "swr-beta",
            BURST_REFRESH_AFTER - lead,
            refresh_after=BURST_REFRESH_AFTER,
            beta=1.0,
        )
    )

    c_sfs = Counter()
    build_sfs = make_build(c_sfs, build_s)

    def before_sfs() -> None:
        sf.delete("sf-stale")
        sf.get_or_set("sf-stale", build_sfs, BURST_TTL)
        raw = sf.wrapped.get("sf-stale")
        # A plain value (not an envelope) would mean the wrapper serves nothing stale: the burst shows it.
        created = raw["created"] if is_envelope(raw) else time.time()
        time.sleep(max(0.0, created + refresh_after + 0.01 - time.time()))

    modes.append(
        Mode(
            SF_STALE,
            f"the Django wrapper, REFRESH_AFTER={refresh_after:g}: entry aged in real time past it",
            get_or_set("sf", "sf-stale", build_sfs, BURST_TTL),
            before_sfs,
            c_sfs,
            [sf.filler.group],
        )
    )
    return modes


def steady_modes(ttl: float, refresh_after: float, build_s: float) -> list[Mode]:
    """The steady-load modes; each run starts on a fresh entry (its build not counted)."""
    from django.core.cache import caches  # noqa: PLC0415 - after django.setup()

    plain = caches["plain"]
    sf = caches["sf"]
    modes: list[Mode] = []

    def fresh(cache: Any, key: str, request: Any) -> Any:
        def before() -> None:
            cache.delete(key)
            request()

        return before

    c_none = Counter()
    prepare_none = get_build_set("s-none", make_build(c_none, build_s), ttl)
    modes.append(
        Mode("no protection: get, build, set", "", prepare_none, fresh(plain, "s-none", prepare_none()), c_none)
    )

    c_gos = Counter()
    prepare_gos = get_or_set("plain", "s-gos", make_build(c_gos, build_s), ttl)
    modes.append(Mode("Django cache.get_or_set", "", prepare_gos, fresh(plain, "s-gos", prepare_gos()), c_gos))

    def filler_mode(name: str, key: str, **options: Any) -> Mode:
        counter, group = Counter(), Group()
        build = make_build(counter, build_s)
        filler = CacheFiller(plain, ttl=ttl, group=group, scope=f"s-{key}", **options)
        return Mode(
            name,
            "",
            lambda: lambda: filler.fill(key, build),
            fresh(plain, key, lambda: filler.fill(key, build)),
            counter,
            [group],
        )

    modes.append(filler_mode("CacheFiller, blocking", "s-blocking"))
    modes.append(filler_mode(SWR, "s-swr", refresh_after=refresh_after))
    modes.append(filler_mode(BETA, "s-beta", beta=1.0))
    modes.append(filler_mode(SWR_BETA, "s-swr-beta", refresh_after=refresh_after, beta=1.0))

    c_sf = Counter()
    prepare_sf = get_or_set("sf", "s-sf", make_build(c_sf, build_s), ttl)
    modes.append(
        Mode(
            "SingleFlightCache.get_or_set",
            f"REFRESH_AFTER={refresh_after:g}",
            prepare_sf,
            fresh(sf, "s-sf", prepare_sf()),
            c_sf,
            [sf.filler.group],
        )
    )
    return modes


def ratios(values: list[float], baseline: list[float]) -> list[float]:
    return [a / b for a, b in zip(values, baseline, strict=True)]


def listed(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def burst_table(modes: list[Mode], args: argparse.Namespace) -> Table:
    title = (
        f"Bursts: {args.threads} threads released by a Barrier at expiry, build {args.build_ms:g} ms, "
        f"{args.rounds} round{'s' * (args.rounds != 1)} after a warm-up, medians"
    )
    table = Table(title, ["mode", "builds/burst", "each round", "p50 us", "p99 us", "waited", "x hit p99", "burst"])
    by_name = {m.name: m.results for m in modes}
    hit = by_name[HIT]
    for mode in modes:
        res = mode.results
        table.add(
            mode.name,
            median(res["builds"]),
            ",".join(str(b) for b in res["builds"]),
            median(res["p50"]),
            median(res["p99"]),
            median(res["waited"]),
            median(ratios(res["p99"], hit["p99"])),
            mode.note,
        )
        if sum(res["bad"]):
            table.footer.append(f"WARNING: {mode.name}: {sum(res['bad'])} requests returned no value")
    table.footer += [
        "builds/burst: calls of the build caused by one burst, background refreshes included; each round: the",
        f"round's counts. waited: requests that took >= {args.build_ms / 2:g} ms (half a build). x hit p99: p99 over",
        "the same round's plain cache.get-hit p99. Latency: from a thread's leaving the barrier to its read's return.",
        f"Fillers' entries are aged with a fake clock (ttl {BURST_TTL:g} s, refresh_after {BURST_REFRESH_AFTER:g} s).",
    ]
    for name in (SWR, SF_STALE):
        res = by_name[name]
        r = ratios(res["p99"], hit["p99"])
        builds = res["builds"]
        table.footer.append(
            f"goal, {name}: p99 / hit p99 = {median(r):.2f} ({listed(r)}): "
            f"{'met' if median(r) <= 2 else 'NOT met'} (<= 2); builds per expiry "
            + ",".join(str(b) for b in builds)
            + f": {'met' if all(b == 1 for b in builds) else 'NOT met'} (exactly 1)"
        )
    r = ratios(by_name[SWR]["p99"], by_name[FILLER_HIT]["p99"])
    table.footer.append(
        f"{SWR}: p99 / the filler's own fresh-hit p99 = {median(r):.2f} ({listed(r)}): the stale path's cost alone"
    )
    return table


def steady_table(rows: list[tuple[Mode, dict[str, Any]]], args: argparse.Namespace) -> Table:
    title = (
        f"Steady load: {args.steady_threads} threads on one hot key, {args.think_ms:g} ms between reads, "
        f"{args.steady_seconds:g} s per mode; ttl {args.ttl:g} s, refresh_after {args.refresh_after:g} s, "
        f"build {args.build_ms:g} ms"
    )
    table = Table(title, ["mode", "requests", "upstream calls", "calls/min", "p50 ms", "p99 ms", "max ms", "waited"])
    rate = 0.0
    for mode, res in rows:
        name = mode.name + (f" ({mode.note})" if mode.note else "")
        table.add(
            name, res["requests"], res["builds"], res["per_min"], res["p50"], res["p99"], res["max"], res["waited"]
        )
        rate = max(rate, res["requests"] / args.steady_seconds)
        if res["bad"]:
            table.footer.append(f"WARNING: {mode.name}: {res['bad']} requests returned no value")
    build_s = args.build_ms / 1000
    lead = build_s * math.log(max(1.0, rate * build_s))
    scale = args.ttl / 300
    table.footer += [
        f"Time scale: ttl {args.ttl:g} s. calls/min: upstream calls in the {args.steady_seconds:g} s, per minute.",
        f"One build per ttl is {60 / args.ttl:.0f}/min here, one per refresh_after {60 / args.refresh_after:.0f}/min.",
        f"For a real ttl T, refresh_after in proportion, multiply by {args.ttl:g}/T (T = 300 s: x {scale:.4f}), except",
        f"for beta: XFetch refreshes ~beta x build x ln(reads/s x beta x build) early (~{lead:.2f} s here at",
        f"{rate:,.0f} reads/s) whatever the ttl: at this compressed scale it refreshes more often than at a real ttl.",
        f"waited: requests that took >= {args.build_ms / 2:g} ms. Each mode starts on a fresh entry (not counted).",
    ]
    return table


def uncontended(number: int) -> Table:
    """One thread, no contention: the per-read cost of each hit path, best of 5 x ``number`` reads."""
    from django.core.cache import caches  # noqa: PLC0415 - after django.setup()

    plain = caches["plain"]
    value = {"build": 0, "rows": list(range(50))}
    plain.set("u-hit", value, BURST_TTL)
    fresh = CacheFiller(
        plain, ttl=BURST_TTL, refresh_after=BURST_REFRESH_AFTER, clock=FakeClock(), group=Group(), scope="u-fresh"
    )
    fresh.fill("u-fresh", lambda: value)
    # A stale entry whose background refresh is held in flight: every read serves the stale
    # value and joins that refresh, as 199 of a burst's 200 readers do.
    gate = threading.Event()

    def held() -> Any:
        gate.wait(60)
        return value

    clock, group = FakeClock(), Group()
    stale = CacheFiller(plain, ttl=BURST_TTL, refresh_after=BURST_REFRESH_AFTER, clock=clock, group=group, scope="u-st")
    stale.fill("u-stale", lambda: value)
    clock.advance(BURST_REFRESH_AFTER + 1)
    stale.fill("u-stale", held)  # starts the refresh
    cases = {
        HIT: lambda: plain.get("u-hit"),
        FILLER_HIT: lambda: fresh.fill("u-fresh", held),
        "CacheFiller SWR, stale entry, refresh in flight": lambda: stale.fill("u-stale", held),
    }
    table = Table(
        f"One thread, uncontended: cost of a read (best of 5 x {number:,})", ["read", "us/read", "x cache.get"]
    )
    try:
        best = {name: min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6 for name, fn in cases.items()}
    finally:
        gate.set()
        settle(group)
    for name, us in best.items():
        table.add(name, us, us / best[HIT])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1.2 s of steady load per mode")
    parser.add_argument("--threads", type=int, default=200, help="requests per burst")
    parser.add_argument("--rounds", type=int, default=9, help="bursts per mode, after a warm-up round")
    parser.add_argument("--build-ms", type=float, default=100.0)
    parser.add_argument("--steady-threads", type=int, default=8)
    parser.add_argument("--steady-seconds", type=float, default=8.0, help="real seconds of steady load per mode")
    parser.add_argument("--think-ms", type=float, default=5.0, help="pause between a steady thread's reads")
    parser.add_argument("--ttl", type=float, default=2.0, help="steady load: ttl in seconds")
    parser.add_argument("--refresh-after", type=float, default=1.0, help="steady load and REFRESH_AFTER: seconds")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steady_seconds, args.ttl, args.refresh_after = 1, 1.2, 0.6, 0.3
    build_s = args.build_ms / 1000
    started = time.monotonic()

    configure_django(args.refresh_after)
    print("\n".join(environment()))
    print(f"Django {django.get_version()}; every mode reads through LocMemCache")
    quick = " (--quick: rough figures)" if args.quick else ""
    print(f"run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{quick}", flush=True)

    print()
    print(uncontended(1000 if args.quick else 5000).render(), flush=True)

    modes = burst_modes(args.refresh_after, build_s)
    for mode in modes:  # warm-up: the refresh pool's thread, per-thread Django caches
        burst(mode, args.threads, build_s)
    for r in range(args.rounds):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            for name, value in burst(mode, args.threads, build_s).items():
                mode.record(name, value)
    print()
    print(burst_table(modes, args).render(), flush=True)

    think_s = args.think_ms / 1000
    smodes = steady_modes(args.ttl, args.refresh_after, build_s)
    rows = [(m, steady(m, args.steady_threads, args.steady_seconds, think_s, build_s)) for m in smodes]
    print()
    print(steady_table(rows, args).render())
    print(f"\ntotal time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
