"""Attach to the embedded S3 store of a live service, for commands run beside it (``evault verify``).

The service writes ``seaweedfs/config/endpoint.json`` (0600: S3 URL, the service identity's keys, weed's pid)
once its store is ready, and removes it on stop. Reading it needs the service's own user, like the keys.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

from storage.embedded_s3 import REGION, EmbeddedS3Error, S3Endpoint
from storage.store_boundary import pid_is_weed_of


class EmbeddedS3NotRunning(EmbeddedS3Error):
    """No live embedded store for the data directory."""


def attach(data_dir: Path) -> S3Endpoint:
    """The service endpoint of the store running for ``data_dir`` (the directory EmbeddedS3 was given).

    Checks that weed still runs for that directory and that the S3 port answers; raise
    :class:`EmbeddedS3NotRunning` with the reason otherwise.
    """
    root = Path(data_dir) / "seaweedfs"
    info_file = root / "config" / "endpoint.json"
    try:
        info = json.loads(info_file.read_text())
        pid = int(info["pid"])
        endpoint = S3Endpoint(info["url"], info["access_key"], info["secret_key"], info.get("region", REGION))
    except FileNotFoundError:
        raise EmbeddedS3NotRunning(f"no embedded S3 store is running for {data_dir} (no {info_file})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbeddedS3NotRunning(f"cannot read {info_file}: {exc!r}") from exc
    if not pid_is_weed_of(pid, Path(info.get("data_path") or root / "data")):
        raise EmbeddedS3NotRunning(f"the embedded S3 store of {data_dir} is not running (weed pid {pid} is gone)")
    url = urlsplit(endpoint.url)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2).close()
    except OSError as exc:
        message = f"the embedded S3 store of {data_dir} does not answer on {endpoint.url}: {exc}"
        raise EmbeddedS3NotRunning(message) from exc
    return endpoint
