"""Who owns a Running flow run: ``owner_gone`` judges only this host's processes, by pid
and start time, and never calls a live process dead."""

from __future__ import annotations

import subprocess
import sys

from basinflow.flows.liveness import HOST, PID, STARTED, owner_gone, owner_labels


def test_this_process_is_alive():
    assert owner_gone(owner_labels()) is None


def test_a_finished_process_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    labels = {**owner_labels(), PID: str(proc.pid)}
    proc.wait()  # reaped: the pid is free
    assert owner_gone(labels) == proc.pid


def test_a_reused_pid_is_not_the_owner():
    labels = {**owner_labels(), STARTED: "12.34"}  # this pid, but a process started in 1970
    assert owner_gone(labels) == int(labels[PID])


def test_other_hosts_and_unlabelled_runs_are_not_judged():
    dead = {**owner_labels(), PID: "999999999"}
    assert owner_gone(dead) == 999999999
    assert owner_gone({**dead, HOST: "another-host"}) is None
    assert owner_gone({}) is None and owner_gone(None) is None
    assert owner_gone({**dead, PID: "not-a-pid"}) is None
    assert owner_gone({**dead, STARTED: "yesterday"}) is None
