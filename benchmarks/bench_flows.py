"""B5 and B7: what the cook flow costs on top of the work itself.

B5  200 small scans through the ``cook`` flow (Prefect tasks on a Dask cluster, force) vs a
    plain ``dask.compute`` of the same per-scan work on the same cluster: overhead per scan
    (target <= 15 ms).
B7  rerun with nothing new for 200 scans: wall time (target <= 2 s) and frame bytes read
    (target 0; reported from the results, plus the process's read syscalls as an upper bound
    on all I/O, metadata included).

    .venv/bin/python -m benchmarks.bench_flows [--scans 200] [--workers 2] [--rounds 5]

Prints a Markdown table with machine info. Uses PREFECT_API_URL when set, else the embedded
server (its start-up is reported separately, not counted in B5/B7).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
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
    from distributed import Client, LocalCluster

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
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
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


if __name__ == "__main__":
    main()
