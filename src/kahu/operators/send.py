"""Sending series to a DICOM node (C-STORE SCU), byte for byte as they are stored."""

from __future__ import annotations

import io
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from kahu.catalog.records import InstanceRow
    from kahu.dimse.nodes import Node
    from kahu.flow.services import OperatorServices

#: C-STORE statuses that mean stored (success and the PS3.4 B.2.3 warnings)
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class SendFailed(RuntimeError):
    """The node refused the association or some instances; the message says which."""


def send_instances(services: OperatorServices, node: Node, rows: Sequence[InstanceRow]) -> int:
    """C-STORE ``rows`` to ``node`` in one association proposing exactly the stored (SOP
    class, transfer syntax) pairs; return how many were stored. Raises :class:`SendFailed`
    naming the instances the node did not store."""
    import pydicom
    from pynetdicom import AE, build_context

    from kahu.dimse.stored import send_stored_files, stored_file

    if not rows:
        return 0
    send_stored_files()
    pairs = sorted({(r.sop_class_uid, r.transfer_syntax_uid) for r in rows})
    if len(pairs) > 128:
        raise SendFailed(f"{len(pairs)} kinds of objects: more than one association can carry")
    try:  # a clear message (and no socket pynetdicom leaves unclosed when refused)
        socket.create_connection((node.host, node.port), timeout=30).close()
    except OSError as exc:
        raise SendFailed(
            f"{node.name} ({node.ae_title} at {node.host}:{node.port}) did not accept "
            f"the association: {exc}"
        ) from None
    ae = AE(ae_title=services.ae_title)
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in pairs]
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        raise SendFailed(
            f"{node.name} ({node.ae_title} at {node.host}:{node.port}) did not accept "
            "the association"
        )
    failed: list[str] = []
    try:
        for row in rows:
            local = services.local_path(row)
            dataset: Dataset | None = (
                stored_file(local, row.sop_class_uid, row.sop_instance_uid)
                if local is not None
                else None
            )
            if dataset is None:
                dataset = pydicom.dcmread(io.BytesIO(services.read(row)))
            status = assoc.send_c_store(dataset)
            code = int(status.Status) if "Status" in status else -1
            if code not in _STORED:
                failed.append(f"{row.sop_instance_uid} (status 0x{code & 0xFFFF:04X})")
            if not assoc.is_established:
                failed += [r.sop_instance_uid for r in rows[rows.index(row) + 1 :]]
                break
    finally:
        if assoc.is_established:
            assoc.release()
    if failed:
        raise SendFailed(
            f"{node.name} did not store {len(failed)} of {len(rows)} instances: "
            + ", ".join(failed[:5])
        )
    return len(rows)


def send_series(ctx: TaskContext, services: OperatorServices) -> None:
    """Per series: send it to the node named by the run parameter ``node``."""
    uid = ctx.series_uid
    if uid is None:
        raise ValueError("send-to-node runs per series")
    node = services.node(str(ctx.params.get("node") or ctx.options.get("node", "")))
    rows = services.instances(uid)
    if not rows:
        raise ValueError(f"series {uid} has no instances in project {services.project}")
    with services.audited(
        "send",
        client=f"{node.ae_title}@{node.host}:{node.port}",
        series=[uid],
        detail={"node": node.name},
    ):
        sent = send_instances(services, node, rows)
    ctx.log.info("sent %d instances of %s to %s", sent, uid, node.name)


def send_to_node(name: str = "send-to-node", *, node: str = "") -> Operator:
    """Per series: C-STORE the series to a configured DICOM node (``kahu nodes add``); the
    run parameter ``node`` names it unless ``node`` is fixed here."""
    return internal_operator(
        name,
        "kahu.operators.send:send_series",
        resources=Resources(cpu=0.5, memory_mb=256),
        retries=2,
        retry_delay_s=10.0,
        description="Send each series to a DICOM node (C-STORE)",
        options={"node": node},
    )
