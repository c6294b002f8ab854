"""The egress gate (what may not leave even if declared), the ledger's hash chain and its
append-only table, the policy's decisions, join tokens and small-cell suppression."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import text, update

from kahu.catalog.tables import utcnow
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed, EgressRefused
from kahu.federation.egress import Ledger, Release, as_csv, inspect
from kahu.federation.identity import Nonces, load_identity, request_text, verify
from kahu.federation.peers import Peers
from kahu.federation.policy import Pin, Policy, decide
from kahu.federation.tables import FedInvite
from kahu.operators.statistics import SUPPRESSED, suppress
from tests import synthetic

UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"


def _refused(data: bytes, kind: str = "json", **options: object) -> str:
    with pytest.raises(EgressRefused) as caught:
        inspect(data, kind=kind, max_bytes=options.pop("max_bytes", 1 << 20), **options)  # type: ignore[arg-type]
    return str(caught.value)


class TestGate:
    def test_statistics_pass(self) -> None:
        inspect(json.dumps({"by": {"CT": 5}}).encode(), kind="json", max_bytes=1000)

    def test_dicom_with_and_without_preamble(self) -> None:
        [data] = synthetic.ct_series(1, 8)
        assert "DICOM" in _refused(data, "weights")
        assert "DICOM" in _refused(data[128:], "text")  # the magic without the preamble
        assert "DICOM" in _refused(data[132:], "text")  # the bare data set

    def test_nifti_npy_images_and_archives(self) -> None:
        nifti = (348).to_bytes(4, "little") + bytes(340) + b"n+1\0" + bytes(100)
        assert "NIfTI" in _refused(nifti, "weights")
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((256, 256), np.int16))
        assert "array" in _refused(buffer.getvalue(), "table")
        assert "PNG" in _refused(b"\x89PNG\r\n\x1a\n" + bytes(64), "weights")
        assert "DICOM" in _refused(gzip.compress(synthetic.ct_series(1, 8)[0]), "weights")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("x.nii", nifti)
        assert "NIfTI" in _refused(archive.getvalue(), "weights")

    def test_json_that_is_pixels_or_not_json(self) -> None:
        assert "pixel" in _refused(json.dumps({"p": list(range(10000))}).encode())
        assert "not JSON" in _refused(b"{nope")

    def test_size_and_catalog_uids(self) -> None:
        assert "more than the 10 declared" in _refused(b"x" * 11, "text", max_bytes=10)
        message = _refused(f'{{"uid": "{UID}"}}'.encode(), known_uid=lambda u: u == UID)
        assert UID not in message  # the reason reaches the coordinator: no UID in it
        inspect(
            f'{{"uid": "{UID}"}}'.encode(), kind="json", max_bytes=1000, known_uid=lambda u: False
        )

    def test_deidentified_export_when_the_policy_allows(self) -> None:
        [data] = synthetic.ct_series(1, 8)
        inspect(data, kind="weights", max_bytes=1 << 20, allow_deidentified=True)


def _release(output: str = "statistics", data: bytes = b"{}") -> Release:
    return Release("hub", "f" * 32, "fed-x-1", "run-1", "statistics", output, "json", data,
                   {"mode": "auto"}, "auto")  # fmt: skip


class TestLedger:
    def test_chain_verifies_and_detects_a_broken_chain(self, kahu: Kahu) -> None:
        ledger = Ledger(kahu.db)
        first = ledger.append(_release())
        second = ledger.append(_release("weights", b"abc"))
        assert second["seq"] == first["seq"] + 1
        assert ledger.verify() == (2, "")
        assert ledger.bytes_of_run("fed-x-1") == 5
        ledger.delivered(first["seq"])  # the one change an entry takes
        assert ledger.find("fed-x-1", "statistics")["delivered"] is True  # type: ignore[index]
        lines = "".join(as_csv(ledger.entries())).splitlines()
        assert lines[0].startswith("seq,at,partner")
        assert len(lines) == 3

    def test_the_database_refuses_changes_and_deletes(self, kahu: Kahu) -> None:
        ledger = Ledger(kahu.db)
        ledger.append(_release())
        for statement in (
            "UPDATE egress_ledger SET bytes = 1",
            "UPDATE egress_ledger SET partner = 'x'",
            "DELETE FROM egress_ledger",
        ):
            with pytest.raises(Exception, match="append-only"), kahu.db.write() as s:
                s.execute(text(statement))
        assert ledger.verify() == (1, "")


class TestPolicy:
    PIN = Pin("cohort-statistics", "1.0", "d" * 64, ("cohort",), "Modality:CT")

    def _decide(self, policy: Policy | None, **given: object) -> str:
        values = {"workflow": "cohort-statistics", "version": "1.0", "installed_digest": "d" * 64,
                  "dataset": "cohort", "runs_today": 0, **given}  # fmt: skip
        decision = decide(policy, **values)  # type: ignore[arg-type]
        return decision.outcome + ": " + decision.reason

    def test_each_check(self) -> None:
        policy = Policy(workflows=(self.PIN,), mode="auto", runs_per_day=2)
        assert self._decide(None).startswith("refuse: this site allows its coordinator nothing")
        assert self._decide(policy) == "auto: "
        assert self._decide(Policy(workflows=(self.PIN,))) == "approval: "
        assert "not allowed" in self._decide(policy, workflow="delete-series")
        assert "not installed" in self._decide(policy, installed_digest=None)
        assert "content changed" in self._decide(policy, installed_digest="e" * 64)
        assert "dataset 'secret'" in self._decide(policy, dataset="secret")
        assert "2 runs a day" in self._decide(policy, runs_today=2)

    def test_rules_round_trip(self) -> None:
        policy = Policy(workflows=(self.PIN,), datasets=("x",), mode="auto", min_cell_count=10)
        assert Policy.from_rules(json.loads(json.dumps(policy.rules()))) == policy


class TestPeers:
    def test_tokens_are_one_time_and_expire(self, kahu: Kahu, tmp_path) -> None:  # type: ignore[no-untyped-def]
        peers = Peers(kahu.db)
        key = load_identity(tmp_path / "other", "b", "").public_key
        token = peers.invite("b", created_by="admin", hours=1)
        with kahu.db.read() as s:
            assert token not in json.dumps([i.token_hash for i in s.query(FedInvite)])
        assert peers.accept(token, key).name == "b"
        with pytest.raises(AuthenticationFailed, match="used already"):
            peers.accept(token, key)
        late = peers.invite("c", created_by="admin", hours=1)
        with kahu.db.write() as s:
            s.execute(update(FedInvite).values(expires_at=utcnow() - timedelta(seconds=1)))
        with pytest.raises(AuthenticationFailed, match="expired"):
            peers.accept(late, key)

    def test_signatures_and_replays(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        me = load_identity(tmp_path, "a", "")
        assert (tmp_path / "federation" / "site.key").stat().st_mode & 0o077 == 0
        signed = request_text("GET", "/work", "1", "n" * 16, b"", "x")
        verify(me.public_key, signed, me.sign(signed))
        with pytest.raises(AuthenticationFailed):
            verify(me.public_key, signed.replace(b"/work", b"/jobs"), me.sign(signed))
        nonces, now = Nonces(), str(int(utcnow().timestamp()))
        nonces.fresh("s", "n" * 16, now)
        with pytest.raises(AuthenticationFailed, match="replay"):
            nonces.fresh("s", "n" * 16, now)
        with pytest.raises(AuthenticationFailed, match="5 minutes"):
            nonces.fresh("s", "m" * 16, "1")


def test_small_cells_are_suppressed_with_their_complement() -> None:
    assert suppress(Counter({"CT": 10, "MR": 7}), 5) == {"CT": 10, "MR": 7}
    # MR (2) alone would be given away by the total: the next smallest goes with it
    assert suppress(Counter({"CT": 10, "MR": 2, "PT": 6}), 5) == {"CT": 10, SUPPRESSED: 8}
    assert suppress(Counter({"CT": 3}), 5) == {}


def test_segment_volume_of_a_real_seg() -> None:
    """The volume the statistics release is the SEG's voxels of that segment times the
    voxel size, read from the SEG's own geometry."""
    import pydicom

    from kahu.operators.seg import volume_to_seg
    from kahu.operators.statistics import _pool, _segment_volume_ml
    from tests.synthetic import ct_volume

    files, hu = ct_volume(slices=6, size=16, shuffle=False)
    ct = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    mask = (hu > 300).astype(np.uint8)
    seg = volume_to_seg(mask, ct, {1: "bone"})
    buffer = io.BytesIO()
    seg.save_as(buffer)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    spacing = float(measures.PixelSpacing[0]) * float(measures.PixelSpacing[1])
    depth = float(getattr(measures, "SpacingBetweenSlices", None) or measures.SliceThickness)
    expected = int(mask.sum()) * spacing * depth / 1000
    assert mask.sum() > 0
    assert _segment_volume_ml(buffer.getvalue(), "Bone") == pytest.approx(expected)
    assert _segment_volume_ml(buffer.getvalue(), "liver") is None
    pooled = _pool([{"n": 2, "mean": 1.0, "sd": 0.0}, {"n": 2, "mean": 3.0, "sd": 0.0}])
    assert pooled == {"n": 4, "mean": 2.0, "sd": round((4 / 3) ** 0.5, 3)}
