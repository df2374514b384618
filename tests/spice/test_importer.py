"""Importing nx5d spice: round trip, idempotence, and refusals that write nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from basinflow.errors import SpiceError, SpiceValidationError, StorageError
from basinflow.spice import (
    FsspecSpiceStore,
    ProposalSpice,
    SpiceDocument,
    import_spice,
    read_spice_documents,
)

from .conftest import snapshot

NX5D_DOCS = [
    {
        "version": "kmc3/1a",
        "type": "settings",
        "handle": "settings",
        "uuid": "f33647c0-f399-4bb9-8d73-875d6479f940",
        "revision": 1,
        "anchor": "",
        "data": {"img_center": [50, 120], "img_distance": 690.0, "grid_size": [70, 140]},
    },
    {
        "version": "kmc3/1a",
        "type": "settings",
        "handle": "settings",
        "uuid": "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
        "revision": 2,
        "anchor": "",
        "data": {"img_center": [50, 120], "img_distance": 690.0, "grid_size": [80, 150]},
    },
    {
        "version": "kmc3/1a",
        "type": "settings",
        "handle": "settings",
        "uuid": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
        "revision": 1,
        "anchor": "r091726",
        "data": {"img_center": [52, 118], "img_distance": 700.0, "grid_size": [80, 150]},
    },
    {
        "version": "kmc3/1a",
        "type": "offsets",
        "uuid": "11111111-2222-4333-8444-555555555555",
        "data": {"theta": -0.02},
    },
]


@pytest.fixture
def nx5d_dir(tmp_path):
    src = tmp_path / "nx5d"
    src.mkdir()
    (src / "a.json").write_text(json.dumps(NX5D_DOCS[0]))
    (src / "b.json").write_text(json.dumps(NX5D_DOCS[1:3]))  # a list
    (src / "c.yaml").write_text(yaml.safe_dump({NX5D_DOCS[3]["uuid"]: NX5D_DOCS[3]}))
    (src / "notes.txt").write_text("not spice")
    return src


def test_round_trip(tmp_path, nx5d_dir):
    store_url = (tmp_path / "store").as_uri()
    report = import_spice(nx5d_dir, store_url)
    assert len(report.imported) == 4 and not report.skipped
    assert "imported 4" in str(report)
    stored = {d.uuid: d for d in FsspecSpiceStore(store_url).documents()}
    for original in NX5D_DOCS:
        doc = stored[original["uuid"]]
        for field, value in original.items():
            assert doc.to_dict()[field] == value, field
        assert doc.handle == original.get("handle", original["type"])
        assert not doc.typed and doc.version == "kmc3/1a"
    # the documents are usable as they are
    spice = ProposalSpice(store_url)
    assert spice.view("r091725").settings.grid_size == (80, 150)
    assert spice.view("r091726").settings.img_distance == 700.0
    assert spice.view("r1").offsets.theta == -0.02
    # and importing again writes nothing
    before = snapshot(tmp_path / "store")
    again = import_spice(nx5d_dir, store_url)
    assert not again.imported and len(again.skipped) == 4
    assert snapshot(tmp_path / "store") == before


def test_single_json_list_file(tmp_path):
    src = tmp_path / "spice.json"
    src.write_text(json.dumps(NX5D_DOCS))
    docs = read_spice_documents(src)
    assert [d.uuid for d in docs] == [d["uuid"] for d in NX5D_DOCS]
    assert all(isinstance(d, SpiceDocument) for d in docs)


def test_dry_run_writes_nothing(tmp_path, nx5d_dir):
    report = import_spice(nx5d_dir, (tmp_path / "store").as_uri(), dry_run=True)
    assert len(report.imported) == 4 and "would import" in str(report)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "malformed spice document .*bad.json"),
        (json.dumps({**NX5D_DOCS[0], "uuid": "../../escaped"}), r"bad.json: invalid spice uuid"),
        (json.dumps({**NX5D_DOCS[0], "handle": "a/b"}), r"bad.json: invalid spice handle"),
        (json.dumps([NX5D_DOCS[0], {"type": "x"}]), r"bad.json\[1\]: missing field 'uuid'"),
        (
            json.dumps({**NX5D_DOCS[0], "data": {"img_distance": 1.0}}),
            "two different documents share uuid",
        ),
    ],
)
def test_bad_sources_write_nothing(tmp_path, nx5d_dir, content, message):
    (nx5d_dir / "bad.json").write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(SpiceError, match=message):
        import_spice(nx5d_dir, (tmp_path / "store").as_uri())
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "store").exists()


def test_uuid_taken_by_a_different_document_writes_nothing(tmp_path, nx5d_dir):
    store = FsspecSpiceStore((tmp_path / "store").as_uri())
    store.put(SpiceDocument.from_dict({**NX5D_DOCS[3], "data": {"theta": 1.0}}))
    before = snapshot(tmp_path)
    with pytest.raises(SpiceError, match="already holds a different document"):
        import_spice(nx5d_dir, store)
    assert snapshot(tmp_path) == before


def test_registered_types_are_validated(tmp_path, nx5d_dir):
    (nx5d_dir / "g.json").write_text(
        json.dumps({"type": "geom", "uuid": "g1", "data": {"beamEnergy": "high"}})
    )
    with pytest.raises(SpiceValidationError, match=r"imported spice document g1.*'beamEnergy'"):
        import_spice(nx5d_dir, (tmp_path / "store").as_uri())
    assert not (tmp_path / "store").exists()
    report = import_spice(nx5d_dir, (tmp_path / "store").as_uri(), validate=False)
    assert len(report.imported) == 5


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        import_spice(tmp_path / "nothing", (tmp_path / "store").as_uri())
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpiceError, match=r"no .json or .yaml files"):
        import_spice(tmp_path / "empty", (tmp_path / "store").as_uri())
