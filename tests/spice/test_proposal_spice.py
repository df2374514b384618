"""``prop.spice``: seed, update, anchor, view, history, conflicts, ls, stacks, bad input."""

from __future__ import annotations

import warnings

import pytest

from basinflow.errors import (
    Error,
    InvalidKeyError,
    ScanNotFound,
    SpiceConflict,
    SpiceError,
    SpiceNotFound,
    SpiceValidationError,
    UntypedSpiceWarning,
)
from basinflow.spice import FsspecSpiceStore, MemorySpiceStore, ProposalSpice, StackGroup

from .conftest import snapshot

SCANS = ["r1", "r2", "r8", "r9", "r10", "r11", "r12", "r20"]


@pytest.fixture
def spice():
    return ProposalSpice(MemorySpiceStore(), scans=lambda: SCANS, author="tester")


@pytest.fixture
def file_spice(tmp_path):
    store = FsspecSpiceStore((tmp_path / "spice" / "p1").as_uri())
    return ProposalSpice(store, scans=lambda: SCANS, author="tester", max_age=0)


def test_seed_and_view(spice):
    d = spice.seed("geom", beamEnergy=8048.0, comment="first")
    assert (d.type, d.handle, d.anchor, d.revision, d.parent) == ("geom", "geom", "", 1, None)
    assert d.typed and d.author == "tester" and d.comment == "first" and d.created
    view = spice.view("r10")
    assert view.geom.beamEnergy == 8048.0 and view["geom"]["beamEnergy"] == 8048.0
    assert view.documents == (d,)


def test_seed_is_idempotent(spice):
    a = spice.seed("geom", beamEnergy=8048.0)
    b = spice.seed("geom", beamEnergy=8048)  # same value as JSON
    assert a == b and len(spice.documents()) == 1


def test_seed_with_different_data_at_an_existing_anchor_is_refused(spice):
    a = spice.seed("geom", beamEnergy=1.0)
    with pytest.raises(SpiceError, match=f"already exists.*update\\('{a.uuid}'"):
        spice.seed("geom", beamEnergy=2.0)


def test_handle_keeps_its_type(spice):
    spice.seed("geom", beamEnergy=1.0)
    with pytest.raises(SpiceError, match="has type 'geom', not 'note'"):
        spice.seed("note", "geom", anchor="r9", x=1)


def test_untyped_spice_is_marked_and_warned(spice):
    with pytest.warns(UntypedSpiceWarning, match="'free' is not registered"):
        d = spice.seed("free", text="anything", nested={"a": [1, 2]})
    assert not d.typed
    assert spice.view("r1").free.nested == {"a": (1, 2)}


def test_fields_named_like_parameters_go_through_values(spice):
    with pytest.warns(UntypedSpiceWarning):
        d = spice.seed("free", values={"handle": "h", "anchor": "a", "type": "t"}, x=1)
    assert dict(d.data) == {"handle": "h", "anchor": "a", "type": "t", "x": 1}
    assert spice.view("r1")["free"]["anchor"] == "a"


def test_update_by_viewpoint_writes_next_revision_at_its_anchor(spice):
    base = spice.seed("geom", anchor="r9", beamEnergy=1.0)
    new = spice.update("r11", "geom", imageDistance=700.0, comment="moved")
    assert (new.anchor, new.revision, new.parent) == ("r9", 2, base.uuid)
    assert dict(new.data) == {"beamEnergy": 1.0, "imageDistance": 700.0}
    assert spice.view("r9").geom.imageDistance == 700.0
    # nothing changes -> nothing written
    assert spice.update("r11", "geom", imageDistance=700.0) == new
    assert len(spice.history("geom")) == 2


def test_update_by_uuid_and_by_document(spice):
    base = spice.seed("geom", beamEnergy=1.0)
    a = spice.update(base.uuid, beamEnergy=2.0)
    b = spice.update(a, beamEnergy=3.0)
    assert (a.revision, b.revision, b.parent) == (2, 3, a.uuid)
    # updating an old revision by uuid writes above the top (a deliberate revert)
    c = spice.update(base.uuid, beamEnergy=1.5)
    assert (c.revision, c.parent) == (4, base.uuid)
    assert spice.view("r1").geom.beamEnergy == 1.5


def test_anchor_copies_what_is_visible(spice):
    base = spice.seed("geom", beamEnergy=1.0, imageDistance=600.0)
    anchored = spice.anchor("r9", "geom", imageDistance=690.0)
    assert (anchored.anchor, anchored.revision, anchored.parent) == ("r9", 1, base.uuid)
    assert dict(anchored.data) == {"beamEnergy": 1.0, "imageDistance": 690.0}
    assert spice.view("r8").geom.imageDistance == 600.0
    assert spice.view("r10").geom.imageDistance == 690.0  # natural order: r9 -> r10
    assert spice.anchor("r9", "geom") == anchored  # already anchored there: no-op
    # anchoring with changes where an anchor exists is an update there
    again = spice.anchor("r9", "geom", imageDistance=691.0)
    assert (again.anchor, again.revision, again.parent) == ("r9", 2, anchored.uuid)


def test_history_in_order(spice):
    spice.seed("geom", anchor="r10", beamEnergy=10.0)
    spice.seed("geom", anchor="r9", beamEnergy=9.0)
    spice.seed("geom", beamEnergy=0.0)
    spice.update("r9", "geom", beamEnergy=9.5)
    assert [(d.anchor, d.revision) for d in spice.history("geom")] == [
        ("", 1),
        ("r9", 1),
        ("r9", 2),
        ("r10", 1),
    ]


def test_conflict_is_reported_and_resolved_by_update_by_uuid(file_spice, monkeypatch):
    spice = file_spice
    base = spice.seed("geom", beamEnergy=1.0)
    # two people update at once: both start from revision 1, neither sees the other
    other = ProposalSpice(FsspecSpiceStore(spice.store.url), author="other")
    other.refresh()
    monkeypatch.setattr(other.store, "refresh", lambda: [])  # its listing predates a
    a = spice.update(base.uuid, beamEnergy=2.0)
    b = other.update(base.uuid, beamEnergy=3.0, author="bob")
    monkeypatch.undo()
    assert a.revision == b.revision == 2
    spice.refresh()
    with pytest.raises(SpiceConflict) as info:
        spice.view("r5")
    assert a.uuid in str(info.value) and b.uuid in str(info.value)
    (conflict,) = spice.conflicts()
    assert set(conflict.uuids) == {a.uuid, b.uuid}
    assert "CONFLICT" in repr(spice.ls())
    with pytest.raises(SpiceConflict):  # a viewpoint cannot say which one is meant
        spice.update("r5", "geom", beamEnergy=4.0)
    with pytest.raises(SpiceConflict):
        spice.seed("geom", beamEnergy=2.0)
    resolved = spice.update(b.uuid)  # keep bob's, unchanged
    assert (resolved.revision, resolved.parent) == (3, b.uuid)
    assert spice.conflicts() == [] and spice.view("r5").geom.beamEnergy == 3.0


def test_ls_table(spice):
    spice.seed("geom", beamEnergy=1.0)
    spice.anchor("r9", "geom")
    spice.seed("stack", anchor="r9", size=2)
    table = spice.ls()
    assert table.anchors == ("", "r9") and table.handles == ("geom", "stack")
    rows = table.rows()
    assert rows[0]["stack"] == "" and rows[1]["geom"].startswith("r1 ")
    assert "<table>" in spice._repr_html_()


def test_stacks(spice):
    spice.seed("stack", anchor="r8", label="pump-probe")
    spice.seed("stack", anchor="r11", size=2)
    assert spice.stacks() == [
        StackGroup("r8", ["r8", "r9", "r10"]),
        StackGroup("r11", ["r11", "r12"]),
        StackGroup("r20", ["r20"]),
    ]
    assert ProposalSpice(MemorySpiceStore(), scans=SCANS).stacks() == []
    with pytest.raises(SpiceError, match="needs the proposal's scans"):
        ProposalSpice(None).stacks()


def test_refresh_sees_documents_from_other_processes(file_spice):
    other = ProposalSpice(FsspecSpiceStore(file_spice.store.url), scans=lambda: SCANS)
    assert other.handles() == []
    file_spice.seed("geom", beamEnergy=1.0)
    assert [d.handle for d in other.refresh()] == ["geom"]
    assert other.view("r1").geom.beamEnergy == 1.0


def test_reads_refresh_after_max_age(file_spice):
    reader = ProposalSpice(FsspecSpiceStore(file_spice.store.url), max_age=3600)
    assert reader.handles() == []
    file_spice.seed("geom", beamEnergy=1.0)
    assert reader.handles() == []  # still trusting its listing
    reader.max_age = 0
    assert reader.handles() == ["geom"]


def test_dry_run_writes_nothing(file_spice, tmp_path):
    before = snapshot(tmp_path)
    d = file_spice.seed("geom", beamEnergy=1.0, dry_run=True)
    assert d.revision == 1 and snapshot(tmp_path) == before
    real = file_spice.seed("geom", beamEnergy=1.0)
    before = snapshot(tmp_path)
    assert file_spice.update(real.uuid, beamEnergy=2.0, dry_run=True).revision == 2
    assert file_spice.anchor("r9", "geom", dry_run=True).anchor == "r9"
    assert snapshot(tmp_path) == before


def test_spice_without_scans_accepts_any_anchor():
    spice = ProposalSpice(None)
    spice.seed("geom", anchor="0040", beamEnergy=1.0)
    assert spice.view("41").geom.beamEnergy == 1.0


def test_anchor_after_the_last_scan_is_allowed(spice):
    spice.seed("geom", anchor="r99", beamEnergy=1.0)  # scans still to come
    assert "geom" not in spice.view("r20") and spice.view("r100").geom.beamEnergy == 1.0


# --- bad input: a clear basinflow error, nothing written --------------------------------------
BAD = [
    (lambda s: s.seed("ge/om", beamEnergy=1.0), InvalidKeyError, "invalid spice type name"),
    (lambda s: s.seed("geom", "../evil", beamEnergy=1.0), InvalidKeyError, "invalid spice handle"),
    (lambda s: s.seed("geom", "a/b", beamEnergy=1.0), InvalidKeyError, "invalid spice handle"),
    (lambda s: s.seed("geom", "1x", beamEnergy=1.0), InvalidKeyError, "Python identifier"),
    (
        lambda s: s.seed("geom", anchor="../r9", beamEnergy=1.0),
        InvalidKeyError,
        "invalid spice anchor",
    ),
    (
        lambda s: s.seed("geom", anchor="r 9", beamEnergy=1.0),
        InvalidKeyError,
        "invalid spice anchor",
    ),
    (
        lambda s: s.seed("geom", anchor="r5", beamEnergy=1.0),
        ScanNotFound,
        "anchor 'r5' is not a scan of this proposal",
    ),
    (lambda s: s.seed("geom", beamEnrgy=1.0), SpiceValidationError, "unknown field 'beamEnrgy'"),
    (lambda s: s.seed("geom", beamEnergy="high"), SpiceValidationError, "field 'beamEnergy'"),
    (lambda s: s.seed("geom"), SpiceValidationError, "field 'beamEnergy' is required"),
    (
        lambda s: s.seed("geom", beamEnergy=1.0, recipe="mypkg.evil:run"),
        SpiceValidationError,
        "unknown field 'recipe'",
    ),
    (lambda s: s.update("r9", "nothing", x=1), SpiceNotFound, "no spice handle 'nothing'"),
    (lambda s: s.update("r9", x=1), SpiceError, "needs handle="),
    (
        lambda s: s.update("00000000-0000-4000-8000-000000000000", x=1),
        SpiceNotFound,
        "no spice document with uuid",
    ),
    (lambda s: s.update("../../x", "geom", x=1), InvalidKeyError, "invalid scan"),
    (lambda s: s.update("a/b", "geom", x=1), InvalidKeyError, "invalid scan"),
    (lambda s: s.anchor("r9", "nothing"), SpiceNotFound, "no spice handle 'nothing'"),
    (lambda s: s.anchor("../r9", "geom"), InvalidKeyError, "invalid spice anchor"),
    (lambda s: s.view("../r9"), InvalidKeyError, "invalid scan"),
    (lambda s: s.history("../x"), InvalidKeyError, "invalid spice handle"),
    (lambda s: s.history("nothing"), SpiceNotFound, "no spice handle 'nothing'"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_input_writes_nothing_at_all(tmp_path, call, error, message):
    store = FsspecSpiceStore((tmp_path / "spice").as_uri())
    spice = ProposalSpice(store, scans=lambda: SCANS)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message) as info:
        call(spice)
    assert isinstance(info.value, Error)
    assert snapshot(tmp_path) == before == {}


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_input_on_a_populated_store_changes_nothing(tmp_path, call, error, message):
    (tmp_path / "outside").mkdir()
    store = FsspecSpiceStore((tmp_path / "spice").as_uri())
    spice = ProposalSpice(store, scans=lambda: SCANS)
    spice.seed("geom", beamEnergy=1.0)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message):
        call(spice)
    assert snapshot(tmp_path) == before


def test_wrong_type_on_update_names_the_field(spice):
    spice.seed("geom", beamEnergy=1.0)
    with pytest.raises(SpiceValidationError, match="spice 'geom': field 'imageCenter'"):
        spice.update("r1", "geom", imageCenter="middle")
    assert len(spice.documents()) == 1


def test_update_of_invisible_handle(spice):
    spice.seed("geom", anchor="r10", beamEnergy=1.0)
    with pytest.raises(SpiceNotFound, match="no spice 'geom' is visible at scan 'r9'"):
        spice.update("r9", "geom", beamEnergy=2.0)
    with pytest.raises(SpiceNotFound, match="seed it there instead"):
        spice.anchor("r9", "geom")


def test_malformed_document_in_the_store_is_named(file_spice, tmp_path):
    file_spice.seed("geom", beamEnergy=1.0)
    bad = tmp_path / "spice" / "p1" / "0badf00d.json"
    bad.write_text('{"type": "geom", ')
    with pytest.raises(SpiceError, match=r"malformed spice document .*0badf00d.json"):
        file_spice.view("r1")
    with pytest.raises(SpiceError, match=r"0badf00d.json"):
        file_spice.seed("geom", "other", beamEnergy=2.0)
    bad.unlink()
    assert file_spice.view("r1").geom.beamEnergy == 1.0


def test_stored_document_that_no_longer_matches_its_schema(spice, geom_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntypedSpiceWarning)
        from basinflow.spice import unregister_spice_type

        unregister_spice_type("geom")
        d = spice.seed("geom", beamEnergy="not a number")
    from basinflow.spice import register_spice_type

    register_spice_type("geom", geom_type)
    with pytest.raises(SpiceValidationError, match=f"spice document {d.uuid}.*'beamEnergy'"):
        spice.view("r1")
