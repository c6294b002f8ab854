"""The DIMSE server: one pynetdicom AE listening for associations in background threads.

Each new connection goes first to Kahu's storage receive loop (:mod:`kahu.dimse.receiver`),
which keeps the plain storage associations and leaves every other one to pynetdicom.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import cast

from pynetdicom import AE, _config
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from kahu.dicom import sop
from kahu.dimse.handlers import DimseHandlers
from kahu.dimse.receiver import ReceiverPolicy, StorageReceiver
from kahu.dimse.stored import send_stored_files
from kahu.settings import DicomSettings

log = logging.getLogger(__name__)


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom switches Kahu relies on.

    Accept every storage SOP class, private and unknown ones included, in whatever transfer
    syntax is offered; send stored files as they are (no decode, no transcoding). pynetdicom's
    standard log handlers format every PDU and message (and copy each received data set to see
    whether it is empty) even when nobody reads the log: off; Kahu logs each association.
    """
    _config.LOG_HANDLER_LEVEL = "none"
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    _config.STORE_SEND_CHUNKED_DATASET = True  # a file given by path is sent as it is
    send_stored_files()
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


class _Connection(RequestHandler):
    """A new connection: Kahu's storage receive loop serves it, or else pynetdicom does."""

    server: _Server

    def handle(self) -> None:
        receiver = self.server.receiver
        sock = cast(socket.socket, self.request)
        if receiver is None or not receiver.serve(sock, self.client_address):
            super().handle()


class _Server(ThreadedAssociationServer):
    receiver: StorageReceiver | None


class DicomServer:
    def __init__(self, settings: DicomSettings, handlers: DimseHandlers) -> None:
        self.settings = settings
        self.handlers = handlers
        self._server: _Server | None = None
        self._receiver: StorageReceiver | None = None

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs
        ae.network_timeout = self.settings.network_timeout
        ae.acse_timeout = 30
        ae.dimse_timeout = self.settings.network_timeout
        ae.maximum_associations = self.settings.max_associations
        ae.require_called_aet = False  # any called AE title; it names the dataset
        if self.settings.accepted_calling_aets:
            ae.require_calling_aet = list(self.settings.accepted_calling_aets)
        ae.add_supported_context(sop.VERIFICATION)
        for model in sop.QUERY_RETRIEVE:
            ae.add_supported_context(model)
        return ae

    def start(self) -> None:
        configure_pynetdicom()
        ae = self._application_entity()
        policy = ReceiverPolicy(
            ae_contexts=ae.supported_contexts,
            accepted_calling_aets=list(self.settings.accepted_calling_aets),
            max_associations=self.settings.max_associations,
            network_timeout=self.settings.network_timeout,
            acse_timeout=30,
            other_associations=lambda: sum(1 for a in ae.active_associations if a.is_acceptor),
        )
        receiver = StorageReceiver(policy, self.handlers.store_instance)
        server = cast(
            _Server,
            ae.make_server(
                (self.settings.host, self.settings.port),
                evt_handlers=self.handlers.bindings(),  # type: ignore[arg-type]
                server_class=_Server,
                request_handler=_Connection,
            ),
        )
        server.receiver = self._receiver = receiver if self.settings.storage_receiver else None
        ae._servers.append(server)  # shutdown() removes it again
        thread = threading.Thread(
            target=server.serve_forever, name=f"dicom-server:{self.settings.port}", daemon=True
        )
        thread.start()
        self._server = server
        log.info("DICOM server %s listening on port %d", self.settings.ae_title, self.port)

    @property
    def receiver(self) -> StorageReceiver | None:
        """Kahu's receive loop for plain storage associations (``None`` when switched off)."""
        return self._receiver

    @property
    def port(self) -> int:
        if self._server is None:
            return self.settings.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
