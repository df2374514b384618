"""View resolution (pure functions): natural order, top revisions, conflicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from basinflow.errors import SpiceConflict, SpiceNotFound
from basinflow.keys import natural_sorted
from basinflow.spice import SpiceDocument, SpiceTable, SpiceView
from basinflow.spice.resolve import (
    find_conflicts,
    index_documents,
    resolve_handle,
    top_documents,
    visible_anchor,
)

_n = iter(range(10**9))


def doc(handle="geom", anchor="", revision=1, type="geom", created=None, **data) -> SpiceDocument:
    return SpiceDocument(
        type=type,
        handle=handle,
        uuid=f"{handle}-{anchor or 'first'}-r{revision}-{next(_n)}",
        anchor=anchor,
        revision=revision,
        created=created,
        data=data or {"beamEnergy": 1.0},
    )


def test_anchor_at_r9_applies_to_r10():
    index = index_documents([doc(anchor="r9", beamEnergy=9.0), doc(anchor="", beamEnergy=1.0)])
    assert resolve_handle(index, "geom", "r10").data["beamEnergy"] == 9.0
    assert resolve_handle(index, "geom", "r9").data["beamEnergy"] == 9.0
    assert resolve_handle(index, "geom", "r8").data["beamEnergy"] == 1.0


@pytest.mark.parametrize(
    ("scan", "expected"),
    [("9", ""), ("10", "10"), ("39", "10"), ("0040", "0040"), ("41", "0040"), ("100", "100")],
)
def test_mixed_numeric_keys(scan, expected):
    anchors = ["", "10", "0040", "100"]
    assert visible_anchor(anchors, scan) == expected


def test_no_anchor_before_the_scan():
    assert visible_anchor(["r10"], "r9") is None
    assert resolve_handle(index_documents([doc(anchor="r10")]), "geom", "r9") is None


def test_highest_revision_wins():
    docs = [doc(revision=1, beamEnergy=1.0), doc(revision=3, beamEnergy=3.0), doc(revision=2)]
    assert resolve_handle(index_documents(docs), "geom", "r1").data["beamEnergy"] == 3.0


def test_conflict_names_both_uuids():
    a, b = doc(revision=2, beamEnergy=1.0), doc(revision=2, beamEnergy=2.0)
    index = index_documents([doc(revision=1), a, b])
    with pytest.raises(SpiceConflict) as info:
        resolve_handle(index, "geom", "r5")
    assert a.uuid in str(info.value) and b.uuid in str(info.value)
    assert "revision 2" in str(info.value) and "spice.update(" in str(info.value)
    (conflict,) = find_conflicts(index)
    assert set(conflict.uuids) == {a.uuid, b.uuid}
    assert (conflict.handle, conflict.anchor, conflict.revision) == ("geom", "", 2)


def test_identical_duplicates_are_not_a_conflict():
    a = doc(created="2026-01-02T00:00:00+00:00", beamEnergy=5.0)
    b = doc(created="2026-01-01T00:00:00+00:00", beamEnergy=5.0)
    assert top_documents([a, b]) == [b]  # the oldest
    assert find_conflicts([a, b]) == []


def test_conflict_at_a_hidden_anchor_does_not_matter():
    docs = [doc(anchor="", beamEnergy=1.0), doc(anchor="", beamEnergy=2.0), doc(anchor="r5")]
    index = index_documents(docs)
    assert resolve_handle(index, "geom", "r6").anchor == "r5"
    with pytest.raises(SpiceConflict):
        resolve_handle(index, "geom", "r4")


def test_view_attribute_and_mapping_access(geom_type):
    docs = [doc(beamEnergy=8048.0, imageCenter=[1, 2]), doc("note", type="note", text="hi")]
    view = SpiceView.resolve(index_documents(docs), "r1")
    assert view.geom.beamEnergy == 8048.0 == view["geom"]["beamEnergy"]
    assert view.geom.imageDistance == 690.0  # schema default
    assert view.geom.imageCenter == (1, 2)
    assert view.geom.typed and isinstance(view.geom.model, geom_type)
    assert view.note.text == "hi" and not view.note.typed
    assert set(view) == {"geom", "note"} and len(view) == 2
    assert {d.uuid for d in view.documents} == {d.uuid for d in docs}
    assert [p["uuid"] for p in view.provenance()] == [docs[0].uuid, docs[1].uuid]
    assert list(view.of_type("note")) == ["note"]
    assert "geom" in dir(view) and "beamEnergy" in dir(view.geom)
    assert view.geom.to_dict()["imageCenter"] == [1, 2]
    assert "geom (geom) r1" in repr(view) and "<table>" in view._repr_html_()
    with pytest.raises(AttributeError, match="no spice 'rsm' is visible at scan 'r1'"):
        _ = view.rsm
    with pytest.raises(SpiceNotFound, match="no spice 'rsm'"):
        _ = view["rsm"]
    with pytest.raises(AttributeError, match="has no field 'nope'"):
        _ = view.geom.nope
    assert view.get("rsm") is None and view.geom.get("nope") is None


def test_view_only_some_handles_skips_conflicts_elsewhere():
    docs = [doc(), doc("other", beamEnergy=1.0), doc("other", beamEnergy=2.0)]
    index = index_documents(docs)
    with pytest.raises(SpiceConflict):
        SpiceView.resolve(index, "r1")
    assert list(SpiceView.resolve(index, "r1", ["geom"])) == ["geom"]
    with pytest.raises(SpiceNotFound, match="no spice 'missing'"):
        SpiceView.resolve(index, "r1", ["missing"])


def test_table_text_and_html():
    docs = [doc(), doc(anchor="r9", revision=2), doc("x", anchor="r9", beamEnergy=1.0)]
    docs.append(doc("x", anchor="r9", beamEnergy=2.0))
    table = SpiceTable.from_index(index_documents(docs))
    assert table.anchors == ("", "r9") and table.handles == ("geom", "x")
    text = repr(table)
    assert "(first scan)" in text and "r2 " in text and "CONFLICT r1" in text
    html = table._repr_html_()
    assert html.count("<tr>") == 3 and "CONFLICT" in html
    assert repr(SpiceTable.from_index({})) == "(no spice)"


keys = st.one_of(
    st.integers(0, 300).map(str),
    st.integers(0, 300).map(lambda n: f"{n:04d}"),
    st.integers(0, 300).map(lambda n: f"r{n}"),
    st.tuples(st.sampled_from("ab"), st.integers(0, 30)).map(lambda t: f"{t[0]}{t[1]}"),
)


@given(st.lists(keys, min_size=1, max_size=8, unique=True), keys, st.booleans())
def test_view_picks_the_greatest_anchor_not_after_the_scan(anchors, scan, with_first):
    if with_first:
        anchors = ["", *anchors]
    docs = [doc(anchor=a, label=a) for a in anchors]
    found = resolve_handle(index_documents(docs), "geom", scan)
    # oracle: sort anchors together with the scan; the anchor right before (or at) it wins
    ordered = natural_sorted([a for a in anchors if a] + [scan])
    position = max(i for i, k in enumerate(ordered) if k == scan)
    before = [a for a in ordered[: position + 1] if a in anchors]
    expected = before[-1] if before else ("" if with_first else None)
    assert (found.anchor if found else None) == expected


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 2)), min_size=1, max_size=8))
def test_top_revision_and_conflicts(revisions_values):
    docs = [doc(revision=r, beamEnergy=float(v)) for r, v in revisions_values]
    top = max(r for r, _ in revisions_values)
    values = {v for r, v in revisions_values if r == top}
    conflicts = find_conflicts(docs)
    assert len(conflicts) == (1 if len(values) > 1 else 0)
    if len(values) == 1:
        found = resolve_handle(index_documents(docs), "geom", "r1")
        assert found.revision == top and found.data["beamEnergy"] == float(values.pop())
