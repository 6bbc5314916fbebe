"""/v1/notify/withings/{token}: Withings' data-update callback, end to end over real HTTP and two
real zone databases."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import FormData

from gateway.adapters.withings import WITHINGS_USER_SYSTEM
from gateway.logs import JSONFormatter, configure_logging
from gateway.privacy import parse_api_key
from tests.conftest import Gateway
from tests.helpers import fetch

USERID = "31415926"
START = 1_767_225_600  # 2026-01-01T00:00:00Z
END = START + 3600


def _url(token: str) -> str:
    return f"/v1/notify/withings/{token}"


def _form(**fields: str) -> dict[str, str]:
    return {"userid": USERID, "appli": "1", "startdate": str(START), "enddate": str(END), **fields}


async def _enrol_withings_user(gateway: Gateway, zone: str, userid: str = USERID) -> str:
    extra = [{"system": WITHINGS_USER_SYSTEM, "value": userid}]
    return await gateway.enrol(zone, f"MRN-{zone}-{userid}", extra=extra)


async def _notify(gateway: Gateway, zone: str, form: Any) -> tuple[int, bytes, dict[str, str]]:
    response = await gateway.client.post(_url(gateway.vendor[zone]), data=form)
    return response.status, await response.read(), dict(response.headers)


async def _rows(dsn: str) -> list[dict[str, Any]]:
    rows = await fetch(
        dsn,
        "SELECT subject, appli, start_time, end_time, status FROM withings_notifications"
        " ORDER BY id",
    )
    return [dict(row) for row in rows]


async def _metric(gateway: Gateway, outcome: str, zone: str = "cn") -> float:
    text = await (await gateway.client.get("/metrics")).text()
    sample = (
        f'gateway_notifications_total{{outcome="{outcome}",vendor_format="withings",zone="{zone}"}}'
    )
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def production_access_log() -> Iterator[None]:
    """aiohttp's access log as production runs it: silenced (it prints raw request lines, so
    the key in the path; `test_production_logging_silences_the_access_log...` checks this)."""
    access = logging.getLogger("aiohttp.access")
    previous = access.level
    access.setLevel(logging.WARNING)
    yield
    access.setLevel(previous)


@pytest.mark.parametrize("method", ["HEAD", "GET"])
async def test_the_url_check_with_a_valid_key_is_an_empty_200(
    gateway: Gateway, method: str
) -> None:
    response = await gateway.client.request(method, _url(gateway.vendor["cn"]))
    assert response.status == 200
    assert await response.read() == b""


@pytest.mark.parametrize("method", ["HEAD", "GET", "POST"])
@pytest.mark.parametrize("kind", ["malformed", "wrong-secret", "unknown-key"])
async def test_a_bad_key_in_the_path_is_401(gateway: Gateway, method: str, kind: str) -> None:
    token = gateway.vendor["cn"]
    bad = {
        "malformed": "not-a-key",
        "wrong-secret": token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB"),
        "unknown-key": "wgk_cn_0123456789ab_" + "A" * 43,
    }[kind]
    response = await gateway.client.request(method, _url(bad), data=_form())
    assert response.status == 401
    if method != "HEAD":
        body = await response.json()
        assert body["error"]["code"] == "unauthenticated"
        assert bad not in str(body)


async def test_a_clinic_key_in_the_path_is_403(gateway: Gateway) -> None:
    response = await gateway.client.post(_url(gateway.clinic["cn"]), data=_form())
    assert response.status == 403


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"userid": ""}, "userid"),
        ({"userid": "12ab"}, "userid"),
        ({"userid": "1" * 21}, "userid"),
        ({"userid": "-5"}, "userid"),
        ({"appli": "weight"}, "appli"),
        ({"appli": "12345"}, "appli"),
        ({"startdate": "yesterday"}, "startdate"),
        ({"enddate": "1.5"}, "enddate"),
        ({"startdate": str(END + 1)}, "startdate"),
        ({"startdate": "86400"}, "2000"),
        ({"enddate": str(int(datetime.now(UTC).timestamp()) + 3 * 86400)}, "future"),
        ({"startdate": "", "enddate": "", "date": "2026-02-30"}, "date"),
    ],
)
async def test_a_malformed_form_is_400_names_the_field_and_stores_nothing(
    gateway: Gateway, zone_dsns: dict[str, str], fields: dict[str, str], names: str
) -> None:
    await _enrol_withings_user(gateway, "cn")
    form = _form(**fields)
    for key in [k for k, v in fields.items() if v == ""]:
        del form[key]
    status, body, _ = await _notify(gateway, "cn", form)

    assert status == 400
    error = orjson.loads(body)["error"]
    assert error["code"] == "invalid-body"
    assert names in error["message"]
    for value in fields.values():
        if len(value) > 2:
            assert value not in error["message"]
    assert await _rows(zone_dsns["cn"]) == []
    assert await _metric(gateway, "invalid") == 1


async def test_a_body_that_is_not_a_form_is_415(gateway: Gateway) -> None:
    response = await gateway.client.post(_url(gateway.vendor["cn"]), json=_form())
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported-media-type"


async def test_an_enrolled_user_gets_one_pending_fetch_in_its_zone_only(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_withings_user(gateway, "cn")
    status, body, _ = await _notify(gateway, "cn", _form(appli="44", deviceid="ab12"))

    assert (status, body) == (200, b"")
    assert await _rows(zone_dsns["cn"]) == [
        {
            "subject": pseudonym,
            "appli": 44,
            "start_time": datetime.fromtimestamp(START, UTC),
            "end_time": datetime.fromtimestamp(END, UTC),
            "status": "pending",
        }
    ]
    assert await _rows(zone_dsns["eu"]) == []
    assert await _metric(gateway, "recorded") == 1


async def test_a_replayed_notification_is_still_one_row(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    first = await _notify(gateway, "cn", _form())
    second = await _notify(gateway, "cn", _form())

    assert first[:2] == second[:2] == (200, b"")
    assert len(await _rows(zone_dsns["cn"])) == 1
    assert await _metric(gateway, "recorded") == 1
    assert await _metric(gateway, "duplicate") == 1


async def test_another_category_or_window_is_another_row(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    await _notify(gateway, "cn", _form(appli="1"))
    await _notify(gateway, "cn", _form(appli="4"))
    await _notify(gateway, "cn", _form(appli="4", enddate=str(END + 1)))
    assert [row["appli"] for row in await _rows(zone_dsns["cn"])] == [1, 4, 4]


async def test_an_unknown_user_is_answered_exactly_like_an_enrolled_one_and_nothing_is_stored(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    enrolled = await _notify(gateway, "cn", _form())
    unknown = await _notify(gateway, "cn", _form(userid="27182818"))

    def comparable(answer: tuple[int, bytes, dict[str, str]]) -> tuple[int, bytes, set[str]]:
        status, body, headers = answer
        varying = {"X-Request-ID", "Date"}
        return status, body, {f"{k}: {v}" for k, v in headers.items() if k not in varying}

    assert comparable(unknown) == comparable(enrolled)
    assert len(await _rows(zone_dsns["cn"])) == 1
    assert await _rows(zone_dsns["eu"]) == []
    assert await _metric(gateway, "unknown_subject") == 1


async def test_a_user_enrolled_in_another_zone_is_unknown_to_this_zones_key(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "eu")
    status, body, _ = await _notify(gateway, "cn", _form())
    assert (status, body) == (200, b"")
    assert await _rows(zone_dsns["cn"]) == []
    assert await _rows(zone_dsns["eu"]) == []
    assert await _metric(gateway, "unknown_subject") == 1


async def test_an_undocumented_category_is_recorded_with_its_code(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    status, _, _ = await _notify(gateway, "cn", _form(appli="9876"))
    assert status == 200
    assert [row["appli"] for row in await _rows(zone_dsns["cn"])] == [9876]


async def test_a_date_without_a_window_is_recorded_as_that_whole_day(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    form = {"userid": USERID, "appli": "16", "date": "2026-01-31"}
    status, _, _ = await _notify(gateway, "cn", form)
    assert status == 200
    [row] = await _rows(zone_dsns["cn"])
    assert row["start_time"] == datetime(2026, 1, 31, tzinfo=UTC)
    assert row["end_time"] == datetime(2026, 1, 31, tzinfo=UTC) + timedelta(days=1)


async def test_a_userid_with_leading_zeros_finds_the_same_subject(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    status, _, _ = await _notify(gateway, "cn", _form(userid="00" + USERID))
    assert status == 200
    assert len(await _rows(zone_dsns["cn"])) == 1


async def test_a_multipart_form_is_read_like_an_urlencoded_one(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await _enrol_withings_user(gateway, "cn")
    form = FormData(_form(), default_to_multipart=True)
    status, _, _ = await _notify(gateway, "cn", form)
    assert status == 200
    assert len(await _rows(zone_dsns["cn"])) == 1


async def test_an_undecodable_form_is_400(gateway: Gateway, zone_dsns: dict[str, str]) -> None:
    response = await gateway.client.post(
        _url(gateway.vendor["cn"]),
        data=b"userid=%FF%FE&appli=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 400
    assert await _rows(zone_dsns["cn"]) == []


async def test_the_key_in_the_path_appears_in_no_log_line_and_no_metric(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, production_access_log: None
) -> None:
    caplog.set_level(logging.DEBUG)
    await _enrol_withings_user(gateway, "cn")
    token = gateway.vendor["cn"]
    # The secret is URL-safe base64 and may itself hold "_": take it as the gateway parses it.
    secret = parse_api_key(token).secret
    for method in ("HEAD", "GET"):
        assert (await gateway.client.request(method, _url(token))).status == 200
    for form in (_form(), _form(), _form(userid="27182818"), _form(appli="x")):
        await _notify(gateway, "cn", form)
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    assert (await gateway.client.post(_url(forged), data=_form())).status == 401

    metrics = await (await gateway.client.get("/metrics")).text()
    formatter = JSONFormatter()
    logs = "\n".join(
        f"{record.getMessage()} {formatter.format(record)}" for record in caplog.records
    )
    assert "notification.received" in logs, "nothing was logged: the scan would prove nothing"
    assert "/v1/notify/withings/{token}" in metrics
    for where, text in {"logs": logs, "metrics": metrics}.items():
        for leaked in (token, secret, forged, USERID):
            assert leaked not in text, f"key material or userid found in {where}"


def test_production_logging_silences_the_access_log_that_would_print_the_path() -> None:
    access, ours = logging.getLogger("aiohttp.access"), logging.getLogger("gateway")
    saved = (access.level, ours.level, ours.handlers[:], ours.propagate)
    try:
        configure_logging("DEBUG")
        assert not access.isEnabledFor(logging.INFO)
    finally:
        access.level, ours.level, ours.handlers[:], ours.propagate = saved
