"""BlobStore contract; every implementation subclasses :class:`BlobStoreContract`."""

from __future__ import annotations

from pathlib import Path

import pytest

from kahu.errors import InvalidInput, NotFound
from kahu.storage import BlobStore, FilesystemBlobStore


class BlobStoreContract:
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        raise NotImplementedError  # each implementation's subclass provides it

    def test_put_get_roundtrip(self, store: BlobStore) -> None:
        store.put("1.2/3.4/5.dcm", b"abc")
        assert store.get("1.2/3.4/5.dcm") == b"abc"
        assert store.exists("1.2/3.4/5.dcm")

    def test_put_many(self, store: BlobStore) -> None:
        items = [(f"s{i % 3}/o{i}", bytes([i]) * i) for i in range(100)]
        store.put_many(items)
        assert all(store.get(k) == v for k, v in items)

    def test_put_replaces(self, store: BlobStore) -> None:
        store.put("a/b", b"1")
        store.put("a/b", b"2")
        assert store.get("a/b") == b"2"

    def test_missing_is_not_found(self, store: BlobStore) -> None:
        with pytest.raises(NotFound):
            store.get("nope")
        assert store.delete("nope") is False

    def test_delete(self, store: BlobStore) -> None:
        store.put("x/y/z", b"1")
        assert store.delete("x/y/z") is True
        assert not store.exists("x/y/z")

    def test_keys_by_prefix(self, store: BlobStore) -> None:
        for key in ("s1/a", "s1/b", "s2/c"):
            store.put(key, b"")
        assert sorted(store.keys("s1/")) == ["s1/a", "s1/b"]
        assert sorted(store.keys()) == ["s1/a", "s1/b", "s2/c"]

    def test_staged_data_is_invisible_until_published(self, store: BlobStore) -> None:
        staged = store.stage(b"payload")
        assert staged.size == 7
        assert list(store.keys()) == []
        store.publish([(staged, "s/a")])
        assert store.get("s/a") == b"payload"

    def test_discarded_data_never_appears(self, store: BlobStore) -> None:
        store.discard(store.stage(b"payload"))
        assert list(store.keys()) == []

    def test_publishing_to_an_invalid_key_publishes_nothing(self, store: BlobStore) -> None:
        good, bad = store.stage(b"1"), store.stage(b"2")
        with pytest.raises(InvalidInput):
            store.publish([(good, "ok/a"), (bad, "../escape")])
        assert list(store.keys()) == []

    @pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b"])
    def test_escaping_keys_are_refused(self, store: BlobStore, key: str) -> None:
        with pytest.raises(InvalidInput):
            store.put(key, b"x")


class TestFilesystemBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return FilesystemBlobStore(tmp_path / "blobs")

    def test_no_temporary_files_are_left(self, store: BlobStore, tmp_path: Path) -> None:
        store.put("a/b", b"data")
        assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []

    def test_failed_batch_leaves_no_temporary_files(self, store: BlobStore, tmp_path: Path) -> None:
        from kahu.errors import StorageError

        (tmp_path / "blobs" / "taken").write_bytes(b"a file where a folder must go")
        with pytest.raises(StorageError):
            store.put_many([("ok/a", b"1"), ("taken/b", b"2")])
        assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []

    def test_failed_publish_leaves_nothing(self, store: BlobStore, tmp_path: Path) -> None:
        from kahu.errors import StorageError

        (tmp_path / "blobs" / "taken").write_bytes(b"a file where a folder must go")
        staged = [(store.stage(b"1"), "ok/a"), (store.stage(b"2"), "taken/b")]
        with pytest.raises(StorageError):
            store.publish(staged)
        assert not store.exists("ok/a")
        assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []

    def test_stale_staged_files_are_swept_at_start(self, tmp_path: Path) -> None:
        import os

        FilesystemBlobStore(tmp_path / "blobs")
        stale = tmp_path / "blobs" / ".tmp" / "dead.part"
        fresh = tmp_path / "blobs" / ".tmp" / "live.part"
        stale.write_bytes(b"left by a crash")
        fresh.write_bytes(b"another process is writing this")
        os.utime(stale, (0, 0))
        FilesystemBlobStore(tmp_path / "blobs")
        assert not stale.exists()
        assert fresh.exists()

    def test_empty_folders_are_pruned_on_delete(self, store: BlobStore, tmp_path: Path) -> None:
        store.put("a/b/c", b"1")
        store.delete("a/b/c")
        assert not (tmp_path / "blobs" / "a").exists()
