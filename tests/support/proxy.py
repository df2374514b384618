"""A counting (and optionally faulty) HTTP reverse proxy, for S3 servers that cannot count.

Run as ``python tests/support/proxy.py UPSTREAM [--port 0] [fault options]``; it
prints ``PORT <n>`` once listening. Every request is forwarded to ``UPSTREAM`` (e.g. the
moto S3 server, or `tests/support/httpserver.py`) and answered with its response;
``GET /__stats__`` returns request and response-body byte counts, the faults injected
(``faults`` in all, and per kind ``failed``, ``reset``, ``stalled``) and the requests per
path (``paths``); ``POST /__reset__`` zeroes them (S3 bucket names cannot start with ``_``,
so these paths never shadow a bucket).

Fault injection, for retry tests:

* ``--fail-rate``: fraction of requests answered with ``--fail-status`` (default 503,
  S3's ``SlowDown``; several statuses, e.g. ``500,503``, are picked at random) and an
  S3-style XML error body whose ``Code`` matches the status;
* ``--reset-rate``: fraction whose connection is dropped without an answer;
* ``--stall-rate``/``--stall``: fraction held for ``stall`` seconds before anything is
  sent (set ``stall`` above the client's read timeout to make it time out);
* ``--fail-paths REGEX`` (repeatable): faults apply only to requests whose path matches
  one of them (``re.search``), e.g. one object with ``--fail-rate 1``; none: every path;
* ``--fail-methods GET`` (repeatable): faults apply only to these methods (none: all), e.g.
  to let a ``HEAD`` for the size through and fail the reads after it;
* ``--seed``: the random sequence, so a run's faults are reproducible.

Faults never apply to ``/__`` paths. Changing them at run time: ``POST /__faults__`` with
a JSON body of the same names (``fail_rate``, ``fail_paths``, ``fail_methods``, ...; ``seed``
restarts the random sequence); the answer is the configuration now in force.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
from collections import Counter

import aiohttp
from aiohttp import web
from yarl import URL

_HOP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
}
_FAULTS = {
    "fail_rate": 0.0,
    "fail_status": 503,
    "reset_rate": 0.0,
    "stall_rate": 0.0,
    "stall": 0.0,
    "fail_paths": [],
    "fail_methods": [],
}
#: Every fault off (what ``POST /__faults__`` takes to make the proxy plain again).
NO_FAULTS = {
    "fail_rate": 0,
    "reset_rate": 0,
    "stall_rate": 0,
    "fail_paths": [],
    "fail_methods": [],
    "seed": 0,
}


def mixed_faults(seed: int, stall: float = 2.0) -> dict:
    """20 % of requests fail: 10 % answered 500 or 503, 5 % dropped, 5 % stalled ``stall``
    seconds (past a client's read timeout)."""
    return {
        "fail_rate": 0.10,
        "fail_status": [500, 503],
        "reset_rate": 0.05,
        "stall_rate": 0.05,
        "stall": stall,
        "seed": seed,
    }


# the S3 error code a real server sends with each status
_CODES = {
    500: "InternalError",
    502: "BadGateway",
    503: "SlowDown",
    504: "GatewayTimeout",
    429: "SlowDown",
}


def _statuses(value) -> list[int]:
    """``503``, ``"500,503"`` or ``[500, 503]`` as a list of ints."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if not isinstance(value, list | tuple):
        value = [value]
    return [int(v) for v in value]


def _normalise(cfg: dict) -> dict:
    out = dict(cfg)
    out["fail_status"] = _statuses(out["fail_status"])
    paths = out["fail_paths"]
    out["fail_paths"] = [paths] if isinstance(paths, str) else list(paths or [])
    for p in out["fail_paths"]:
        re.compile(p)  # a bad pattern fails here, where it was given
    methods = out["fail_methods"]
    out["fail_methods"] = [m.upper() for m in ([methods] if isinstance(methods, str) else methods)]
    for k in ("fail_rate", "reset_rate", "stall_rate", "stall"):
        out[k] = float(out[k])
    return out


def make_app(upstream: str, faults: dict | None = None, seed: int = 0) -> web.Application:
    upstream = upstream.rstrip("/")
    stats: dict = {}
    paths: Counter[str] = Counter()

    def zero() -> None:
        stats.update(requests=0, bytes=0, faults=0, failed=0, reset=0, stalled=0)
        paths.clear()

    zero()
    cfg = _normalise({**_FAULTS, **(faults or {})})
    rng = random.Random(seed)
    session: dict[str, aiohttp.ClientSession] = {}

    async def on_startup(_app):
        session["s"] = aiohttp.ClientSession(auto_decompress=False)

    async def on_cleanup(_app):
        await session["s"].close()

    async def get_stats(_request):
        return web.json_response({**stats, "paths": dict(paths)})

    async def reset(_request):
        zero()
        return web.json_response({"ok": True})

    async def set_faults(request):
        body = await request.json()
        try:
            new = _normalise({**cfg, **{k: v for k, v in body.items() if k in _FAULTS}})
        except (ValueError, TypeError, re.error) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        cfg.update(new)
        if "seed" in body:
            rng.seed(int(body["seed"]))
        return web.json_response(cfg)

    def targeted(request: web.Request) -> bool:
        if cfg["fail_methods"] and request.method not in cfg["fail_methods"]:
            return False
        return not cfg["fail_paths"] or any(re.search(p, request.path) for p in cfg["fail_paths"])

    async def forward(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        paths[request.path] += 1
        if targeted(request):
            if cfg["stall_rate"] and rng.random() < cfg["stall_rate"]:
                stats["faults"] += 1
                stats["stalled"] += 1
                await asyncio.sleep(cfg["stall"])
                if request.transport is None or request.transport.is_closing():
                    return web.Response(status=499)  # the client gave up; nobody reads this
            if cfg["reset_rate"] and rng.random() < cfg["reset_rate"]:
                stats["faults"] += 1
                stats["reset"] += 1
                request.transport.close()
                raise web.HTTPServiceUnavailable  # never sent: the connection is gone
            if cfg["fail_rate"] and rng.random() < cfg["fail_rate"]:
                stats["faults"] += 1
                stats["failed"] += 1
                status = rng.choice(cfg["fail_status"])
                code = _CODES.get(status, "ServiceUnavailable")
                body = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    "<Message>injected by tests/support/proxy.py</Message></Error>"
                ).encode()
                return web.Response(status=status, body=body, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        data = await request.read()
        async with session["s"].request(
            request.method,
            URL(upstream + request.raw_path, encoded=True),
            headers=headers,
            data=data or None,
            allow_redirects=False,
        ) as up:
            body = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
        if request.method == "HEAD":
            # no body to measure: pass the upstream's length on (S3 clients need it)
            if "Content-Length" in up.headers:
                out["Content-Length"] = up.headers["Content-Length"]
            return web.Response(status=up.status, headers=out)
        stats["bytes"] += len(body)
        return web.Response(status=up.status, headers=out, body=body)

    app = web.Application(client_max_size=1 << 30)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/__stats__", get_stats)
    app.router.add_post("/__reset__", reset)
    app.router.add_post("/__faults__", set_faults)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def _main(upstream: str, port: int, faults: dict, seed: int) -> None:
    runner = web.AppRunner(make_app(upstream, faults, seed), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    for name in ("fail_rate", "reset_rate", "stall_rate", "stall"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=_FAULTS[name])
    ap.add_argument(
        "--fail-status", default=str(_FAULTS["fail_status"]), help="e.g. 503 or 500,503"
    )
    ap.add_argument("--fail-paths", action="append", default=[], metavar="REGEX")
    ap.add_argument("--fail-methods", action="append", default=[], metavar="METHOD")
    a = ap.parse_args(argv)
    faults = {k: getattr(a, k) for k in _FAULTS}
    try:
        asyncio.run(_main(a.upstream, a.port, faults, a.seed))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
