"""The per-proposal summary cache (catalog/summaries.py): a second listing of unchanged
local scans stats each file and opens none; any change to a file reads it again."""

from __future__ import annotations

import shutil

import h5py
import pytest

import basinflow as bf
from basinflow import samples
from basinflow.catalog import summaries

TEMPLATE = samples.TEMPLATES["nexus"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("BASINFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(summaries, "SETTLE_NS", 0)  # the files below are seconds old
    root = tmp_path / "site"
    samples.generate(root, samples.SampleSpec(proposals={"p1": ("1", "2")}, ntheta=2))
    return root


def _summaries(root) -> dict:
    repo = bf.Repository(f"{root.as_uri()}/{TEMPLATE}")
    scans = {k: repo["p1"][k] for k in repo["p1"].scans()}
    return {k: (s.summary, "content" in s.__dict__) for k, s in scans.items()}


def test_unchanged_scans_are_not_opened_again(site):
    first = _summaries(site)
    assert all(opened for _, opened in first.values())
    second = _summaries(site)
    assert not any(opened for _, opened in second.values())
    assert {k: s for k, (s, _) in second.items()} == {k: s for k, (s, _) in first.items()}
    assert isinstance(second["1"][0]["detector"], tuple)


def test_a_changed_file_is_read_again(site):
    _summaries(site)
    path = site / "nexus" / "p1" / "2.h5"
    with h5py.File(path, "r+") as f:  # same inode, a new title
        del f["entry/title"]
        f["entry/title"] = "dscan changed"
    again = _summaries(site)
    assert again["2"] == (again["2"][0], True) and again["2"][0]["type"] == "dscan"
    assert again["1"][1] is False  # its neighbour is still served from the cache


def test_a_replaced_file_is_read_again(site):
    _summaries(site)
    shutil.copyfile(site / "nexus" / "p1" / "1.h5", site / "nexus" / "p1" / "2.tmp")
    (site / "nexus" / "p1" / "2.tmp").replace(site / "nexus" / "p1" / "2.h5")
    assert _summaries(site)["2"][1] is True


def test_fresh_files_are_not_recorded(site, monkeypatch):
    monkeypatch.setattr(summaries, "SETTLE_NS", 10**18)  # every file is "being written"
    _summaries(site)
    assert _summaries(site)["1"][1] is True


def test_off_and_unwritable_caches_cost_nothing(site, monkeypatch, tmp_path):
    monkeypatch.setenv("BASINFLOW_CACHE", "off")
    assert _summaries(site)["1"][1] is True
    assert not (tmp_path / "cache").exists()
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("BASINFLOW_CACHE", str(blocker))
    assert _summaries(site)["1"][0]["frames"] > 0


def test_torn_lines_are_skipped(site, tmp_path):
    first = _summaries(site)
    (cache,) = (tmp_path / "cache" / "summaries").glob("*.jsonl")
    text = cache.read_text()
    cache.write_text("not json\n" + text + '{"scan": "1", "files"')
    again = _summaries(site)
    assert again["1"] == (first["1"][0], False)
