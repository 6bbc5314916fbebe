"""The README's curl examples are real: each is parsed out of README.md and sent to a running
gateway, and must succeed. A README that drifts from the code fails here."""

from __future__ import annotations

import re
import shlex
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from tests.conftest import MRN, Gateway
from tests.helpers import fetch, stored_observations

README = Path(__file__).parents[1] / "README.md"
EXPORT = Path(__file__).parent / "fixtures" / "healthkit" / "ahcd-export.xml"


def curl_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        # One command per segment starting at a line that begins with `curl`; a JSON body may
        # span lines inside its quotes.
        for segment in re.split(r"\n(?=curl )", "\n" + block):
            if not segment.startswith("curl ") or not re.search(r"-X (POST|PATCH|DELETE)", segment):
                continue
            lexer = shlex.shlex(segment.replace("\\\n", " "), posix=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            commands.append(list(lexer))
    return commands


def request_of(argv: list[str]) -> dict[str, Any]:
    url = next(a for a in argv if "localhost:8080" in a)
    parts = urlsplit("http://" + url.split("://")[-1])
    headers = {}
    body: bytes | None = None
    for flag, value in pairwise(argv):
        if flag == "-H":
            name, _, content = value.partition(":")
            headers[name.strip()] = content.strip()
        elif flag == "-d":
            body = value.encode()
            # curl's default for -d without a Content-Type header.
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif flag == "--data-binary":
            body = EXPORT.read_bytes()
    return {
        "method": argv[argv.index("-X") + 1],
        "path": parts.path,
        "query": dict(parse_qsl(parts.query)),
        "headers": headers,
        "body": body,
    }


# The token request needs a freshly signed client assertion ($ASSERTION); tests/web/
# test_smart_auth.py drives that flow with real keys.
REQUESTS = [
    request_of(argv) for argv in curl_commands() if not any("/auth/token" in a for a in argv)
]
EXAMPLES = [r for r in REQUESTS if r["method"] == "POST"]
# Consent change and erasure of the subject a clinic enrolled (`$PSEUDONYM`). Other non-POST
# examples (cancelling a bulk export) need state these tests do not build: test_bulk_export.py.
LIFECYCLE = [r for r in REQUESTS if r["method"] != "POST" and r["path"].startswith("/v1/subjects/")]


def test_the_readme_has_a_post_example_for_every_endpoint_and_format() -> None:
    paths = {e["path"] for e in EXAMPLES}
    for fmt in ("native", "withings", "omh", "healthkit", "healthconnect", "fhir"):
        assert f"/v1/ingest/{fmt}" in paths
    assert {"/v1/subjects", "/v1/ingest/healthkit/export", "/v1/notify/withings/$VENDOR"} <= paths


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["path"] for e in EXAMPLES])
async def test_a_readme_example_succeeds(
    gateway: Gateway, zone_dsns: dict[str, str], example: dict[str, Any]
) -> None:
    if example["path"] != "/v1/subjects":
        await gateway.enrol(
            "cn",
            "MRN-0042",
            extra=[
                {"system": "https://developer.withings.com/userid", "value": "1234567"},
                {"system": "urn:wearable-gateway:omh:user-id", "value": "u-42"},
            ],
        )
    token = gateway.clinic["cn"] if example["path"] == "/v1/subjects" else gateway.vendor["cn"]
    headers = {**example["headers"], "Authorization": f"Bearer {token}"}
    path = example["path"].replace("$VENDOR", gateway.vendor["cn"])
    response = await gateway.client.post(
        path, params=example["query"], data=example["body"], headers=headers
    )
    if path.startswith("/v1/notify/withings/"):
        assert response.status == 200
        pending = await fetch(zone_dsns["cn"], "SELECT status FROM withings_notifications")
        assert [row["status"] for row in pending] == ["pending"]
        return
    answer = orjson.loads(await response.read())
    if example["path"] == "/v1/subjects":
        assert response.status == 201, answer
        return
    assert response.status in (200, 207), answer
    assert answer["summary"]["created"] >= 1, answer
    assert len(await stored_observations(zone_dsns["cn"])) >= 1
    assert MRN["cn"]  # the examples use the test suite's cn MRN system


def test_the_readme_has_a_consent_and_an_erasure_example() -> None:
    assert {(e["method"], e["path"]) for e in LIFECYCLE} == {
        ("PATCH", "/v1/subjects/$PSEUDONYM/consent"),
        ("DELETE", "/v1/subjects/$PSEUDONYM"),
    }


@pytest.mark.parametrize("example", LIFECYCLE, ids=[e["method"] for e in LIFECYCLE])
async def test_a_readme_consent_or_erasure_example_succeeds(
    gateway: Gateway, zone_dsns: dict[str, str], example: dict[str, Any]
) -> None:
    pseudonym = await gateway.enrol("cn", "MRN-0042")
    response = await gateway.client.request(
        example["method"],
        example["path"].replace("$PSEUDONYM", pseudonym),
        params=example["query"],
        data=example["body"],
        headers={**example["headers"], "Authorization": f"Bearer {gateway.clinic['cn']}"},
    )
    answer = orjson.loads(await response.read())
    assert response.status == 200, answer
    assert answer["pseudonym"] == pseudonym
    if example["method"] == "DELETE":
        assert answer["status"] == "erased", answer
        assert await fetch(zone_dsns["cn"], "SELECT 1 FROM subjects") == []
