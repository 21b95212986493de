"""The organisation's log for monitors, in the C2SP tlog-tiles layout: its checkpoint, tiles and entry bundles.

The tiles and bundles are served from the WORM bucket, where each checkpoint wrote them, so a monitor reads the
very objects the bucket locks (``compliance/checkpoints/worm_tiles.py``); anything not covered by a checkpoint
is not there, as the specification requires of partial tiles.
"""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from compliance.errors import NotFound
from compliance.ledger.tile_paths import parse_path
from storage.errors import ObjectMissing
from storage.keys import tlog_key
from vault.api.schemas import READ_ERRORS, answers
from vault.runtime import Runtime
from vault.tenancy import Principal

IMMUTABLE = "private, max-age=31536000, immutable"  # tiles never change; private: the log is the organisation's


class TlogController(Controller):
    path = "/log/tlog"
    tags = ["Transparency log"]
    opt = {"scope": "compliance:read"}

    @get(
        "/checkpoint",
        sync_to_thread=True,
        media_type="text/plain; charset=utf-8",
        responses=answers(200, None, READ_ERRORS, "The latest checkpoint, a signed note"),
    )
    def tlog_checkpoint(
        self, runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> Response[str]:
        """The log's latest signed checkpoint as a C2SP signed note (as ``GET /log/checkpoint`` chooses it)."""
        row = runtime.checkpoint_requests(principal.scopes).latest_or_new(principal.org_id)
        return Response(row.note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @get(
        "/tile/{tile:path}",
        sync_to_thread=True,
        media_type="application/octet-stream",
        responses=answers(200, None, READ_ERRORS, "A tile or an entry bundle"),
    )
    def tlog_tile(
        self, tile: FromPath[str], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> Response[bytes]:
        """A tile (``tile/<L>/<N>[.p/<W>]``) or an entry bundle (``tile/entries/<N>[.p/<W>]``) of the log, as
        the WORM bucket holds it: present once a checkpoint covers it."""
        path = "tile" + tile if tile.startswith("/") else f"tile/{tile}"
        try:
            parse_path(path)
        except ValueError:
            raise NotFound("Tile.NotFound", "not a tlog-tiles path", path=path) from None
        key = tlog_key(principal.org_id, path)
        try:
            version = runtime.authoritative.head(key, None).version_id
            blob = runtime.authoritative.read(key, version)
        except ObjectMissing:
            raise NotFound("Tile.NotFound", "no checkpoint covers this tile yet", path=path) from None
        return Response(blob, media_type="application/octet-stream", headers={"Cache-Control": IMMUTABLE})
