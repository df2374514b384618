"""A counting (and optionally faulty) HTTP reverse proxy, for S3 servers that cannot count.

Run as ``python -m basinflow.testing.proxy UPSTREAM [--port 0] [fault options]``; it
prints ``PORT <n>`` once listening. Every request is forwarded to ``UPSTREAM`` (e.g. the
moto S3 server) and answered with its response; ``GET /__stats__`` returns request and
response-body byte counts, ``POST /__reset__`` zeroes them (S3 bucket names cannot start
with ``_``, so these paths never shadow a bucket).

Fault injection, for retry tests: ``--fail-rate`` (fraction of requests answered with
``--fail-status``, default 503 SlowDown), ``--reset-rate`` (fraction whose connection is
dropped without an answer), ``--stall-rate``/``--stall`` (fraction delayed by seconds),
``--seed``. Faults never apply to ``/__`` paths. Changing them at run time:
``POST /__faults__`` with a JSON body of the same names (``fail_rate``, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

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
_FAULTS = {"fail_rate": 0.0, "fail_status": 503, "reset_rate": 0.0, "stall_rate": 0.0, "stall": 0.0}


def make_app(upstream: str, faults: dict | None = None, seed: int = 0) -> web.Application:
    upstream = upstream.rstrip("/")
    stats = {"requests": 0, "bytes": 0, "faults": 0}
    cfg = {**_FAULTS, **(faults or {})}
    rng = random.Random(seed)
    session: dict[str, aiohttp.ClientSession] = {}

    async def on_startup(_app):
        session["s"] = aiohttp.ClientSession(auto_decompress=False)

    async def on_cleanup(_app):
        await session["s"].close()

    async def get_stats(_request):
        return web.json_response(stats)

    async def reset(_request):
        stats.update(requests=0, bytes=0, faults=0)
        return web.json_response({"ok": True})

    async def set_faults(request):
        cfg.update({k: v for k, v in (await request.json()).items() if k in _FAULTS})
        return web.json_response(cfg)

    async def forward(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        if cfg["stall_rate"] and rng.random() < cfg["stall_rate"]:
            await asyncio.sleep(cfg["stall"])
        if cfg["reset_rate"] and rng.random() < cfg["reset_rate"]:
            stats["faults"] += 1
            request.transport.close()
            raise web.HTTPServiceUnavailable  # never sent: the connection is gone
        if cfg["fail_rate"] and rng.random() < cfg["fail_rate"]:
            stats["faults"] += 1
            body = (
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                b"<Message>injected by basinflow.testing.proxy</Message></Error>"
            )
            return web.Response(status=int(cfg["fail_status"]), body=body)
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
        if request.method != "HEAD":
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
    for name, default in _FAULTS.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    a = ap.parse_args(argv)
    faults = {k: getattr(a, k) for k in _FAULTS}
    try:
        asyncio.run(_main(a.upstream, a.port, faults, a.seed))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
