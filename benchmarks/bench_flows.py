"""B5 and B7: what the cook flow costs on top of the work itself.

B5  200 small scans through the ``cook`` flow (Prefect tasks on a Dask cluster, force) vs a
    plain ``dask.compute`` of the same per-scan work on the same cluster: overhead per scan
    (target <= 15 ms).
B7  rerun with nothing new for 200 scans: wall time (target <= 2 s) and frame bytes read
    (target 0; reported from the results, plus the process's read syscalls as an upper bound
    on all I/O, metadata included).

    .venv/bin/python -m benchmarks.bench_flows [--scans 200] [--workers 2] [--rounds 5]

B5 over many proposals: ``reprocess`` (force) of 2,000 scans in 10 and in 100 proposals,
proposals cooked 4 at a time vs one after another, against a plain ``dask.compute`` of the
same per-scan work; the method of ``benchmarks/common.py`` (interleaved rounds, medians):

    .venv/bin/python -m benchmarks.bench_flows --proposals 10,100 [--scans 2000] [--rounds 5]

Prints a Markdown table with machine info. Uses PREFECT_API_URL when set, else the embedded
server (its start-up is reported separately, not counted in B5/B7).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import header, interleaved, stderr, write_report


def _io_read() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _local_cluster(workers: int):
    """The cluster every B5/B7 contender runs on: ``workers`` single-thread processes."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )


def _setup(root: Path, n: int) -> Path:
    import yaml

    from basinflow import samples
    from basinflow.config import open_repository

    shape = (16, 32)
    spec = samples.SampleSpec(
        proposals={"p1": tuple(f"{i:04d}" for i in range(n))},
        ntheta=2,
        layouts=("nexus",),
        detector_shape=shape,
    )
    samples.generate(root / "data", spec)
    cfg = root / "bench.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "repositories": {
                    "bench": {
                        "raw": f"file://{root}/data/nexus/{{proposal}}/{{scan}}.h5#entry",
                        "spice": f"file://{root}/data/spice/{{proposal}}",
                        "output": f"file://{root}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5",
                    }
                }
            }
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        open_repository(cfg, "bench")["p1"].spice.seed("rsm", **samples.rsm_spice(shape))
    return cfg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    home = tempfile.mkdtemp(prefix="basinflow-bench-prefect-")
    os.environ.setdefault("PREFECT_HOME", home)
    from basinflow.flows.runtime import configure_environment

    configure_environment()
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)

    import dask
    from distributed import Client

    from basinflow.config import load_config
    from basinflow.flows.run import cook_proposal
    from basinflow.flows.runtime import prefect_api
    from basinflow.tasks import worker

    root = Path(tempfile.mkdtemp(prefix="basinflow-bench-"))
    t = time.perf_counter()
    cfg_path = _setup(root, args.scans)
    setup_s = time.perf_counter() - t
    settings = load_config(cfg_path).repository("bench").model_dump()
    requests = worker.plan_scans(settings, "bench", "p1", None, "rsm", force=True).todo
    scans = [r.scan for r in requests]

    rows = []
    with (
        _local_cluster(args.workers) as cluster,
        Client(cluster) as client,
    ):
        addr = cluster.scheduler_address

        def plain():
            tasks = [
                dask.delayed(worker.run_batch, pure=False)(settings, [r], force=True)
                for r in requests
            ]
            out = dask.compute(*tasks, scheduler=client)
            assert all(r[0].status == "cooked" for r in out), out[:3]
            return out

        t = time.perf_counter()
        with prefect_api() as api:
            server_s = time.perf_counter() - t

            def flow():
                res = cook_proposal(
                    cfg_path, "bench", "p1", None, "rsm", force=True, cluster_address=addr
                )
                bad = [r for r in res if r.status != "cooked"]
                assert not bad, bad[:3]
                return res

            def rerun():
                io0 = _io_read()
                res = cook_proposal(cfg_path, "bench", "p1", None, "rsm", cluster_address=addr)
                return res, _io_read() - io0

            # warm-up: workers import and JIT, the flow path and the API are exercised once
            run = interleaved(
                {"plain": plain, "flow": flow, "rerun": rerun}, rounds=args.rounds, log=stderr
            )
            per = (run["flow"].wall.median - run["plain"].wall.median) / len(scans) * 1000
            per_lo = (run["flow"].wall.min - run["plain"].wall.max) / len(scans) * 1000
            per_hi = (run["flow"].wall.max - run["plain"].wall.min) / len(scans) * 1000
            rows.append(
                (
                    "B5",
                    f"{len(scans)} scans, cook flow (force) vs plain dask.compute",
                    f"flow {run['flow'].wall.fmt(digits=2)} s, dask "
                    f"{run['plain'].wall.fmt(digits=2)} s",
                    f"{per:.1f} ms/scan overhead (difference of medians; extremes "
                    f"{per_lo:.1f} to {per_hi:.1f})",
                    "<= 15 ms/scan",
                    "pass" if per <= 15 else "FAIL",
                )
            )
            res, io = run["rerun"].result
            frames = sum(r.bytes_read for r in res)
            skipped = sum(r.status == "skipped" for r in res)
            rerun_s = run["rerun"].wall.median
            rows.append(
                (
                    "B7",
                    f"rerun, nothing new, {len(scans)} scans",
                    f"{skipped}/{len(res)} skipped",
                    f"{run['rerun'].wall.fmt(digits=2)} s, frame bytes {frames}, all reads "
                    f"{io / 1e6:.1f} MB",
                    "<= 2 s, 0 frame bytes",
                    "pass" if rerun_s <= 2 and frames == 0 else "FAIL",
                )
            )

    text = "\n".join(
        [
            *header(
                "B5 / B7: what the cook flow costs on top of the work",
                [
                    f"- cluster: {args.workers} processes x 1 thread; API "
                    f"{'embedded' if 'PREFECT_API_URL' not in os.environ else api} (start-up "
                    f"{server_s:.1f} s); sample setup {setup_s:.1f} s",
                    f"- {run.load_line()}",
                ],
            ),
            "| id | case | measured | result | target | |",
            "|---|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
            "",
        ]
    )
    write_report(text, args.out)


# --- B5 over many proposals ------------------------------------------------------------------
def _setup_proposals(root: Path, scans: int, proposals: int, parallel: dict[str, int]) -> dict:
    """``scans`` small scans spread over ``proposals`` proposals; one config per entry of
    ``parallel`` (name -> ``proposals_in_parallel``), identical otherwise."""
    import yaml

    from basinflow import samples
    from basinflow.config import open_repository

    shape = (16, 32)
    per = scans // proposals
    keys = {f"p{p:03d}": tuple(f"{i:04d}" for i in range(per)) for p in range(proposals)}
    spec = samples.SampleSpec(proposals=keys, ntheta=2, layouts=("nexus",), detector_shape=shape)
    samples.generate(root / "data", spec)
    repo = {
        "raw": f"file://{root}/data/nexus/{{proposal}}/{{scan}}.h5#entry",
        "spice": f"file://{root}/data/spice/{{proposal}}",
        "output": f"file://{root}/out/{{proposal}}/{{scan}}/{{recipe}}-{{spice}}.h5",
    }
    configs = {}
    for name, n in parallel.items():
        path = root / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump({"repositories": {"bench": repo}, "proposals_in_parallel": n})
        )
        configs[name] = path
    first = next(iter(configs.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repository = open_repository(first, "bench")
        for p in keys:
            repository[p].spice.seed("rsm", **samples.rsm_spice(shape))
    return {"configs": configs, "scans": {p: list(s) for p, s in keys.items()}}


@contextmanager
def _api(timeout: float = 900):
    """``PREFECT_API_URL`` if set, else an embedded server given time to start on a loaded
    machine (its start-up is not measured)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from basinflow.flows.runtime import EmbeddedServer, configured_api_url

    if configured_api_url():
        yield
        return
    server = EmbeddedServer().start(timeout=timeout)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def proposals_main(argv: list[str] | None = None) -> None:
    """B5 at ``--scans`` scans in each of ``--proposals`` proposal counts: ``reprocess``
    (force) with proposals cooked 4 at a time (the default) and one after another (before
    issue 15), against a plain ``dask.compute`` of the same per-scan work."""
    from benchmarks.common import Stats, header, interleaved, markdown_table, stderr, write_report

    ap = argparse.ArgumentParser(description=proposals_main.__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=2000)
    ap.add_argument("--proposals", default="10,100")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="basinflow-bench-prefect-"))
    from basinflow.flows.runtime import configure_environment

    configure_environment()
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)

    import dask
    from distributed import Client

    from basinflow.config import load_config
    from basinflow.flows.reporting import results_of
    from basinflow.flows.watch import reprocess
    from basinflow.tasks import worker

    parallel = {"parallel": 4, "series": 1}
    lines: list[str] = []
    rows = []
    with (
        _local_cluster(args.workers) as cluster,
        Client(cluster) as client,
        _api(),
    ):
        addr = cluster.scheduler_address
        for count in (int(c) for c in args.proposals.split(",")):
            root = Path(tempfile.mkdtemp(prefix=f"basinflow-bench-b5p{count}-"))
            t = time.perf_counter()
            made = _setup_proposals(root, args.scans, count, parallel)
            stderr(
                f"{args.scans} scans in {count} proposals: setup {time.perf_counter() - t:.0f} s"
            )
            configs, scans = made["configs"], made["scans"]
            settings = load_config(configs["series"]).repository("bench").model_dump()
            requests = [
                r
                for p in scans
                for r in worker.plan_scans(settings, "bench", p, None, "rsm", force=True).todo
            ]

            def plain(settings=settings, requests=requests) -> int:
                tasks = [
                    dask.delayed(worker.run_batch, pure=False)(settings, [r], force=True)
                    for r in requests
                ]
                out = dask.compute(*tasks, scheduler=client)
                assert all(r[0].status == "cooked" for r in out), out[:3]
                return len(out)

            def flow(name: str, configs=configs) -> int:
                def one_run() -> int:
                    state = reprocess(
                        str(configs[name]), "bench", None, "rsm", True, addr, return_state=True
                    )
                    results = results_of(state)
                    assert all(r.status == "cooked" for r in results), results[:3]
                    return len(results)

                return one_run

            run = interleaved(
                {"dask.compute": plain, **{n: flow(n) for n in parallel}},
                rounds=args.rounds,
                log=stderr,
            )
            base = run["dask.compute"].wall
            for name, n in parallel.items():
                wall = run[name].wall
                over = Stats(tuple(w - b for w, b in zip(wall.values, base.values, strict=True)))
                rows.append(
                    (
                        f"{args.scans} scans in {count} proposals",
                        f"reprocess, {n} at a time" if n > 1 else "reprocess, one after another",
                        wall.fmt(digits=1),
                        base.fmt(digits=1),
                        over.fmt(scale=1 / count, digits=2),
                        f"{run.ratio('series', name):.2f}x",
                    )
                )
            lines.append(f"- {count} proposals: {run.load_line()}")

    report = header(
        "B5 over many proposals (bench_flows.py --proposals)",
        [f"- cluster: {args.workers} processes x 1 thread; embedded Prefect server", *lines],
    )
    report.append(
        markdown_table(
            rows,
            (
                "case",
                "contender",
                "wall s",
                "plain dask.compute s",
                "orchestration s per proposal",
                "vs one after another",
            ),
        )
    )
    write_report("\n".join(report), args.out)


if __name__ == "__main__":
    import sys

    proposals_main() if "--proposals" in sys.argv else main()
