"""The Python ceiling: a pynetdicom Storage SCP that only writes what it receives to files.

Run as a separate process: ``python -m bench.bare_scp PORT OUTDIR [--fsync]``; with
``--fsync`` each file is fsync'ed before the success response (durable, but not atomic and
not indexed: the least any durable archive must do).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt

_config.UNRESTRICTED_STORAGE_SERVICE = True
_config.LOG_HANDLER_LEVEL = "none"  # as in Kahu: no per-message log formatting


def main() -> None:
    port, out = int(sys.argv[1]), Path(sys.argv[2])
    durable = "--fsync" in sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)

    def handle_store(event: Any) -> int:
        uid = event.request.AffectedSOPInstanceUID
        with open(out / f"{uid}.dcm", "wb") as file:
            file.write(event.encoded_dataset())
            if durable:
                file.flush()
                os.fsync(file.fileno())
        return 0x0000

    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = 0
    ae.add_supported_context("1.2.840.10008.1.1")
    ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, handle_store)])


if __name__ == "__main__":
    main()
