"""The Python ceiling: a pynetdicom Storage SCP that only writes what it receives to files.

Run as a separate process: ``python -m bench.bare_scp PORT OUTDIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt

_config.UNRESTRICTED_STORAGE_SERVICE = True


def main() -> None:
    port, out = int(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)

    def handle_store(event: Any) -> int:
        uid = event.request.AffectedSOPInstanceUID
        (out / f"{uid}.dcm").write_bytes(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = 0
    ae.add_supported_context("1.2.840.10008.1.1")
    ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, handle_store)])


if __name__ == "__main__":
    main()
