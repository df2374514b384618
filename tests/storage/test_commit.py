from __future__ import annotations

import os

import fsspec
import pytest

from basinflow.errors import OutputError
from basinflow.storage.commit import atomic_output, write_json_atomic


def test_local_commit_is_atomic(tmp_path):
    final = tmp_path / "d" / "out.h5"
    with pytest.raises(RuntimeError), atomic_output(final.as_uri()) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("crash")
    assert not final.exists() and os.listdir(final.parent) == []
    with atomic_output(final.as_uri()) as tmp, open(tmp, "wb") as f:
        f.write(b"whole")
    assert final.read_bytes() == b"whole" and os.listdir(final.parent) == ["out.h5"]


def test_not_writable_destination(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with (
            pytest.raises(OutputError, match="not writable") as err,
            atomic_output((ro / "x.h5").as_uri()),
        ):
            pass
        assert str(ro) in str(err.value)
    finally:
        ro.chmod(0o700)


def test_destination_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with (
        pytest.raises(OutputError, match="cannot create output directory"),
        atomic_output((tmp_path / "file" / "sub" / "x.h5").as_uri()),
    ):
        pass


def test_s3_commit_one_upload_and_nothing_on_failure(s3_options):
    fs = fsspec.filesystem("s3", **s3_options)
    if not fs.exists("out"):
        fs.mkdir("out")
    url = "s3://out/commit/x.h5"
    with pytest.raises(RuntimeError), atomic_output(url, s3_options) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("crash")
    fs.invalidate_cache()
    assert not fs.exists("out/commit/x.h5")
    with atomic_output(url, s3_options) as tmp, open(tmp, "wb") as f:
        f.write(b"whole")
    assert fs.cat_file("out/commit/x.h5") == b"whole"
    write_json_atomic("s3://out/commit/p.json", {"a": 1}, s3_options)
    assert b'"a": 1' in fs.cat_file("out/commit/p.json")
    with (
        pytest.raises(OutputError, match="no-such-bucket"),
        atomic_output("s3://no-such-bucket/x.h5", s3_options) as tmp,
        open(tmp, "wb") as f,
    ):
        f.write(b"x")


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partials_of_dead_writers_are_swept(tmp_path):
    """A writer killed mid-write leaves its temporary file; the next write of that output
    removes it, but never the temporary file of a live writer or of another host."""
    import socket

    host = socket.gethostname()
    final = tmp_path / "out.h5"
    dead = tmp_path / f".out.h5.{_dead_pid()}@{host}.deadbeef.partial"
    live = tmp_path / f".out.h5.{os.getpid()}@{host}.cafebabe.partial"
    elsewhere = tmp_path / f".out.h5.{_dead_pid()}@not-{host}.0badf00d.partial"
    other_output = tmp_path / f".other.h5.{_dead_pid()}@{host}.12345678.partial"
    for p in (dead, live, elsewhere, other_output):
        p.write_bytes(b"half")
    with atomic_output(final.as_uri()) as tmp, open(tmp, "wb") as f:
        f.write(b"whole")
    assert not dead.exists()
    assert live.exists() and elsewhere.exists() and other_output.exists()
    assert final.read_bytes() == b"whole"


def test_the_data_and_the_rename_reach_the_disk_in_order(tmp_path):
    """Observed with strace: the temporary file is fsync-ed before the rename, the
    directory after it (else a power cut can leave the final name on a truncated file)."""
    import re
    import shutil
    import subprocess
    import sys

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install -y strace)")
    final = tmp_path / "out" / "ref.h5"
    code = (
        "from basinflow.storage.commit import atomic_output\n"
        f"with atomic_output({final.as_uri()!r}) as tmp, open(tmp, 'wb') as f:\n"
        "    f.write(b'x' * 4096)\n"
    )
    log = tmp_path / "strace.txt"
    subprocess.run(
        [
            strace,
            "-f",
            "-o",
            str(log),
            "-e",
            "trace=openat,fsync,rename,renameat,renameat2,close",
            sys.executable,
            "-c",
            code,
        ],
        check=True,
    )
    fds: dict[str, str] = {}
    events = []
    for line in log.read_text().splitlines():
        if m := re.search(r'openat\(AT_FDCWD, "([^"]+)".*\)\s+= (\d+)$', line):
            fds[m.group(2)] = m.group(1)
        elif m := re.search(r"fsync\((\d+)\)\s+= 0", line):
            events.append(("fsync", fds.get(m.group(1), "?")))
        elif m := re.search(r'rename(?:at2?)?\(.*"([^"]+)".*"([^"]+)"', line):
            events.append(("rename", m.group(2)))
    renamed = events.index(("rename", str(final)))
    before, after = events[:renamed], events[renamed + 1 :]
    assert any(e[0] == "fsync" and e[1].endswith(".partial") for e in before), events
    assert ("fsync", str(final.parent)) in after, events
    assert final.read_bytes() == b"x" * 4096
