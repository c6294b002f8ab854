"""Kahu's own receive loop for associations that only store and verify.

This is how a PACS or modality sends: an association whose presentation contexts are storage
SOP classes (and perhaps Verification), then C-STORE after C-STORE. pynetdicom spends about
4 ms of CPU per instance on that path (two polling reactor threads, each PDU and command set
through its state machine and pydicom) before Kahu sees a byte; more than the fsync that
durable storage costs. So the server looks at each new connection's A-ASSOCIATE-RQ without
consuming it (``MSG_PEEK``):

- a plain storage association is negotiated with pynetdicom's own presentation context
  negotiation and PDU codec, then served here by one thread with blocking reads: P-DATA is
  parsed in place, C-STORE and C-ECHO are answered with command sets from
  :mod:`kahu.dimse.commands`;
- anything else (query/retrieve, role selection, user identity or other extended negotiation,
  a malformed first PDU, a non-DICOM client) goes to pynetdicom untouched.

Either way the same :class:`StoreHandler` stores the data, so behaviour does not depend on the
path; the tests run every C-STORE case through both.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext, negotiate_unrestricted

from kahu.dicom import sop
from kahu.dimse import commands

log = logging.getLogger("kahu.dimse.handlers")  # the same logger as pynetdicom's path

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_HEADER = struct.Struct(">BBL")
_PDV = struct.Struct(">LBB")
_MAX_REQUEST = 64 * 1024  # an A-ASSOCIATE-RQ larger than this goes to pynetdicom
_PARTIAL_WAIT = 1.0  # seconds to wait for the rest of a partly arrived A-ASSOCIATE-RQ
_READ_PIECE = 16 * 1024 * 1024  # PDUs are read in pieces no larger than this
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_BASIC_USER_ITEMS = (
    MaximumLengthNotification,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
)

# PS3.8 9.3.4 (A-ASSOCIATE-RJ) and 9.3.8 (A-ABORT) parameters
REJECT_PERMANENT, REJECT_TRANSIENT = 0x01, 0x02
CALLING_AE_NOT_RECOGNIZED = (REJECT_PERMANENT, 0x01, 0x03)
LOCAL_LIMIT_EXCEEDED = (REJECT_TRANSIENT, 0x03, 0x02)
ABORT_PROVIDER = 0x02
UNRECOGNIZED_PDU, UNEXPECTED_PDU, INVALID_PDU_PARAMETER = 0x01, 0x02, 0x06


class StoreHandler(Protocol):
    """What the receive loop calls for each C-STORE: returns a status and an error comment."""

    def __call__(
        self,
        calling_aet: str,
        called_aet: str,
        sop_class: str,
        sop_instance: str,
        transfer_syntax: str,
        data_set: bytes,
    ) -> tuple[int, str | None]: ...


@dataclass
class ReceiverPolicy:
    """The acceptor's rules, shared with the pynetdicom path."""

    ae_contexts: list[PresentationContext]
    accepted_calling_aets: list[str]
    max_associations: int
    network_timeout: float
    acse_timeout: float
    #: associations open on the pynetdicom path (counted against the limit too)
    other_associations: Callable[[], int] = field(default=lambda: 0)


class _Closed(Exception):
    """The peer closed the connection or the association ended."""


class _ProtocolError(Exception):
    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def peek_request(sock: socket.socket, timeout: float) -> A_ASSOCIATE | None:
    """The A-ASSOCIATE-RQ waiting on ``sock``, read without consuming it; ``None`` if the
    first bytes are anything else (or nothing arrives in time)."""
    deadline = time.monotonic() + timeout
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        head = _peek(sock, 6, deadline)
        if len(head) < 6:
            return None
        pdu_type, _, length = _HEADER.unpack(head)
        if pdu_type != 0x01 or length > _MAX_REQUEST:
            return None
        raw = _peek(sock, 6 + length, deadline)
        if len(raw) < 6 + length:
            return None
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(raw)
        return pdu.to_primitive()
    except Exception:  # malformed or slow: pynetdicom's state machine answers it
        log.debug("first PDU left to pynetdicom", exc_info=True)
        return None
    finally:
        sock.settimeout(previous)


def _peek(sock: socket.socket, size: int, deadline: float) -> bytes:
    # A peek cannot tell "the rest is on its way" from "the peer closed after these bytes";
    # an A-ASSOCIATE-RQ arrives whole within milliseconds, so a partial one soon goes to
    # pynetdicom, whose reads see whichever it was.
    deadline = min(deadline, time.monotonic() + _PARTIAL_WAIT)
    while True:
        data = sock.recv(size, socket.MSG_PEEK)
        if len(data) >= size or not data or time.monotonic() > deadline:
            return data
        time.sleep(0.001)


def is_plain_storage(request: A_ASSOCIATE) -> bool:
    """Whether only storage (and Verification) is proposed, with no extended negotiation."""
    if any(not isinstance(item, _BASIC_USER_ITEMS) for item in request.user_information):
        return False
    proposed = request.presentation_context_definition_list
    return bool(proposed) and all(
        str(cx.abstract_syntax) not in sop.QUERY_RETRIEVE for cx in proposed
    )


class StorageReceiver:
    """Serves plain storage associations (see the module docstring); thread-safe."""

    def __init__(self, policy: ReceiverPolicy, store: StoreHandler) -> None:
        self.policy = policy
        self.store = store
        self._lock = threading.Condition()
        self._open: set[socket.socket] = set()
        self._stopped = False
        #: associations this loop has served (the rest went to pynetdicom)
        self.served = 0

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._open)

    def serve(self, sock: socket.socket, address: tuple[str, int]) -> bool:
        """Serve the connection if it asks for a plain storage association.

        Returns ``False`` without having consumed a byte when it does not; then the caller
        hands the connection to pynetdicom.
        """
        request = peek_request(sock, self.policy.acse_timeout)
        if request is None or not is_plain_storage(request):
            return False
        with self._lock:
            if self._stopped:
                return False
            self._open.add(sock)
            self.served += 1
        try:
            _Association(self, sock, address, request).run()
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.discard(sock)
                self._lock.notify_all()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """End every open association and wait for their threads: an instance being stored
        finishes its transaction before the catalog closes."""
        with self._lock:
            self._stopped = True
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            if not self._lock.wait_for(lambda: not self._open, timeout):
                log.warning("%d storage associations still open at shutdown", len(self._open))


class _Association:
    def __init__(
        self,
        receiver: StorageReceiver,
        sock: socket.socket,
        address: tuple[str, int],
        request: A_ASSOCIATE,
    ) -> None:
        self.receiver = receiver
        self.sock = sock
        self.address = address
        self.request = request
        self.calling = str(request.calling_ae_title).strip()
        self.called = str(request.called_ae_title).strip()
        self.peer_max = 0
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max = int(item.maximum_length_received or 0)
        self.contexts: dict[int, str] = {}  # accepted context ID -> transfer syntax
        self._command: list[memoryview] = []
        self._pending: tuple[int, commands.Command] | None = None  # awaits its data set
        self._data: list[memoryview] = []

    def _log(self, outcome: str) -> None:
        log.info(
            "association %s: %s at %s:%s, called %s",
            outcome,
            self.calling,
            self.address[0],
            self.address[1],
            self.called,
        )

    def run(self) -> None:
        try:
            self._read_exact(6 + _HEADER.unpack(self.sock.recv(6, socket.MSG_PEEK))[2])
            if not self._negotiate():
                return
            self.sock.settimeout(self.receiver.policy.network_timeout)
            # responses are small and awaited by the peer: never hold one back (Nagle)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve()
        except _ProtocolError as exc:
            log.warning("association from %s aborted: %s", self.calling, exc)
            self._abort(exc.reason)
            self._log("aborted")
        except (_Closed, OSError) as exc:  # timeouts are OSErrors too
            if isinstance(exc, TimeoutError):
                self._abort(0x00)
            self._log("aborted")
        except Exception:
            log.exception("association from %s failed", self.calling)
            self._abort(0x00)
            self._log("aborted")

    def _serve(self) -> None:
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type == 0x04:
                self._on_data(body)
            elif pdu_type == 0x05:
                self.sock.sendall(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00")
                self._log("released")
                return
            elif pdu_type == 0x07:
                self._log("aborted")
                return
            elif pdu_type in (0x01, 0x02, 0x03, 0x06):
                raise _ProtocolError(UNEXPECTED_PDU, f"unexpected PDU type 0x{pdu_type:02X}")
            else:
                raise _ProtocolError(UNRECOGNIZED_PDU, f"unknown PDU type 0x{pdu_type:02X}")

    # -- negotiation ---------------------------------------------------------------------------

    def _negotiate(self) -> bool:
        policy = self.receiver.policy
        reject: tuple[int, int, int] | None = None
        if policy.accepted_calling_aets and self.calling not in policy.accepted_calling_aets:
            reject = CALLING_AE_NOT_RECOGNIZED
        others = self.receiver.active - 1 + policy.other_associations()
        if others >= policy.max_associations:
            reject = LOCAL_LIMIT_EXCEEDED
        if reject is not None:
            self.sock.sendall(b"\x03\x00\x00\x00\x00\x04\x00" + bytes(reject))
            self._log("rejected")
            return False
        results, _ = negotiate_unrestricted(
            self.request.presentation_context_definition_list, policy.ae_contexts, {}
        )
        self.contexts = {
            int(cx.context_id): str(cx.transfer_syntax[0])
            for cx in results
            if cx.result == 0x00 and cx.context_id is not None
        }
        accept = A_ASSOCIATE()
        accept.application_context_name = APPLICATION_CONTEXT
        accept.calling_ae_title = self.request.calling_ae_title
        accept.called_ae_title = self.request.called_ae_title
        accept.result = 0x00
        accept.result_source = 0x01
        accept.presentation_context_definition_results_list = results
        maximum = MaximumLengthNotification()
        maximum.maximum_length_received = 0  # no limit: fewer, larger PDUs
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
        accept.user_information = [maximum, implementation, version]
        self.sock.sendall(A_ASSOCIATE_AC(accept).encode())
        self._log("accepted")
        return True

    # -- reading -------------------------------------------------------------------------------

    def _read_exact(self, size: int) -> memoryview:
        pieces: list[bytearray] = []
        remaining = size
        while remaining:
            piece = bytearray(min(remaining, _READ_PIECE))  # grows only as data arrives
            view, got = memoryview(piece), 0
            while got < len(piece):
                count = self.sock.recv_into(view[got:])
                if count == 0:
                    raise _Closed
                got += count
                if _QUICKACK is not None:
                    # A peer that writes a PDU header and its body separately (dcmtk) holds
                    # the body back (Nagle) until the header is acknowledged, and Linux
                    # delays that acknowledgement by up to 40 ms: ask for it at once.
                    self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            pieces.append(piece)
            remaining -= len(piece)
        return memoryview(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _read_pdu(self) -> tuple[int, memoryview]:
        pdu_type, _, length = _HEADER.unpack(self._read_exact(6))
        return pdu_type, self._read_exact(length)

    def _on_data(self, body: memoryview) -> None:
        for context_id, control, fragment in _pdvs(body):
            if context_id not in self.contexts:
                raise _ProtocolError(
                    INVALID_PDU_PARAMETER, f"data on presentation context {context_id}"
                )
            if control & 0x01:  # command fragment
                if self._pending is not None:
                    raise _ProtocolError(UNEXPECTED_PDU, "a command before the data set")
                self._command.append(fragment)
                if control & 0x02:
                    self._on_command(context_id)
            else:
                if self._pending is None or self._pending[0] != context_id:
                    raise _ProtocolError(UNEXPECTED_PDU, "a data set without its command")
                self._data.append(fragment)
                if control & 0x02:
                    request, self._pending = self._pending[1], None
                    data, self._data = b"".join(self._data), []
                    self._answer(context_id, request, data)

    def _on_command(self, context_id: int) -> None:
        raw, self._command = b"".join(self._command), []
        try:
            request = commands.decode(raw)
        except commands.CommandError as exc:
            raise _ProtocolError(INVALID_PDU_PARAMETER, str(exc)) from exc
        if request.command_field not in (commands.C_STORE_RQ, commands.C_ECHO_RQ):
            raise _ProtocolError(
                UNEXPECTED_PDU, f"command 0x{request.command_field:04X} on a storage association"
            )
        if request.has_data_set:
            self._pending = (context_id, request)
        else:
            self._answer(context_id, request, b"")

    # -- answering -----------------------------------------------------------------------------

    def _answer(self, context_id: int, request: commands.Command, data: bytes) -> None:
        if request.command_field == commands.C_ECHO_RQ:
            status, comment = 0x0000, None
        elif not data:
            status, comment = 0xC000, "C-STORE request without a data set"
        else:
            status, comment = self.receiver.store(
                self.calling,
                self.called,
                request.affected_sop_class,
                request.affected_sop_instance,
                self.contexts[context_id],
                data,
            )
        self._send_command(context_id, commands.response(request, status, comment))

    def _send_command(self, context_id: int, payload: bytes) -> None:
        room = max(self.peer_max - 6, 1) if self.peer_max else len(payload)
        chunks = [payload[i : i + room] for i in range(0, len(payload), room)]
        pdus = []
        for index, chunk in enumerate(chunks):
            control = 0x03 if index == len(chunks) - 1 else 0x01
            pdv = _PDV.pack(len(chunk) + 2, context_id, control) + chunk
            pdus.append(_HEADER.pack(0x04, 0, len(pdv)) + pdv)
        self.sock.sendall(b"".join(pdus))

    def _abort(self, reason: int) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00" + bytes((ABORT_PROVIDER, reason)))


def _pdvs(body: memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """(context ID, message control header, fragment) of each PDV item (PS3.8 9.3.5.1)."""
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < 6:
            raise _ProtocolError(INVALID_PDU_PARAMETER, "truncated PDV item")
        length, context_id, control = _PDV.unpack_from(body, offset)
        if length < 2 or offset + 4 + length > end:
            raise _ProtocolError(INVALID_PDU_PARAMETER, "PDV item length out of bounds")
        yield context_id, control, body[offset + 6 : offset + 4 + length]
        offset += 4 + length
