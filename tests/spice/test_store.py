"""Spice stores: one contract suite, filled in by each implementation (memory, file,
memory://, s3:// on a real moto server)."""

from __future__ import annotations

import pickle
import threading
import uuid as uuidlib

import pytest

from basinflow.errors import InvalidKeyError, SpiceError, SpiceNotFound, StorageError
from basinflow.spice import (
    FsspecSpiceStore,
    MemorySpiceStore,
    SpiceDocument,
    SpiceStore,
    open_spice_store,
)

from .conftest import snapshot


def doc(n: int = 1, **kw) -> SpiceDocument:
    base = {
        "type": "note",
        "handle": "note",
        "uuid": f"00000000-0000-4000-8000-{n:012d}",
        "data": {"n": n},
    }
    return SpiceDocument(**(base | kw))


class StoreContract:
    """What every spice store must do. Subclasses provide ``store``, ``other`` (a second
    instance on the same location, as another process would have) and ``write_raw``."""

    shared = True  # whether ``other`` sees ``store``'s files (not for MemorySpiceStore)

    @pytest.fixture
    def store(self) -> SpiceStore:
        raise NotImplementedError

    @pytest.fixture
    def other(self, store) -> SpiceStore:
        raise NotImplementedError

    def write_raw(self, store: SpiceStore, name: str, data: bytes) -> None:
        raise NotImplementedError

    def test_empty(self, store):
        assert store.refresh() == []
        assert store.documents() == ()

    def test_put_get_round_trip(self, store):
        d = doc(1, anchor="r9", revision=2, parent="p", author="a", comment="c")
        assert store.put(d) == d
        assert store.get(d.uuid) == d
        assert d.uuid in store
        assert store.refresh() == []  # nothing new: it was cached on write
        assert store.documents() == (d,)

    def test_put_is_idempotent_for_the_same_statement(self, store):
        first = store.put(doc(1, created="2026-01-01T00:00:00+00:00"))
        again = store.put(doc(1, created="2026-02-02T00:00:00+00:00", author="someone else"))
        assert again == first  # the stored one, untouched
        store.refresh()
        assert len(store.documents()) == 1

    def test_never_overwrites_a_different_document(self, store, other):
        store.put(doc(1))
        with pytest.raises(SpiceError, match=r"different spice document with uuid .* exists"):
            other.put(doc(1, data={"n": 999}))
        store.refresh()
        other.refresh()
        assert other.get(doc(1).uuid).data["n"] == 1

    def test_other_instances_see_new_documents_after_refresh(self, store, other):
        if not self.shared:
            pytest.skip("a memory store is private to its instance")
        other.refresh()
        store.put(doc(1))
        store.put(doc(2))
        fresh = other.refresh()
        assert {d.uuid for d in fresh} == {doc(1).uuid, doc(2).uuid}
        assert other.refresh() == []  # cached: nothing read again

    def test_malformed_document_is_named(self, store):
        store.put(doc(1))
        name = f"{doc(2).uuid}.json"
        self.write_raw(store, name, b'{"type": "note", "uuid": ')
        with pytest.raises(SpiceError, match=f"malformed spice document .*{name}"):
            store.refresh()
        assert doc(1).uuid in store  # the good ones are still there
        with pytest.raises(SpiceError, match=name):  # and it stays an error until fixed
            store.refresh()

    def test_file_name_must_match_uuid(self, store):
        self.write_raw(store, "someone-else.json", doc(3).to_json().encode())
        with pytest.raises(SpiceError, match="does not match the file name"):
            store.refresh()

    def test_other_files_are_ignored(self, store):
        self.write_raw(store, "README.md", b"# not spice")
        self.write_raw(store, ".hidden.json.tmp", b"{")
        store.put(doc(1))
        store.refresh()
        assert [d.uuid for d in store.documents()] == [doc(1).uuid]

    def test_unknown_and_invalid_uuids(self, store):
        with pytest.raises(SpiceNotFound, match="no spice document with uuid 'nope'"):
            store.get("nope")
        with pytest.raises(InvalidKeyError, match="invalid spice uuid"):
            store.get("../../etc/passwd")

    def test_pickles(self, store):
        store.put(doc(1))
        again = pickle.loads(pickle.dumps(store))
        assert again.documents() == (doc(1),)


class TestMemoryStore(StoreContract):
    shared = False

    @pytest.fixture
    def store(self):
        return MemorySpiceStore()

    @pytest.fixture
    def other(self, store):
        return store

    def write_raw(self, store, name, data):
        store._files[name] = data


class FsspecContract(StoreContract):
    @pytest.fixture
    def other(self, store):
        return FsspecSpiceStore(store.url, store.storage_options)

    def write_raw(self, store, name, data):
        store.fs.makedirs(store.root, exist_ok=True)
        store.fs.pipe_file(f"{store.root}/{name}", data)

    def test_concurrent_writers_of_one_name_exactly_one_wins(self, store):
        """Threads racing to create one file name with different content: one wins."""
        stores = [FsspecSpiceStore(store.url, store.storage_options) for _ in range(8)]
        barrier = threading.Barrier(len(stores))
        results: list[object] = [None] * len(stores)

        def write(i):
            barrier.wait()
            try:
                results[i] = stores[i].put(doc(7, data={"n": i}))
            except SpiceError as exc:
                results[i] = exc

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if isinstance(r, SpiceDocument)]
        assert len(winners) == 1, results
        store.refresh()
        assert store.get(doc(7).uuid) == winners[0]


class TestFileStore(FsspecContract):
    @pytest.fixture
    def store(self, tmp_path):
        return FsspecSpiceStore((tmp_path / "spice" / "p1").as_uri())

    def test_layout_and_no_temporary_files_left(self, tmp_path, store):
        store.put(doc(1))
        assert snapshot(tmp_path).keys() == {f"spice/p1/{doc(1).uuid}.json"}

    def test_bare_path_and_missing_directory(self, tmp_path):
        store = FsspecSpiceStore(str(tmp_path / "not" / "yet"))
        assert store.documents() == ()
        assert not (tmp_path / "not").exists()  # reading creates nothing
        store.put(doc(1))
        assert (tmp_path / "not" / "yet" / f"{doc(1).uuid}.json").exists()

    def test_unwritable_store_is_a_storage_error(self, tmp_path):
        (tmp_path / "file").write_text("x")
        store = FsspecSpiceStore(str(tmp_path / "file" / "spice"))
        with pytest.raises(StorageError, match="cannot write spice document"):
            store.put(doc(1))


class TestFsspecMemoryStore(FsspecContract):
    @pytest.fixture
    def store(self):
        return FsspecSpiceStore(f"memory://spice-tests/{uuidlib.uuid4().hex}/p1")


class TestS3Store(FsspecContract):
    @pytest.fixture
    def store(self, s3_store_url):
        url, options = s3_store_url
        return FsspecSpiceStore(url, options)

    def test_exclusive_create_is_supported(self, store):
        assert store.supports_exclusive_create


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "non-empty"),
        ("file:///spice/{proposal}", "template field"),
        ("nosuchproto://x/y", "cannot open spice store"),
    ],
)
def test_bad_store_urls(url, message):
    with pytest.raises(StorageError, match=message):
        FsspecSpiceStore(url)


def test_open_spice_store():
    assert isinstance(open_spice_store(None), MemorySpiceStore)
    assert isinstance(open_spice_store(""), MemorySpiceStore)  # nx5d's spice_url=''
    mem = MemorySpiceStore()
    assert open_spice_store(mem) is mem
    assert isinstance(open_spice_store("memory://x/y"), FsspecSpiceStore)
