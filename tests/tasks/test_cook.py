"""bf.cook: outputs, collisions, freshness, versions side by side, S3 outputs."""

from __future__ import annotations

from dataclasses import replace

import pytest

import basinflow as bf
from basinflow.errors import OutputError
from basinflow.tasks.cooking import cook
from basinflow.tasks.freshness import up_to_date
from basinflow.tasks.outputs import current_output, plan_outputs, set_current
from basinflow.tasks.provenance import read_provenance
from basinflow.tasks.request import prepare
from tests.storage.conftest import make_repo, repo, stand_in_recipes  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("stand_in_recipes")


def test_collisions_are_refused_before_cooking(tmp_path):
    repo = make_repo(tmp_path / "site", proposals={"p1": ("1",), "p2": ("1",)})  # noqa: F811
    scans = [repo["p1"]["1"], repo["p2"]["1"]]
    bad = f"file://{tmp_path}/out/{{scan}}/{{recipe}}.h5"
    with pytest.raises(OutputError, match="one file"):
        plan_outputs(scans, "halve", bad)
    assert not (tmp_path / "out").exists()
    assert len(plan_outputs(scans, "halve")) == 2


def test_skip_force_and_staleness(repo):  # noqa: F811
    scan = repo["p1"]["1"]
    first = cook(scan, "halve", flow_run_id="run-1")
    assert first.status == "cooked" and first.bytes_written > 0 and first.bytes_read > 0
    request = prepare(scan, "halve")
    assert request.output == first.output
    assert up_to_date(request, scan.storage_options)
    assert cook(scan, "halve").status == "skipped"
    assert cook(scan, "halve", force=True).status == "cooked"
    assert not up_to_date(replace(request, output=first.output + ".nope"))


def test_a_changed_layout_option_makes_the_output_out_of_date(repo):  # noqa: F811
    """The mask values, frames path... of the config are part of what a cook is made from:
    the same scan read with another ``invalid_value`` is cooked again, and its provenance
    says how the raw file was read."""

    def scan(**options):
        again = bf.Repository(repo.template.text, output=repo.output, layout_options=options)
        return again["p1"]["1"]

    first = cook(scan(), "halve")
    assert first.status == "cooked"
    assert cook(scan(), "halve").status == "skipped"
    request = prepare(scan(invalid_value=7, monitors=("mon", "I0")), "halve")
    assert request.output == first.output and not up_to_date(request)
    assert cook(scan(invalid_value=7, monitors=("mon", "I0")), "halve").status == "cooked"
    prov = read_provenance(first.output)
    options = {"invalid_value": 7, "monitors": ["mon", "I0"]}
    assert prov["reading"] == {"layout": "auto", "options": options}
    # read back from JSON a tuple is a list: the same reading, not a change
    assert cook(scan(invalid_value=7, monitors=["mon", "I0"]), "halve").status == "skipped"


def test_output_of_an_earlier_attempt_of_the_same_run_is_reported_cooked(repo):  # noqa: F811
    """A task retried after its worker died finds the output the dead attempt committed:
    in the run that made it the scan was cooked; in any other run it is skipped."""
    scan = repo["p1"]["1"]
    first = cook(scan, "halve", flow_run_id="run-1")
    retry = cook(scan, "halve", flow_run_id="run-1")
    assert (retry.status, retry.output) == ("cooked", first.output)
    assert retry.bytes_read == 0 and retry.bytes_written > 0 and "worker died" in retry.reason
    assert cook(scan, "halve", flow_run_id="run-2").status == "skipped"
    assert cook(scan, "halve").status == "skipped"


def test_destination_not_writable_fails_with_reason(repo, tmp_path):  # noqa: F811
    (tmp_path / "blocker").write_text("a file where a directory should be")
    res = cook(repo["p1"]["1"], "halve", output=f"file://{tmp_path}/blocker/{{scan}}.h5")
    assert res.status == "failed" and "blocker" in res.reason


def test_versions_side_by_side_and_current_pointer(repo, tmp_path):  # noqa: F811
    scan = repo["p1"]["1"]
    t = f"file://{tmp_path}/v/{{proposal}}/{{scan}}/{{recipe}}-{{recipe_version}}-{{spice}}.h5"
    from basinflow.recipes.base import Recipe
    from basinflow.recipes.registry import get_recipe, register_recipe

    v1 = get_recipe("halve")
    a = cook(scan, "halve", output=t)
    register_recipe(Recipe("halve", "2", (), v1.func), replace=True)  # a new recipe version
    try:
        b = cook(scan, "halve", output=t)
    finally:
        register_recipe(v1, replace=True)
    assert a.status == b.status == "cooked" and a.output != b.output
    assert current_output(scan, "halve", t) == b.output
    set_current(scan, "halve", a.output, t)  # roll back
    assert current_output(scan, "halve", t) == a.output
    assert bf.open_referrer(a.output, trusted=[repo]).norm.shape[0] > 0


def test_s3_output(s3_site, s3_options):
    fs, s3_repo = s3_site
    res = cook(s3_repo["p1"]["1"], "halve")
    assert res.status == "cooked", res.reason
    fs.invalidate_cache()
    assert fs.exists("cooked/p1/1/halve.h5")
    ds = bf.open_referrer(res.output, storage_options=s3_options, trusted=[s3_repo])
    assert "frames" in ds and ds.norm.shape == ds.frames.shape
