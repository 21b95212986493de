"""One organisation's keys share one rate limit (``EVAULT_RATE_LIMIT_ORG``): more keys do not multiply its quota,
and the quota is paced (``EVAULT_RATE_LIMIT_ORG_BURST`` at once, then evenly over the window); its document
uploads are paced alike with a smaller burst (``EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST``).

Each request counts against its key's window and its organisation's pace in one statement, all or none
(vault/ratelimit.py): a request refused by either counts against neither. The quotas here have an hour's window,
so that a window does not roll over in the middle of a test (a test waits when one is about to), and the
organisation's burst is its whole quota, so that within a test it comes back by one request per 10 minutes only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from litestar.testing import TestClient
from sqlalchemy import text, update
from sqlmodel import col, select

from storage.db import MIGRATIONS, Database
from storage.models import RateCounter
from storage.settings import Settings, SettingsError
from tests.helpers import API, create_envelope, together, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.expiry import sweep_deadlines
from vault.ratelimit import Policy, admit
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

WINDOW = 3600
KEY_QUOTA, ORG_QUOTA = 4, 6
_ITEM = re.compile(r'"([\w-]+)";r=(\d+);t=(\d+)')


@pytest.fixture
def limited(vault_env: dict[str, str]) -> Iterator[tuple[Runtime, TestClient[Any]]]:
    env = {
        **vault_env,
        "EVAULT_RATE_LIMIT": f"{KEY_QUOTA}/{WINDOW}",
        "EVAULT_RATE_LIMIT_COPIES": f"{KEY_QUOTA}/{WINDOW}",
        "EVAULT_RATE_LIMIT_ORG": f"{ORG_QUOTA}/{WINDOW}",
        "EVAULT_RATE_LIMIT_ORG_BURST": str(ORG_QUOTA),
    }
    if time.time() % WINDOW > WINDOW - 30:  # no test here takes half a minute: let the window roll over first
        time.sleep(WINDOW + 1 - time.time() % WINDOW)
    opened = open_runtime(Settings.from_env(env))
    try:
        with TestClient(create_app(opened)) as test_client:
            yield opened, test_client
    finally:
        opened.close()


def _org_keys(runtime: Runtime, count: int) -> tuple[str, list[str], list[dict[str, str]]]:
    """A new organisation and ``count`` keys of it: (org id, key ids, headers of each key)."""
    with runtime.db.session() as session:
        org = create_organisation(session, "Many keys")
        keys = [create_api_key(session, org.id, f"k{n}", list(SCOPES)) for n in range(count)]
    return org.id, [key.id for key, _ in keys], [{"X-API-Key": raw} for _, raw in keys]


def _counts(runtime: Runtime) -> dict[tuple[str, str], int]:
    """Every counter row of the current window, and every paced row: (subject, policy) -> count."""
    start = int(time.time()) // WINDOW * WINDOW
    with runtime.db.read_session() as session:
        rows = session.exec(select(RateCounter).where(col(RateCounter.window_start).in_((start, 0))))
        return {(row.subject, row.policy): row.count for row in rows}


def _remaining(response: Any) -> dict[str, int]:
    return {name: int(r) for name, r, _ in _ITEM.findall(response.headers["ratelimit"])}


def _list(client: Any, headers: dict[str, str]) -> Any:
    return client.get(f"{API}/envelopes", headers=headers)


def test_keys_of_one_organisation_share_its_quota_and_another_organisation_is_not_touched(limited: Any) -> None:
    runtime, client = limited
    org_id, _, (first, second) = _org_keys(runtime, 2)
    for headers in (first, second, first, second, first, second):  # 3 each: each key under its own 4
        assert _list(client, headers).status_code == 200
    for headers in (first, second):
        refused = _list(client, headers)
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["code"] == "Request.OrgRateLimited"
        assert (body["details"]["policy"], body["details"]["setting"]) == ("org", "EVAULT_RATE_LIMIT_ORG")
    _, _, (other,) = _org_keys(runtime, 1)
    assert [_list(client, other).status_code for _ in range(KEY_QUOTA)] == [200] * KEY_QUOTA
    assert _counts(runtime)[(org_id, "org")] == ORG_QUOTA


def test_a_request_refused_by_either_quota_counts_against_neither(limited: Any) -> None:
    runtime, client = limited
    org_id, (first_id, second_id), (first, second) = _org_keys(runtime, 2)
    assert [_list(client, first).status_code for _ in range(KEY_QUOTA)] == [200] * KEY_QUOTA
    key_refused = _list(client, first)  # the key's quota is spent, its organisation's is not
    assert (key_refused.status_code, key_refused.json()["code"]) == (429, "Request.RateLimited")
    assert _remaining(key_refused) == {"default": 0, "org": ORG_QUOTA - KEY_QUOTA}
    assert _counts(runtime)[(org_id, "org")] == KEY_QUOTA  # the refusal did not spend the organisation's count
    assert [_list(client, second).status_code for _ in range(2)] == [200, 200]
    org_refused = _list(client, second)  # now the organisation's is spent, the key's is not
    assert (org_refused.status_code, org_refused.json()["code"]) == (429, "Request.OrgRateLimited")
    assert _remaining(org_refused) == {"default": KEY_QUOTA - 2, "org": 0}
    assert {key: n for key, n in _counts(runtime).items() if org_id in key or key[0] in (first_id, second_id)} == {
        (org_id, "org"): ORG_QUOTA,
        (first_id, "default"): KEY_QUOTA,
        (second_id, "default"): 2,
    }


def test_the_headers_name_every_policy_and_retry_after_waits_for_the_spent_one(limited: Any) -> None:
    runtime, client = limited
    _, _, (first, second) = _org_keys(runtime, 2)
    answer = _list(client, first)
    assert answer.headers["ratelimit-policy"] == f'"default";q={KEY_QUOTA};w={WINDOW}, "org";q={ORG_QUOTA};w={WINDOW}'
    items = _ITEM.findall(answer.headers["ratelimit"])
    assert [(name, int(r)) for name, r, _ in items] == [("default", KEY_QUOTA - 1), ("org", ORG_QUOTA - 1)]
    assert all(1 <= int(t) <= WINDOW for _, _, t in items)
    envelope_id = create_envelope(client, first)
    assert upload(client, first, envelope_id, make_pdf()).status_code == 201
    copy = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=second)
    assert copy.status_code == 200, copy.text
    assert copy.headers["ratelimit-policy"] == (
        f'"default";q={KEY_QUOTA};w={WINDOW}, "copies";q={KEY_QUOTA};w={WINDOW}, "org";q={ORG_QUOTA};w={WINDOW}'
    )
    assert _remaining(copy) == {"default": KEY_QUOTA - 1, "copies": KEY_QUOTA - 1, "org": ORG_QUOTA - 4}
    while (last := _list(client, second)).status_code == 200:
        pass
    assert last.json()["code"] == "Request.OrgRateLimited"
    reset = int(_ITEM.findall(last.headers["ratelimit"])[-1][2])
    assert int(last.headers["retry-after"]) == reset == last.json()["details"]["retry_after"]


def test_keys_racing_are_admitted_exactly_the_organisations_quota(limited: Any) -> None:
    """On PostgreSQL the requests really overlap: the organisation's row lock decides, and the refused ones leave
    their keys' counts as they were."""
    runtime, client = limited
    org_id, _, keys = _org_keys(runtime, 5)
    answers = together(*(partial(_list, client, keys[n % 5]) for n in range(15)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * ORG_QUOTA + [429] * (15 - ORG_QUOTA), [getattr(a, "text", a) for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 429} == {"Request.OrgRateLimited"}
    counts = _counts(runtime)
    assert counts[(org_id, "org")] == ORG_QUOTA
    assert sum(n for (_, policy), n in counts.items() if policy == "default") == ORG_QUOTA


def test_the_sweeper_keeps_a_long_window(limited: Any) -> None:
    """Counters are swept two windows after they start: the longest window of any policy, or an hour's quota
    would start again when the sweeper ran."""
    runtime, client = limited
    _, _, keys = _org_keys(runtime, 2)
    for n in range(ORG_QUOTA):
        assert _list(client, keys[n % 2]).status_code == 200
    sweep_deadlines(runtime.custody(), runtime.settings.api.longest_rate_window())
    assert _list(client, keys[0]).json()["code"] == "Request.OrgRateLimited"


def test_a_paced_quota_admits_its_burst_then_one_request_per_interval(db: Database) -> None:
    """GCRA: 60 a minute with a burst of 3 admits 3 at once, then one a second, and idling never banks more than
    the burst; a request refused counts nothing, so a client retrying at once does not push its turn back."""
    org = Policy("org", 60, 60, "Request.OrgRateLimited", "EVAULT_RATE_LIMIT_ORG", burst=3)

    def admitted(at: float) -> tuple[bool, int, int]:
        (usage,) = admit(db, [("org_paced", org)], now=at)
        return usage.admitted, usage.remaining, usage.reset

    t0 = 1_800_000_000.0
    assert [admitted(t0) for _ in range(4)] == [(True, 2, 1), (True, 1, 2), (True, 0, 3), (False, 0, 1)]
    assert [admitted(t0 + 0.5) for _ in range(5)] == [(False, 0, 1)] * 5
    assert admitted(t0 + 1.0) == (True, 0, 3)  # one interval later, one request, and no more
    assert admitted(t0 + 1.5) == (False, 0, 1)
    assert [admitted(t0 + 2.0)[0], admitted(t0 + 3.0)[0], admitted(t0 + 3.0)[0]] == [True, True, False]
    later = t0 + 3600  # an hour idle banks the burst, not an hour's quota
    assert [admitted(later)[0] for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("quota", "burst"), [(300, 30), (70, 7), (6000, 100)])
def test_a_burst_at_one_instant_of_todays_clock_is_admitted_whole(db: Database, quota: int, burst: int) -> None:
    """Times near 1.8e9 s and an interval of 0.2 s do not add up exactly in floats: the default 300/60 with a
    burst of 30 admitted 29 at one instant, and every answer showed one request fewer left than it had."""
    org = Policy("org", quota, 60, "Request.OrgRateLimited", "EVAULT_RATE_LIMIT_ORG", burst=burst)
    now = 1_800_000_000.123
    usages = [admit(db, [("org_instant", org)], now=now)[0] for _ in range(burst + 1)]
    assert [u.admitted for u in usages] == [True] * burst + [False]
    assert [u.remaining for u in usages] == [*range(burst - 1, -1, -1), 0]


@contextmanager
def _hourly(vault_env: dict[str, str], **limits: str) -> Iterator[tuple[Runtime, TestClient[Any]]]:
    """The service at 60 requests an hour per organisation (1,000 per key), with ``limits`` besides."""
    env = {**vault_env, "EVAULT_RATE_LIMIT": "1000/3600", "EVAULT_RATE_LIMIT_ORG": "60/3600", **limits}
    opened = open_runtime(Settings.from_env(env))
    try:
        with TestClient(create_app(opened)) as client:
            yield opened, client
    finally:
        opened.close()


def test_an_organisations_flood_is_refused_after_its_burst(vault_env: dict[str, str]) -> None:
    """Over HTTP, at 60 an hour with a burst of 5: the sixth request at once is 429 Request.OrgRateLimited, and
    Retry-After is one interval (60 s), not the rest of an hour."""
    with _hourly(vault_env, EVAULT_RATE_LIMIT_ORG_BURST="5") as (opened, client):
        _, _, keys = _org_keys(opened, 5)
        answers = [_list(client, keys[n]) for n in range(5)] + [_list(client, keys[0])]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert [_remaining(a)["org"] for a in answers] == [4, 3, 2, 1, 0, 0]
        refused = answers[-1]
        assert refused.json()["code"] == "Request.OrgRateLimited"
        assert refused.headers["retry-after"] == "60" == str(refused.json()["details"]["retry_after"])
        assert refused.headers["ratelimit-policy"].endswith('"org";q=60;w=3600')


def test_an_organisations_uploads_are_refused_after_their_smaller_burst(vault_env: dict[str, str]) -> None:
    """At 60 an hour with a burst of 20 for requests and 3 for uploads: the fourth upload at once is 429
    Request.OrgRateLimited naming the uploads' policy, counts nothing, and other requests still pass."""
    bursts = {"EVAULT_RATE_LIMIT_ORG_BURST": "20", "EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST": "3"}
    with _hourly(vault_env, **bursts) as (opened, client):
        org_id, _, keys = _org_keys(opened, 2)
        envelopes = [create_envelope(client, keys[n % 2]) for n in range(4)]
        answers = [upload(client, keys[n % 2], envelopes[n], make_pdf()) for n in range(4)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429], answers[-1].text
        assert answers[0].headers["ratelimit-policy"].endswith('"org-uploads";q=60;w=3600, "org";q=60;w=3600')
        assert [_remaining(a)["org-uploads"] for a in answers] == [2, 1, 0, 0]
        refused = answers[-1].json()
        assert (refused["code"], refused["details"]["policy"], refused["details"]["setting"]) == (
            "Request.OrgRateLimited",
            "org-uploads",
            "EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST",
        )
        assert answers[-1].headers["retry-after"] == "60"
        counts = _counts(opened)
        assert (counts[(org_id, "org-uploads")], counts[(org_id, "org")]) == (3, 7)  # the refusal: neither
        assert _list(client, keys[0]).status_code == 200  # the organisation's own burst has room
        left = client.get(f"{API}/envelopes/{envelopes[3]}", headers=keys[1])
        assert left.json()["vault_state"] == "not_vaulted"  # the refused vault-in changed nothing
        assert _remaining(left)["org"] == 20 - 9


def test_the_sweeper_forgets_a_paced_row_once_it_is_on_schedule(limited: Any) -> None:
    runtime, client = limited
    org_id, _, (headers,) = _org_keys(runtime, 1)
    assert _list(client, headers).status_code == 200
    sweep_deadlines(runtime.custody(), runtime.settings.api.longest_rate_window())
    assert (org_id, "org") in _counts(runtime)  # ten minutes ahead: kept
    with runtime.db.session() as session:
        session.exec(update(RateCounter).where(col(RateCounter.subject) == org_id).values(tat=time.time() - 1))
    sweep_deadlines(runtime.custody(), runtime.settings.api.longest_rate_window())
    assert (org_id, "org") not in _counts(runtime)


@pytest.mark.parametrize(
    ("env", "expected", "burst", "uploads"),
    [
        ({}, (300, 60), 30, 10),
        ({"EVAULT_RATE_LIMIT": "10/30"}, (30, 30), 10, 10),
        ({"EVAULT_RATE_LIMIT_ORG": "1000/3600"}, (1000, 3600), 100, 33),
        ({"EVAULT_RATE_LIMIT_ORG": "4/60"}, (4, 60), 4, 4),
        ({"EVAULT_RATE_LIMIT_ORG_BURST": "60"}, (300, 60), 60, 20),
    ],
)
def test_the_default_is_three_keys_worth(
    tmp_path: Path, env: dict[str, str], expected: tuple[int, int], burst: int, uploads: int
) -> None:
    """Unset, the organisation's quota follows the key's, so raising one key's limit never leaves it capped; its
    burst is a tenth of it, at least 10, at most the quota; its uploads' burst a third of that, at least 10, at
    most the burst."""
    api = Settings.from_env({"EVAULT_DATA_DIR": str(tmp_path), **env}).api
    assert (api.rate_limit_org, api.rate_limit_org_burst, api.rate_limit_org_upload_burst) == (expected, burst, uploads)


@pytest.mark.parametrize("raw", ["0", "-1", "many", "31"])
def test_a_bad_org_upload_burst_stops_the_start(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST"):
        Settings.from_env({"EVAULT_DATA_DIR": str(tmp_path), "EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST": raw})


@pytest.mark.parametrize("raw", ["0", "-1", "many", "301"])
def test_a_bad_org_burst_stops_the_start(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="EVAULT_RATE_LIMIT_ORG_BURST"):
        Settings.from_env({"EVAULT_DATA_DIR": str(tmp_path), "EVAULT_RATE_LIMIT_ORG_BURST": raw})


@pytest.mark.parametrize("raw", ["0/60", "100", "100/0", "-1/60", "many/60", "\u00b2/60"])
def test_a_bad_org_rate_stops_the_start(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="EVAULT_RATE_LIMIT_ORG"):
        Settings.from_env({"EVAULT_DATA_DIR": str(tmp_path), "EVAULT_RATE_LIMIT_ORG": raw})


def test_the_migration_keeps_the_counts_under_their_new_name(database_url: str) -> None:
    database = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0024_slot_leases")
            conn.execute(text("INSERT INTO rate_counter (key_id, policy, window_start, count) VALUES ('k', 'p', 0, 7)"))
            command.upgrade(config, "0025_org_rate_limit")
            assert conn.execute(text("SELECT subject, count FROM rate_counter")).all() == [("k", 7)]
            command.upgrade(config, "0026_paced_rate")
            conn.execute(text("INSERT INTO rate_counter VALUES ('org', 'org', 0, 2, 1800000000.5)"))
            assert conn.execute(text("SELECT subject, count, tat FROM rate_counter ORDER BY subject")).all() == [
                ("k", 7, None),
                ("org", 2, 1800000000.5),
            ]
            command.downgrade(config, "0024_slot_leases")  # a paced row has no meaning as a window's count
            assert conn.execute(text("SELECT key_id, count FROM rate_counter")).all() == [("k", 7)]
    finally:
        database.dispose()
