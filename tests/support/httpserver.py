"""A static HTTP server that honours ``Range`` (aiohttp), with a request log.

Run as ``python tests/support/httpserver.py ROOT [--port 0] [--log FILE]
[--redirect PREFIX=LOCATION ...] [--no-validators]``; it prints ``PORT <n>`` once listening.
``--no-validators`` strips ``ETag`` and ``Last-Modified`` from every answer, as some
servers (object gateways, CGI scripts, proxies) do: a file's pin then has no identity.
A request whose path starts with ``PREFIX`` is answered ``302 Found`` with
``Location: LOCATION`` followed by the rest of the path (logged like any other request).
``GET /__stats__`` returns
request and byte counts so tests and benchmarks count what was really transferred;
``POST /__reset__`` zeroes them.
Directory listings are HTML (fsspec's HTTP glob parses them). Each line of the request
log holds the method, path, ``Range`` and the *names* of the request headers (never their
values), so tests can assert that no ``Authorization`` header reached a host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web


def make_app(
    root: Path,
    log: Path | None = None,
    redirects: dict[str, str] | None = None,
    validators: bool = True,
) -> web.Application:
    stats = {"requests": 0, "bytes": 0, "paths": []}

    @web.middleware
    async def count(request: web.Request, handler):
        if request.path.startswith("/__"):
            return await handler(request)
        stats["requests"] += 1
        if log is not None:
            with log.open("a") as f:
                f.write(
                    json.dumps(
                        {
                            "method": request.method,
                            "path": request.path,
                            "range": request.headers.get("Range"),
                            # names only, lower-cased: tests check that no credential
                            # header reached this host; values are never recorded
                            "headers": sorted({k.lower() for k in request.headers}),
                        }
                    )
                    + "\n"
                )
        for prefix, location in (redirects or {}).items():
            if request.path.startswith(prefix):
                raise web.HTTPFound(location + request.path[len(prefix) :])
        return await handler(request)

    async def count_bytes(request: web.Request, response: web.StreamResponse) -> None:
        # a FileResponse learns its length (whole file or the Range) only while it is
        # prepared, after the middleware has returned: count it here, from the header
        if not validators:
            response.headers.pop("ETag", None)
            response.headers.pop("Last-Modified", None)
        if request.path.startswith("/__") or request.method != "GET":
            return
        stats["bytes"] += int(response.headers.get("Content-Length") or 0)

    async def get_stats(_request):
        return web.json_response({k: v for k, v in stats.items() if k != "paths"})

    async def reset(_request):
        stats.update(requests=0, bytes=0)
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[count])
    app.on_response_prepare.append(count_bytes)
    app.router.add_get("/__stats__", get_stats)
    app.router.add_post("/__reset__", reset)
    app.router.add_static("/", root, show_index=True, follow_symlinks=False)
    return app


async def _main(
    root: Path, port: int, log: Path | None, redirects: dict[str, str], validators: bool
) -> None:
    runner = web.AppRunner(make_app(root, log, redirects, validators), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]
    print(f"PORT {actual}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--redirect", action="append", default=[], metavar="PREFIX=LOCATION")
    ap.add_argument("--no-validators", action="store_true", help="send no ETag/Last-Modified")
    a = ap.parse_args(argv)
    redirects = dict(r.split("=", 1) for r in a.redirect)
    log = Path(a.log) if a.log else None
    try:
        asyncio.run(_main(Path(a.root), a.port, log, redirects, not a.no_validators))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
