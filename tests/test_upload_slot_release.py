"""An upload's slots are free before its answer's last part, exactly once, on SQLite and PostgreSQL alike.

With one upload in flight per API key (``EVAULT_MAX_UPLOADS_PER_KEY=1``), the app is called as ASGI in this
event loop, so the test decides when things happen, not the scheduler:

- a client that sends its next upload the instant its answer's last part arrives (here: while the server's
  send of that part has not returned, as when the send yields) gets it admitted (201), not 429. This process's
  own slots (vault/slots.py, the only caps on SQLite) and the shared slot leases (vault/slot_leases.py, on
  PostgreSQL) are both given back before that part;
- slots given back early are not given back again when the handler returns, nor when it raised: afterwards the
  cap of one still holds (a second upload beside one in flight is 429).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.runtime import Runtime


@pytest.fixture
def vault_env(vault_env: dict[str, str]) -> dict[str, str]:
    return {**vault_env, "EVAULT_MAX_UPLOADS_PER_KEY": "1"}


def _asgi_client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evault.test", timeout=120)


def _eager(app: ASGIApp, next_upload: Any, statuses: list[int]) -> ASGIApp:
    """``app`` for a client that, the moment an upload's last answer part is sent, sends ``next_upload()``
    (once) and waits for its answer before that send returns."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_go_on(message: Message) -> None:
            last = message["type"] == "http.response.body" and not message.get("more_body", False)
            if last and scope["path"].endswith("/vault-in-upload") and not statuses:
                statuses.append((await next_upload()).status_code)
            await send(message)

        await app(scope, receive, send_and_go_on)

    return wrapped


def test_the_next_upload_sent_on_the_answers_last_part_is_admitted(runtime: Runtime, client: Any, tenant: Any) -> None:
    _, headers = tenant
    first, second = create_envelope(client, headers), create_envelope(client, headers)
    pdf = make_pdf()
    app = create_app(runtime)
    statuses: list[int] = []

    async def go() -> httpx.Response:
        async with _asgi_client(app) as plain:

            async def next_upload() -> httpx.Response:
                response: httpx.Response = await upload(plain, headers, second, pdf)
                assert response.status_code == 201, response.text
                return response

            async with _asgi_client(_eager(app, next_upload, statuses)) as eager:
                response: httpx.Response = await upload(eager, headers, first, pdf)
                return response

    answer = anyio.run(go)
    assert answer.status_code == 201, answer.text
    assert statuses == [201]


def test_slots_given_back_before_the_answer_are_not_given_back_twice(
    runtime: Runtime, client: Any, tenant: Any
) -> None:
    _, headers = tenant
    done, bad, held, refused = (create_envelope(client, headers) for _ in range(4))
    pdf = make_pdf()
    app = create_app(runtime)

    async def go() -> tuple[int, int, int, int]:
        async with _asgi_client(app) as http:
            ok = await upload(http, headers, done, pdf)  # freed before its last part, and not again after
            wrong = await upload(http, headers, bad, pdf, sha256="0" * 64)  # the handler refuses it
            reading, go_on = anyio.Event(), anyio.Event()

            async def slow_body() -> AsyncIterator[bytes]:
                yield pdf[:100]
                reading.set()
                await go_on.wait()
                yield pdf[100:]

            answers: list[httpx.Response] = []

            async def hold() -> None:
                digest = {"Content-Type": "application/pdf", "X-Content-SHA256": hashlib.sha256(pdf).hexdigest()}
                path = f"{API}/envelopes/{held}/vault-in-upload"
                answers.append(await http.post(path, content=slow_body(), headers={**headers, **digest}))

            async with anyio.create_task_group() as group:
                group.start_soon(hold)
                await reading.wait()  # the held upload has its slots and is reading its body
                beside = await upload(http, headers, refused, pdf)
                go_on.set()
            return ok.status_code, wrong.status_code, beside.status_code, answers[0].status_code

    assert anyio.run(go) == (201, 400, 429, 201)
