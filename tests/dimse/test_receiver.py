"""Kahu's own receive loop for plain storage associations, driven over real sockets.

The normal cases (every storage class and transfer syntax, storescu, concurrency) run through
both receive paths in ``test_store.py``; here are the protocol details: fragmentation, the
peer's maximum PDU length, every way an association can go wrong, and which path serves what.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.dimse_messages import C_ECHO_RQ, C_FIND_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from kahu.core import Kahu
from kahu.dicom.structure import body_offset
from kahu.dimse import commands
from kahu.dimse.receiver import is_plain_storage
from tests import synthetic
from tests.conftest import SYSTEM
from tests.dimse import scu

_HEADER = struct.Struct(">BBL")


# -- a raw DICOM upper layer peer ---------------------------------------------------------------


def _contexts(*pairs: tuple[str, str]) -> list[PresentationContext]:
    contexts = []
    for index, (abstract, transfer) in enumerate(pairs):
        context = build_context(abstract, [transfer])
        context.context_id = 2 * index + 1
        contexts.append(context)
    return contexts


def request_primitive(
    contexts: list[PresentationContext],
    *,
    max_length: int = 0,
    calling: str = "RAWSCU",
    extra: tuple[Any, ...] = (),
) -> A_ASSOCIATE:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "KAHU"
    primitive.presentation_context_definition_list = contexts
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = max_length
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.9999"
    primitive.user_information = [maximum, implementation, *extra]
    return primitive


def _pdata(context_id: int, control: int, fragment: bytes) -> bytes:
    item = struct.pack(">LBB", len(fragment) + 2, context_id, control) + fragment
    return _HEADER.pack(0x04, 0, len(item)) + item


def command_bytes(message: Any, primitive: Any) -> bytes:
    message.primitive_to_message(primitive)
    return bytes(encode(message.command_set, True, True))


def store_command(data: bytes, message_id: int = 1) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = ds.SOPClassUID
    primitive.AffectedSOPInstanceUID = ds.SOPInstanceUID
    primitive.Priority = 0
    primitive.DataSet = io.BytesIO(b"\0")
    return command_bytes(C_STORE_RQ(), primitive)


def echo_command(message_id: int = 7) -> bytes:
    primitive = C_ECHO()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = Verification
    return command_bytes(C_ECHO_RQ(), primitive)


class RawPeer:
    """An association requestor written against PS3.8, byte by byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)

    def close(self) -> None:
        self.sock.close()

    def read_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def read_pdu(self) -> tuple[int, bytes]:
        pdu_type, _, length = _HEADER.unpack(self.read_exact(6))
        return pdu_type, self.read_exact(length)

    def associate(self, primitive: A_ASSOCIATE) -> tuple[int, bytes]:
        self.sock.sendall(A_ASSOCIATE_RQ(primitive).encode())
        return self.read_pdu()

    def send_command(self, context_id: int, raw: bytes, piece: int = 1 << 20) -> None:
        for start in range(0, len(raw), piece):
            last = start + piece >= len(raw)
            self.sock.sendall(
                _pdata(context_id, 0x03 if last else 0x01, raw[start : start + piece])
            )

    def send_data(self, context_id: int, raw: bytes, piece: int = 1 << 20) -> None:
        for start in range(0, len(raw), piece):
            last = start + piece >= len(raw)
            self.sock.sendall(
                _pdata(context_id, 0x02 if last else 0x00, raw[start : start + piece])
            )

    def response(self) -> tuple[Dataset, int]:
        """The next response command set and how many PDUs carried it."""
        raw, pdus = b"", 0
        while True:
            pdu_type, body = self.read_pdu()
            assert pdu_type == 0x04, f"expected P-DATA-TF, got 0x{pdu_type:02X}"
            pdus += 1
            offset = 0
            while offset < len(body):
                length, _, control = struct.unpack_from(">LBB", body, offset)
                raw += body[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if control & 0x02:
                    return decode(io.BytesIO(raw), True, True), pdus

    def release(self) -> int:
        self.sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        return self.read_pdu()[0]

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def peer(running_kahu: Kahu) -> Iterator[RawPeer]:
    raw = RawPeer(running_kahu.dicom.port)
    yield raw
    raw.close()


def _ct() -> bytes:
    return synthetic.ct_series(1)[0]


def _data_set(data: bytes) -> bytes:
    return data[body_offset(data) :]


def _stored(kahu: Kahu) -> list[bytes]:
    return [kahu.store.get(row.blob_key) for row in kahu.catalog.instances(SYSTEM)]


def _staging(kahu: Kahu) -> list[Any]:
    return list((kahu.settings.blob_root / ".tmp").iterdir())


def _served(kahu: Kahu) -> int:
    receiver = kahu.dicom.receiver
    assert receiver is not None
    return receiver.served


# -- command sets --------------------------------------------------------------------------------


class TestCommandSets:
    def test_requests_encoded_by_pynetdicom_are_read(self) -> None:
        data = _ct()
        request = commands.decode(store_command(data, message_id=513))
        ds = pydicom.dcmread(io.BytesIO(data))
        assert request.command_field == commands.C_STORE_RQ
        assert request.message_id == 513
        assert request.has_data_set
        assert request.affected_sop_class == ds.SOPClassUID
        assert request.affected_sop_instance == ds.SOPInstanceUID
        echo = commands.decode(echo_command(9))
        assert (echo.command_field, echo.message_id, echo.has_data_set) == (0x0030, 9, False)

    def test_responses_read_back_with_pydicom(self) -> None:
        request = commands.decode(store_command(_ct(), message_id=3))
        raw = commands.response(request, 0xC000, "odd length comment")
        ds = decode(io.BytesIO(raw), True, True)
        assert ds.CommandGroupLength == len(raw) - 12
        assert ds.CommandField == 0x8001
        assert ds.MessageIDBeingRespondedTo == 3
        assert ds.CommandDataSetType == 0x0101
        assert ds.Status == 0xC000
        assert ds.ErrorComment == "odd length comment"
        assert ds.AffectedSOPInstanceUID == request.affected_sop_instance
        assert ds.AffectedSOPClassUID == request.affected_sop_class
        assert "ErrorComment" not in decode(io.BytesIO(commands.response(request, 0)), True, True)

    @pytest.mark.parametrize(
        "raw",
        [b"\x00\x00\x00\x01", b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00", b""],
        ids=["truncated header", "value beyond end", "empty"],
    )
    def test_malformed_command_sets_are_refused(self, raw: bytes) -> None:
        with pytest.raises(commands.CommandError):
            commands.decode(raw)

    def test_an_element_of_another_group_is_refused(self) -> None:
        with pytest.raises(commands.CommandError, match="invalid element"):
            commands.decode(echo_command() + b"\x08\x00\x05\x00\x00\x00\x00\x00")


# -- which path serves what ----------------------------------------------------------------------


class TestPathChoice:
    def test_storage_and_verification_only_is_plain_storage(self) -> None:
        ct = (CTImageStorage, ExplicitVRLittleEndian)
        assert is_plain_storage(
            request_primitive(_contexts(ct, (Verification, ExplicitVRLittleEndian)))
        )
        private = ("1.2.826.0.1.3680043.9.9999.1", ImplicitVRLittleEndian)
        assert is_plain_storage(request_primitive(_contexts(private)))

    def test_query_retrieve_role_selection_or_user_identity_go_to_pynetdicom(self) -> None:
        ct = (CTImageStorage, ExplicitVRLittleEndian)
        find = (StudyRootQueryRetrieveInformationModelFind, ExplicitVRLittleEndian)
        assert not is_plain_storage(request_primitive(_contexts(ct, find)))
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid, role.scu_role, role.scp_role = CTImageStorage, False, True
        assert not is_plain_storage(request_primitive(_contexts(ct), extra=(role,)))
        identity = UserIdentityNegotiation()
        identity.user_identity_type, identity.primary_field = 1, b"user"
        assert not is_plain_storage(request_primitive(_contexts(ct), extra=(identity,)))
        assert not is_plain_storage(request_primitive([]))

    def test_a_storage_association_is_served_by_kahus_loop(self, running_kahu: Kahu) -> None:
        assert scu.store(running_kahu.dicom.port, [_ct()]) == [0]
        assert _served(running_kahu) == 1
        assert running_kahu.catalog.counts(SYSTEM).instances == 1

    def test_storage_beside_query_is_served_by_pynetdicom_the_same_way(
        self, running_kahu: Kahu
    ) -> None:
        data = _ct()
        ds = pydicom.dcmread(io.BytesIO(data))
        assoc = scu.associate(
            running_kahu.dicom.port,
            [
                build_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID]),
                build_context(StudyRootQueryRetrieveInformationModelFind),
            ],
        )
        assert assoc.is_established
        try:
            assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
        assert _served(running_kahu) == 0
        assert [_data_set(s) for s in _stored(running_kahu)] == [_data_set(data)]

    def test_switched_off_every_association_goes_to_pynetdicom(self, make_settings) -> None:  # type: ignore[no-untyped-def]
        kahu = Kahu(make_settings(storage_receiver=False))
        kahu.start()
        try:
            assert kahu.dicom.receiver is None
            assert scu.store(kahu.dicom.port, [_ct()]) == [0]
            assert kahu.catalog.counts(SYSTEM).instances == 1
        finally:
            kahu.stop()

    def test_a_non_dicom_client_is_turned_away_and_the_server_goes_on(
        self, running_kahu: Kahu
    ) -> None:
        with socket.create_connection(("127.0.0.1", running_kahu.dicom.port), timeout=15) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: kahu\r\n\r\n")
            reply = s.recv(100)
        assert not reply.startswith(b"HTTP")
        assert scu.echo(running_kahu.dicom.port) == 0

    def test_a_request_cut_short_is_left_to_pynetdicom_quickly(self, running_kahu: Kahu) -> None:
        raw = A_ASSOCIATE_RQ(request_primitive(_contexts((CTImageStorage, ImplicitVRLittleEndian))))
        with socket.create_connection(("127.0.0.1", running_kahu.dicom.port), timeout=15) as s:
            s.sendall(raw.encode()[:20])
            s.shutdown(socket.SHUT_WR)
            start = time.monotonic()
            while s.recv(100):
                pass
            assert time.monotonic() - start < 10
        assert _served(running_kahu) == 0
        assert scu.echo(running_kahu.dicom.port) == 0


# -- the protocol --------------------------------------------------------------------------------


class TestProtocol:
    def test_fragmented_command_and_data_set_are_reassembled(
        self, running_kahu: Kahu, peer: RawPeer
    ) -> None:
        data = _ct()
        pdu_type, _ = peer.associate(
            request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian)))
        )
        assert pdu_type == 0x02
        peer.send_command(1, store_command(data), piece=7)
        peer.send_data(1, _data_set(data), piece=1000)
        response, _ = peer.response()
        assert response.Status == 0
        assert peer.release() == 0x06
        assert [_data_set(s) for s in _stored(running_kahu)] == [_data_set(data)]

    def test_responses_respect_the_peers_maximum_pdu_length(self, peer: RawPeer) -> None:
        context = _contexts((Verification, ImplicitVRLittleEndian))
        pdu_type, _ = peer.associate(request_primitive(context, max_length=32))
        assert pdu_type == 0x02
        peer.send_command(1, echo_command(11))
        response, pdus = peer.response()
        assert (response.Status, response.MessageIDBeingRespondedTo) == (0, 11)
        assert response.CommandField == 0x8030
        assert pdus > 2  # 26 bytes of command set per PDU at most

    def test_several_instances_on_one_association(self, running_kahu: Kahu, peer: RawPeer) -> None:
        files = synthetic.ct_series(3)
        peer.associate(request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian))))
        for index, data in enumerate(files):
            peer.send_command(1, store_command(data, message_id=index + 1))
            peer.send_data(1, _data_set(data))
            response, _ = peer.response()
            assert (response.Status, response.MessageIDBeingRespondedTo) == (0, index + 1)
        assert peer.release() == 0x06
        assert running_kahu.catalog.counts(SYSTEM).instances == 3

    def test_a_bad_data_set_gets_a_failure_status_and_the_association_goes_on(
        self, running_kahu: Kahu, peer: RawPeer
    ) -> None:
        good = _ct()
        peer.associate(request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian))))
        peer.send_command(1, store_command(good, message_id=1))
        peer.send_data(1, _data_set(good)[:100])  # cut inside an element
        response, _ = peer.response()
        assert response.Status == 0xC000
        assert response.ErrorComment
        peer.send_command(1, store_command(good, message_id=2))
        peer.send_data(1, _data_set(good))
        assert peer.response()[0].Status == 0
        assert running_kahu.catalog.counts(SYSTEM).instances == 1

    @pytest.mark.parametrize(
        "send",
        [
            pytest.param(
                lambda p: p.sock.sendall(b"\x09\x00\x00\x00\x00\x02\x00\x00"), id="unknown PDU type"
            ),
            pytest.param(lambda p: p.send_command(3, echo_command()), id="unaccepted context"),
            pytest.param(lambda p: p.send_data(1, b"\x08\x00\x60\x00"), id="data before command"),
            pytest.param(
                lambda p: p.sock.sendall(b"\x04\x00\x00\x00\x00\x03\x00\x00\x00"),
                id="truncated PDV",
            ),
            pytest.param(
                lambda p: p.send_command(1, echo_command()[:-3]), id="malformed command set"
            ),
        ],
    )
    def test_protocol_errors_abort_and_the_server_goes_on(
        self, running_kahu: Kahu, peer: RawPeer, send: Any
    ) -> None:
        peer.associate(request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian))))
        send(peer)
        pdu_type, body = peer.read_pdu()
        assert pdu_type == 0x07  # A-ABORT
        assert body[2] == 0x02  # from the service provider
        assert peer.closed_by_server()
        assert scu.store(running_kahu.dicom.port, [_ct()]) == [0]

    def test_a_query_on_a_storage_association_aborts(self, peer: RawPeer) -> None:
        peer.associate(request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian))))
        primitive = C_FIND()
        primitive.MessageID = 1
        primitive.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelFind
        primitive.Priority = 0
        primitive.Identifier = io.BytesIO(b"\0")
        peer.send_command(1, command_bytes(C_FIND_RQ(), primitive))
        assert peer.read_pdu()[0] == 0x07

    def test_a_peer_abort_mid_instance_stores_nothing(
        self, running_kahu: Kahu, peer: RawPeer
    ) -> None:
        data = _ct()
        peer.associate(request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian))))
        peer.send_command(1, store_command(data))
        peer.sock.sendall(_pdata(1, 0x00, _data_set(data)[:1000]))  # not the last fragment
        peer.sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        assert peer.closed_by_server()
        assert running_kahu.catalog.counts(SYSTEM).instances == 0
        assert _staging(running_kahu) == []
        assert scu.echo(running_kahu.dicom.port) == 0

    def test_a_stalled_peer_is_aborted_after_the_network_timeout(self, make_settings) -> None:  # type: ignore[no-untyped-def]
        kahu = Kahu(make_settings(network_timeout=1.0))
        kahu.start()
        peer = RawPeer(kahu.dicom.port)
        try:
            peer.associate(request_primitive(_contexts((CTImageStorage, ExplicitVRLittleEndian))))
            peer.sock.sendall(b"\x04\x00\x00\x00\x10\x00")  # a header, then nothing
            start = time.monotonic()
            assert peer.read_pdu()[0] == 0x07
            assert time.monotonic() - start < 10
            assert peer.closed_by_server()
        finally:
            peer.close()
            kahu.stop()


# -- association rules ---------------------------------------------------------------------------


class TestAssociationRules:
    def test_unlisted_calling_ae_title_is_rejected_permanently(self, make_settings) -> None:  # type: ignore[no-untyped-def]
        kahu = Kahu(make_settings(accepted_calling_aets=["PACS"]))
        kahu.start()
        peer = RawPeer(kahu.dicom.port)
        try:
            context = _contexts((CTImageStorage, ExplicitVRLittleEndian))
            pdu_type, body = peer.associate(request_primitive(context, calling="INTRUDER"))
            assert pdu_type == 0x03  # A-ASSOCIATE-RJ
            assert tuple(body[1:4]) == (0x01, 0x01, 0x03)
            assert _served(kahu) == 1
        finally:
            peer.close()
            kahu.stop()

    def test_associations_beyond_the_limit_are_rejected_transiently(self, make_settings) -> None:  # type: ignore[no-untyped-def]
        kahu = Kahu(make_settings(max_associations=1))
        kahu.start()
        first, second = RawPeer(kahu.dicom.port), RawPeer(kahu.dicom.port)
        try:
            context = _contexts((CTImageStorage, ExplicitVRLittleEndian))
            assert first.associate(request_primitive(context))[0] == 0x02
            pdu_type, body = second.associate(request_primitive(context))
            assert pdu_type == 0x03
            assert tuple(body[1:4]) == (0x02, 0x03, 0x02)
            assert first.release() == 0x06
        finally:
            first.close()
            second.close()
            kahu.stop()

    def test_stop_ends_open_associations(self, make_settings) -> None:  # type: ignore[no-untyped-def]
        kahu = Kahu(make_settings())
        kahu.start()
        peer = RawPeer(kahu.dicom.port)
        try:
            context = _contexts((CTImageStorage, ExplicitVRLittleEndian))
            assert peer.associate(request_primitive(context))[0] == 0x02
            stopper = threading.Thread(target=kahu.stop)
            stopper.start()
            stopper.join(timeout=10)
            assert not stopper.is_alive()
            assert peer.closed_by_server()
        finally:
            peer.close()
