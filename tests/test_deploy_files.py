"""The deployment files and API contracts, checked against the code they describe.

CI has no Docker engine and no YAML parser (not a dependency), so `deploy/compose.yaml`,
`deploy/prometheus/rules.yaml` and `schemas/openapi.yaml` are checked as text: they are written
in plain block style, one key per line, which these checks rely on. The facts they are checked
against come from the code itself (the settings loader, the URL map, the error tree, the metrics
registry), not from copies of it here.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import gateway.adapters.base  # noqa: F401  (defines TooManyReadings, a GatewayError)
from gateway.app import create_app
from gateway.cli import build_parser
from gateway.errors import ConfigurationError, GatewayError, TableBusy
from gateway.metrics import GatewayMetrics
from gateway.models import Outcome, ReadingOutcome, Rejection, RejectionCode, Sex
from gateway.privacy import ZoneKeyRing, issue_api_key
from gateway.services.ingest import IngestResult
from gateway.settings import Settings, ZoneSettings, load_settings
from gateway.web import ingest as ingest_web
from gateway.web.appkeys import ADAPTERS
from gateway.web.responses import error_response

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SCHEMAS = ROOT / "schemas"
ZONES = ("cn", "eu")
IMAGE_UID = "10001"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _split(text: str, indent: int) -> dict[str, str]:
    """Blocks of `text` under the block keys (`name:` alone on a line) indented by `indent`
    spaces; comment lines are dropped."""
    key = re.compile(rf"^ {{{indent}}}([^\s#-][^:]*):\s*(&\S+\s*)?$")
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if match := key.match(line):
            current = blocks.setdefault(match[1].strip().strip('"'), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body) + "\n" for name, body in blocks.items()}


def _children(text: str, parent: str) -> dict[str, str]:
    """The entries of the top-level block mapping `parent:`."""
    return _split(_split(text, 0)[parent], 2)


# ---------------------------------------------------------------------------------- settings


class _RecordingEnv(dict[str, str]):
    """An environment that remembers every name the settings loader asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def _generic(name: str) -> str:
    for zone in ZONES:
        name = name.replace(f"GATEWAY_ZONE_{zone.upper()}_", "GATEWAY_ZONE_<ZONE>_")
    return name


@pytest.fixture(scope="module")
def settings_variables(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every environment variable `load_settings` reads, zone names replaced by `<ZONE>`."""
    url_file = tmp_path_factory.mktemp("secrets") / "eu_database_url"
    url_file.write_text("postgresql://gateway:pw@db/gateway\n", encoding="utf-8")
    asked: set[str] = set()
    for url_form in ("DATABASE_URL", "DATABASE_URL_FILE"):
        env = _RecordingEnv(
            {
                "GATEWAY_ZONES": ",".join(ZONES),
                **{
                    f"GATEWAY_ZONE_{z.upper()}_{url_form}": (
                        str(url_file) if url_form.endswith("FILE") else "postgresql://db/g"
                    )
                    for z in ZONES
                },
                **{f"GATEWAY_ZONE_{z.upper()}_KEY_FILE": f"/k/{z}" for z in ZONES},
            }
        )
        load_settings(environ=env)
        asked |= env.asked
    return {_generic(name) for name in asked}


def _variables_named_in(text: str) -> set[str]:
    # `\b` keeps WEARABLE_GATEWAY_IMAGE (a compose variable, not a setting) out.
    return {_generic(n) for n in re.findall(r"\bGATEWAY_[A-Z0-9_<>]*[A-Z0-9>]", text)}


def test_settings_loader_reads_every_documented_setting(settings_variables: set[str]) -> None:
    scalars = {f.name for f in fields(Settings)} - {"zones", "extra"}
    expected = {f"GATEWAY_{name.upper()}" for name in scalars} | {
        "GATEWAY_CONFIG",
        "GATEWAY_ZONES",
        "GATEWAY_ZONE_<ZONE>_DATABASE_URL",
        "GATEWAY_ZONE_<ZONE>_DATABASE_URL_FILE",
        "GATEWAY_ZONE_<ZONE>_KEY_FILE",
    }
    assert settings_variables == expected


@pytest.mark.parametrize(
    "path",
    [
        "deploy/compose.yaml",
        "deploy/Dockerfile",
        "deploy/README.md",
        "deploy/prometheus/rules.yaml",
        "deploy/gateway.example.toml",
        "schemas/settings.schema.json",
    ],
)
def test_deploy_files_use_only_variables_the_gateway_reads(
    path: str, settings_variables: set[str]
) -> None:
    named = _variables_named_in(_read(ROOT / path)) - {"GATEWAY_<NAME>"}
    assert named <= settings_variables, f"{path} names settings the gateway never reads"


def test_deploy_readme_documents_every_setting_variable(settings_variables: set[str]) -> None:
    assert settings_variables <= _variables_named_in(_read(DEPLOY / "README.md"))


@pytest.fixture(scope="module")
def settings_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_read(SCHEMAS / "settings.schema.json"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_example_settings_file_passes_schema_and_loader(settings_schema: dict[str, Any]) -> None:
    path = DEPLOY / "gateway.example.toml"
    document = tomllib.loads(_read(path))
    jsonschema.Draft202012Validator(settings_schema).validate(document)

    settings = load_settings(environ={}, config_path=path)
    for name, value in document["server"].items():
        assert getattr(settings, name) == value
    assert set(settings.zones) == set(document["zones"]) == set(ZONES)
    for name, table in document["zones"].items():
        assert settings.zones[name].database_url == table["database_url"]
        assert settings.zones[name].key_file == Path(table["key_file"])


def test_settings_schema_covers_exactly_what_the_loader_reads(
    settings_schema: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = settings_schema["$defs"]["server"]["properties"]
    assert set(server) == {f.name for f in fields(Settings)} - {"zones", "extra"}
    for name, prop in server.items():
        default = next(f.default for f in fields(Settings) if f.name == name)
        assert prop["default"] == default, name

    # Record the keys the loader looks up in a [zones.*] table.
    zone_table = _RecordingEnv({"database_url": "postgresql://db/g", "key_file": "/k"})
    monkeypatch.setattr(
        "gateway.settings.tomllib.loads", lambda _text: {"zones": {"cn": zone_table}}
    )
    config = tmp_path / "gateway.toml"
    config.write_text("", encoding="utf-8")
    load_settings(environ={}, config_path=config)
    zone_props = set(settings_schema["$defs"]["zone"]["properties"])
    assert zone_table.asked == zone_props == {"database_url", "database_url_file", "key_file"}


@pytest.mark.parametrize("zone", ["cn", "eu", "zone1", "a" * 16, "cn-south", "CN", "1cn", "a" * 17])
def test_settings_schema_zone_names_are_those_a_key_ring_accepts(
    settings_schema: dict[str, Any], zone: str
) -> None:
    document = {"zones": {zone: {"database_url": "postgresql://db/g", "key_file": "/k"}}}
    schema_ok = jsonschema.Draft202012Validator(settings_schema).is_valid(document)
    try:
        ZoneKeyRing.generate(zone)
    except ConfigurationError:
        ring_ok = False
    else:
        ring_ok = True
    assert schema_ok == ring_ok


@pytest.mark.parametrize(
    "document",
    [
        {"server": {"prot": 8080}},  # a typo the loader would silently ignore
        {"server": {"port": "8080"}},
        {"server": {"log_level": "verbose"}},
        {"zones": {"cn": {"key_file": "/k"}}},  # no database URL
        {"zones": {"cn": {"database_url": "postgresql://db/g"}}},  # no key file
    ],
)
def test_settings_schema_refuses_mistakes(
    settings_schema: dict[str, Any], document: dict[str, Any]
) -> None:
    assert not jsonschema.Draft202012Validator(settings_schema).is_valid(document)


# ----------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> str:
    return _read(DEPLOY / "compose.yaml")


@pytest.fixture(scope="module")
def services(compose: str) -> dict[str, str]:
    return _children(compose, "services")


def _other(zone: str) -> str:
    return next(z for z in ZONES if z != zone)


def _secret_entry(body: str, source: str) -> str | None:
    match = re.search(rf"^( *)- source: {source}\n((?:\1  +\S.*\n)*)", body, re.MULTILINE)
    return match[2] if match else None


def test_compose_has_a_database_migration_and_gateway_per_zone(services: dict[str, str]) -> None:
    assert set(services) == {
        f"{kind}-{zone}" for kind in ("postgres", "migrate", "gateway") for zone in ZONES
    }


@pytest.mark.parametrize("kind", ["postgres", "migrate", "gateway"])
@pytest.mark.parametrize("zone", ZONES)
def test_compose_service_knows_nothing_of_the_other_zone(
    services: dict[str, str], kind: str, zone: str
) -> None:
    body = services[f"{kind}-{zone}"]
    other = _other(zone)
    assert not re.search(rf"(?<![A-Za-z]){other}(?![A-Za-z])", body, re.IGNORECASE)
    assert f"networks: [zone-{zone}]" in body
    for variable in re.findall(r"\bGATEWAY_ZONE_([A-Z0-9]+)_", body):
        assert variable == zone.upper()


@pytest.mark.parametrize("zone", ZONES)
def test_compose_gateway_gets_its_zone_settings_from_secrets(
    services: dict[str, str], zone: str
) -> None:
    body = services[f"gateway-{zone}"]
    z = zone.upper()
    assert re.search(rf"^\s+GATEWAY_ZONES: {zone}$", body, re.MULTILINE)
    assert f"GATEWAY_ZONE_{z}_DATABASE_URL_FILE: /run/secrets/{zone}_gateway_database_url" in body
    assert f"GATEWAY_ZONE_{z}_KEY_FILE: /run/secrets/{zone}_keys" in body
    assert not re.search(r"DATABASE_URL:", body), "a database URL (with password) in plain env"
    for source in (f"{zone}_gateway_database_url", f"{zone}_keys"):
        entry = _secret_entry(body, source)
        assert entry is not None, f"secret {source} is not mounted"
        # The gateway refuses group/other-readable key files; secrets default to 0444.
        assert f'uid: "{IMAGE_UID}"' in entry
        assert "mode: 0o400" in entry
    port = 8081 + ZONES.index(zone)
    assert f'- "{port}:8080"' in body
    assert re.search(rf"migrate-{zone}:\n\s+condition: service_completed_successfully", body)


@pytest.mark.parametrize("zone", ZONES)
def test_compose_gateway_keeps_metrics_off_the_public_port_and_names_its_base_url(
    services: dict[str, str], zone: str
) -> None:
    body = services[f"gateway-{zone}"]
    metrics = re.search(r'^\s+GATEWAY_METRICS_PORT: "?(\d+)"?$', body, re.MULTILINE)
    assert metrics, "/metrics has a listener of its own"
    published = re.findall(r'^\s+- "(\d+):(\d+)"$', body, re.MULTILINE)
    assert published, "the public port is published"
    assert all(int(inner) != int(metrics[1]) for _, inner in published), "metrics not published"
    assert "8080" not in metrics[1]
    assert re.search(r"^\s+GATEWAY_PUBLIC_BASE_URL: \S+$", body, re.MULTILINE)


def test_deploy_readme_maintenance_lines_name_the_compose_file() -> None:
    text = _read(DEPLOY / "README.md")
    lines = [line for line in text.splitlines() if "docker compose" in line and " run " in line]
    assert lines
    for line in lines:
        assert "docker compose -f deploy/compose.yaml " in line, line


@pytest.mark.parametrize("zone", ZONES)
def test_compose_migration_runs_once_against_a_healthy_database(
    services: dict[str, str], zone: str
) -> None:
    body = services[f"migrate-{zone}"]
    assert f'command: ["migrate", "--zone", "{zone}", "--grant-to", ' in body
    assert 'restart: "no"' in body
    assert re.search(rf"postgres-{zone}:\n\s+condition: service_healthy", body)
    assert _secret_entry(body, f"{zone}_owner_database_url") is not None
    assert _secret_entry(body, f"{zone}_keys") is None, "migrate does not need the zone keys"
    build_parser().parse_args(json.loads(re.search(r"command: (\[.*\])", body)[1]))  # type: ignore[index]


@pytest.mark.parametrize("zone", ZONES)
def test_compose_database_has_own_volume_password_secret_and_healthcheck(
    compose: str, services: dict[str, str], zone: str
) -> None:
    body = services[f"postgres-{zone}"]
    assert "<<: *postgres" in body
    assert f"POSTGRES_PASSWORD_FILE: /run/secrets/{zone}_postgres_password" in body
    assert f"- {zone}_postgres_password" in body
    assert f"- pgdata-{zone}:/var/lib/postgresql/data" in body
    assert f"  pgdata-{zone}: {{}}" in _split(compose, 0)["volumes"]
    assert "pg_isready" in _children(compose, "x-postgres")["healthcheck"]
    assert "<<: *postgres" in body


def _env(body: str, name: str) -> str:
    match = re.search(rf"^\s+{name}: (\S+)$", body, re.MULTILINE)
    assert match, name
    return match[1]


def _url_secret(body: str) -> str:
    path = _env(body, r"GATEWAY_ZONE_[A-Z0-9]+_DATABASE_URL_FILE")
    assert path.startswith("/run/secrets/"), path
    return path.removeprefix("/run/secrets/")


@pytest.mark.parametrize("zone", ZONES)
def test_compose_database_roles_the_gateway_is_neither_superuser_nor_owner(
    services: dict[str, str], zone: str
) -> None:
    database = services[f"postgres-{zone}"]
    superuser = _env(database, "POSTGRES_USER")
    owner, app = _env(database, "APP_DB_OWNER"), _env(database, "APP_DB_USER")
    assert len({superuser, owner, app}) == 3
    # migrate connects as the owner and grants the gateway's role; the gateway connects as it.
    migrate, gateway = services[f"migrate-{zone}"], services[f"gateway-{zone}"]
    command = json.loads(re.search(r"command: (\[.*\])", migrate)[1])  # type: ignore[index]
    assert build_parser().parse_args(command).grant_to == app
    owner_url, gateway_url = _url_secret(migrate), _url_secret(gateway)
    assert owner_url != gateway_url
    password_secrets = set(re.findall(r"^\s+- (\w+_password)$", database, re.MULTILINE))
    assert {owner_url, gateway_url}.isdisjoint(password_secrets)
    mounted = set(re.findall(r"- source: (\w+)", gateway))
    assert owner_url not in mounted, "the gateway gets the owner's URL"
    # What the README tells the operator to write into each URL secret.
    readme = _read(DEPLOY / "README.md")
    rows = {
        row.split("|")[1].strip(" `"): row
        for row in readme.splitlines()
        if row.startswith("| `<zone>_")
    }
    generic = {name: name.replace(f"{zone}_", "<zone>_", 1) for name in (owner_url, gateway_url)}
    assert f"postgresql://{owner}:" in rows[generic[owner_url]]
    assert f"postgresql://{app}:" in rows[generic[gateway_url]]
    assert f"echo {owner} || echo {app}" in readme  # the script writing the two URLs


def test_compose_database_init_script_creates_non_superuser_roles_from_secret_files(
    services: dict[str, str],
) -> None:
    script_path = DEPLOY / "postgres" / "init-roles.sh"
    assert script_path.stat().st_mode & 0o111, "run (not sourced) by the postgres entrypoint"
    script = _read(script_path)
    assert script.startswith("#!/bin/sh\n")
    assert "set -eu" in script
    assert "ON_ERROR_STOP=1" in script
    creates = re.findall(r"^CREATE ROLE (.*?);$", script, re.MULTILINE | re.DOTALL)
    assert len(creates) == 2
    for create in creates:
        for attribute in ("LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOBYPASSRLS"):
            assert attribute in create.split(), create
        assert re.search(r"PASSWORD :'\w+_password'$", create), "a psql variable, not a literal"
    assert "PASSWORD '" not in script
    # Each password variable is read from the file its *_FILE variable names, inside psql.
    for variable in ("owner", "app"):
        assert f"\\set {variable}_password `cat :'{variable}_file'`" in script
    assert 'ALTER DATABASE :"database" OWNER TO :"owner";' in script
    assert 'GRANT CONNECT ON DATABASE :"database" TO :"app";' in script
    for zone in ZONES:
        body = services[f"postgres-{zone}"]
        assert re.search(
            r"^\s+- \./postgres/init-roles\.sh:/docker-entrypoint-initdb\.d/[\w-]+\.sh:ro$",
            body,
            re.MULTILINE,
        )
        for name in [*re.findall(r"\$\{(\w+_FILE):", script), "POSTGRES_PASSWORD_FILE"]:
            secret = _env(body, name).removeprefix("/run/secrets/")
            assert re.search(rf"^\s+- {secret}$", body, re.MULTILINE), f"{name}: not a secret"


def test_compose_file_settings_point_at_secrets_mounted_in_the_same_service(
    services: dict[str, str],
) -> None:
    for name, body in services.items():
        for variable, path in re.findall(r"^\s+(\w+_FILE): (\S+)$", body, re.MULTILINE):
            if variable.endswith("_KEY_FILE") and name.startswith("migrate-"):
                continue  # required by the settings, never opened by migrate (compose.yaml)
            assert path.startswith("/run/secrets/"), (name, variable)
            secret = path.removeprefix("/run/secrets/")
            mounted = re.search(rf"^\s+- (source: )?{secret}$", body, re.MULTILINE)
            assert mounted, f"{name}: {variable} names an unmounted secret"


def test_compose_gateway_containers_are_locked_down(compose: str, services: dict[str, str]) -> None:
    anchor = compose.split("x-gateway: &gateway\n", 1)[1].split("\n\n", 1)[0]
    for setting in (
        "read_only: true",
        "cap_drop: [ALL]",
        "security_opt: [no-new-privileges:true]",
        "restart: unless-stopped",
    ):
        assert setting in anchor
    for name, body in services.items():
        if name.startswith(("gateway-", "migrate-")):
            assert body.lstrip().startswith("<<: *gateway"), name
            for loosening in ("read_only: false", "cap_add", "privileged", "user:"):
                assert loosening not in body, name


def test_compose_secrets_are_files_under_deploy_secrets(
    compose: str, services: dict[str, str]
) -> None:
    defined = _children(compose, "secrets")
    used = set()
    for body in services.values():
        used |= set(re.findall(r"- source: (\w+)", body))
        used |= set(re.findall(r"^\s+- (\w+_password)$", body, re.MULTILINE))
    assert used == set(defined)
    for name, body in defined.items():
        assert body.strip() == f"file: ./secrets/{name}"
    assert "deploy/secrets/" in _read(ROOT / ".gitignore").splitlines()
    dockerignore = _read(ROOT / ".dockerignore").splitlines()
    assert "deploy/secrets" in dockerignore
    assert "*.keys.json" in dockerignore


# -------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_a_non_root_image_running_the_console_script() -> None:
    text = _read(DEPLOY / "Dockerfile")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert len(re.findall(r"^FROM \$\{PYTHON_IMAGE\} AS \w+$", text, re.MULTILINE)) == 2
    assert "pip wheel" in text
    assert re.search(r"^USER 10001(:10001)?$", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "PYTHONUNBUFFERED=1" in text

    def exec_form(instruction: str) -> list[str]:
        match = re.search(rf"^{instruction} (\[.*\])$", text, re.MULTILINE)
        assert match, instruction
        value: list[str] = json.loads(match[1])
        return value

    scripts = tomllib.loads(_read(ROOT / "pyproject.toml"))["project"]["scripts"]
    assert exec_form("ENTRYPOINT") == ["wearable-gateway"]
    assert scripts["wearable-gateway"] == "gateway.cli:main"
    command = exec_form("CMD")
    assert command == ["serve", "--host", "0.0.0.0"]  # noqa: S104  (inside a container)
    assert build_parser().parse_args(command).command == "serve"

    # The healthcheck is Python (no curl in the slim image) asking /healthz.
    healthcheck = text.split("HEALTHCHECK", 1)[1]
    probe = json.loads(re.search(r"CMD (\[.*\])", healthcheck)[1])  # type: ignore[index]
    assert probe[:2] == ["python", "-c"]
    assert "/healthz" in probe[2]
    assert "urllib.request" in probe[2]
    compile(probe[2], "<healthcheck>", "exec")


def test_deploy_readme_commands_parse() -> None:
    text = _read(DEPLOY / "README.md").replace("\\\n", " ")
    compose_run = re.compile(r"docker compose -f deploy/compose\.yaml run --rm gateway-\w+ (.*)")
    commands = []
    for line in text.splitlines():
        if match := compose_run.search(line):
            commands.append(match[1])
        elif line.strip().startswith("docker run") and "--help" not in line:
            commands.append(line.split(" wearable-gateway ", 1)[1])
    assert len(commands) >= 4
    for command in commands:
        build_parser().parse_args(shlex.split(command))


# ---------------------------------------------------------------------------- alerting rules


@pytest.fixture(scope="module")
def exported() -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> values, for every metric the gateway exports."""
    metrics = GatewayMetrics()
    metrics.readings.labels("native", "cn", "created").inc()
    metrics.rejections.labels("native", "cn", "unknown-subject").inc()
    metrics.request_duration.labels("/v1/ingest/{format}", "POST", "200").observe(0.01)
    metrics.batch_size.labels("cn").observe(1)
    metrics.enrolments.labels("cn", "enrolled").inc()
    metrics.export_ended("cn", "failed", {})
    metrics.export_ended("cn", "completed", {"Observation": 2})
    metrics.watch_pools(lambda: {"cn": (3, 1, 10, 0)})
    metrics.transaction_ended("cn", "subjects.insert", 0.01, "error")
    samples: dict[str, dict[str, set[str]]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return samples


def test_alert_rules_use_only_exported_metrics_and_labels(
    exported: dict[str, dict[str, set[str]]],
) -> None:
    text = _read(DEPLOY / "prometheus" / "rules.yaml")
    used = set(re.findall(r"\b(gateway_\w+)", text))
    assert used, "no gateway metric in the rules"
    assert used <= set(exported)
    for metric, selector in re.findall(r"\b(gateway_\w+)\{([^}]*)\}", text):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
            assert label in exported[metric], f"{metric} has no label {label}"
            if op == "=":
                assert value in exported[metric][label], f"{metric}{{{label}={value!r}}}"
    all_labels = {label for labels in exported.values() for label in labels} | {"job", "instance"}
    for clause in re.findall(r"\b(?:by|ignoring|on)\s*\(([^)]*)\)", text):
        assert {label.strip() for label in clause.split(",")} <= all_labels, clause


def test_alert_rules_cover_the_operational_risks() -> None:
    text = _read(DEPLOY / "prometheus" / "rules.yaml")
    alerts = re.split(r"^\s+- alert: ", text, flags=re.MULTILINE)[1:]
    by_name = {alert.split("\n", 1)[0].strip(): alert for alert in alerts}
    assert set(by_name) == {
        "GatewayDown",
        "GatewayHighErrorRate",
        "GatewayIngestRejectionSpike",
        "GatewayHighLatencyP99",
        "GatewayDatabasePoolSaturated",
        "GatewayExportJobsFailing",
        "GatewayDatabaseTransactionSlowP99",
    }
    for name, alert in by_name.items():
        for key in ("expr:", "for:", "severity:", "summary:", "description:"):
            assert key in alert, f"{name} has no {key}"
    assert 'status=~"5.."' in by_name["GatewayHighErrorRate"]
    assert "gateway_ingest_rejections_total" in by_name["GatewayIngestRejectionSpike"]
    assert "gateway_ingest_readings_total" in by_name["GatewayIngestRejectionSpike"]
    assert "by (zone, format)" in by_name["GatewayIngestRejectionSpike"]
    latency = by_name["GatewayHighLatencyP99"]
    assert "histogram_quantile(0.99," in latency
    assert "[10m]" in latency
    assert "> 0.25" in latency
    assert "> 0.9" in by_name["GatewayDatabasePoolSaturated"]
    assert 'outcome="failed"' in by_name["GatewayExportJobsFailing"]
    transaction = by_name["GatewayDatabaseTransactionSlowP99"]
    assert "histogram_quantile(0.99," in transaction
    assert "by (job, instance, zone, name, le)" in transaction


# ------------------------------------------------------------------------------------ OpenAPI


@pytest.fixture(scope="module")
def openapi() -> str:
    text = _read(SCHEMAS / "openapi.yaml")
    assert text.startswith("openapi: 3.1.")
    return text


@pytest.fixture(scope="module")
def operations(openapi: str) -> dict[tuple[str, str], str]:
    """(path, method) -> the operation's text."""
    result = {}
    for path, body in _children(openapi, "paths").items():
        for method, operation in _split(body, 4).items():
            result[(path, method)] = operation
    return result


def _statuses(operation: str) -> set[int]:
    responses = operation.split("responses:", 1)[1]
    return {int(s) for s in re.findall(r'^\s+"(\d{3})":', responses, re.MULTILINE)}


def _schema(openapi: str, name: str) -> str:
    return _split(_children(openapi, "components")["schemas"], 4)[name]


def _enum(schema: str) -> list[str]:
    inline = re.search(r"enum: \[([^\]]*)\]", schema)
    if inline:
        return [v.strip() for v in inline[1].split(",")]
    block = schema.split("enum:", 1)[1]
    return re.findall(r"^\s+- ([\w-]+)$", block, re.MULTILINE)


@pytest.fixture(scope="module")
def app() -> Any:
    settings = Settings(zones={"cn": ZoneSettings("cn", "postgresql://unused/db", Path("/unused"))})
    # No database is opened: zones connect on application start-up, which never happens here.
    return create_app(settings, keyrings={"cn": ZoneKeyRing.generate("cn")})


def test_openapi_describes_every_route_and_nothing_else(
    app: Any, operations: dict[tuple[str, str], str]
) -> None:
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert routes == set(operations)


def test_openapi_ingest_formats_media_types_and_statuses(
    app: Any, operations: dict[tuple[str, str], str]
) -> None:
    operation = operations[("/v1/ingest/{format}", "post")]
    adapters = app[ADAPTERS]
    param = operation.split("name: format", 1)[1].split("requestBody:", 1)[0]
    assert sorted(_enum(param)) == sorted(adapters)
    for adapter in adapters.values():
        for media_type in adapter.media_types:
            assert f"          {media_type}:" in operation
    assert '$ref: "./native-ingest.schema.json"' in operation

    def status(*outcomes: Outcome) -> int:
        rejection = Rejection(RejectionCode.UNKNOWN_SUBJECT, "x")
        result = IngestResult(
            outcomes=[
                ReadingOutcome(i, o, rejection=rejection if o is Outcome.REJECTED else None)
                for i, o in enumerate(outcomes)
            ],
            stored_rows=0,
        )
        return ingest_web._status(result)

    produced = {
        status(Outcome.CREATED, Outcome.DUPLICATE),
        status(Outcome.CREATED, Outcome.REJECTED),
        status(Outcome.REJECTED),
    }
    assert produced == {200, 207, 422}
    assert produced <= _statuses(operation)
    assert 201 in _statuses(operations[("/v1/subjects", "post")])
    assert _statuses(operations[("/readyz", "get")]) == {200, 503}


def _error_classes() -> list[type[GatewayError]]:
    found: list[type[GatewayError]] = []
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    # Start-up errors (configuration, schema version) and operator commands' own (a table busy
    # for `keys retire`) never answer a request.
    return [cls for cls in found if not issubclass(cls, (ConfigurationError, TableBusy))]


def test_openapi_lists_every_request_error(
    openapi: str, operations: dict[tuple[str, str], str]
) -> None:
    codes = set(_enum(_schema(openapi, "ErrorCode")))
    statuses = set().union(*(_statuses(op) for op in operations.values()))
    for cls in _error_classes():
        assert cls.code in codes, cls.__name__
        assert cls.status in statuses, cls.__name__
    api = [op for (path, _), op in operations.items() if path.startswith("/v1/")]
    for operation in api:
        assert {400, 401, 403, 413, 415, 421, 500, 503} <= _statuses(operation)


def test_openapi_error_body_matches_rendered_errors(openapi: str) -> None:
    body = orjson.loads(error_response(GatewayError("x"), "req-12345").body)  # type: ignore[arg-type]
    schema = _schema(openapi, "Error")
    assert f"required: [{', '.join(body)}]" in schema
    assert f"required: [{', '.join(body['error'])}]" in schema


def test_openapi_ingest_result_matches_rendered_results(openapi: str) -> None:
    rejection = Rejection(RejectionCode.OUT_OF_RANGE, "x")
    result = IngestResult(
        outcomes=[
            ReadingOutcome(0, Outcome.CREATED, observation_id="o1-x"),
            ReadingOutcome(1, Outcome.REJECTED, rejection=rejection),
        ],
        stored_rows=1,
    )
    body = ingest_web._body(result, "req-12345", "cn")
    schema = _schema(openapi, "IngestResult")
    assert f"required: [{', '.join(body)}]" in schema
    assert f"required: [{', '.join(body['summary'])}]" in schema  # type: ignore[arg-type]
    reading = _schema(openapi, "ReadingResult")
    for entry in body["results"]:  # type: ignore[attr-defined]
        for key in entry:
            assert f"        {key}:" in reading
    assert sorted(_enum(reading)) == sorted(o.value for o in Outcome)


def test_openapi_enumerates_rejection_codes_and_enrolment_values(openapi: str) -> None:
    assert _enum(_schema(openapi, "RejectionCode")) == [code.value for code in RejectionCode]
    enrolment = _schema(openapi, "Enrolment")
    sex = enrolment.split("sex:", 1)[1]
    assert _enum(sex) == [s.value for s in Sex]
    assert "minItems: 1" in enrolment
    assert "maxItems: 20" in enrolment
    for field_name in ("zone", "site", "identifiers", "birth_date", "sex", "consent"):
        assert f"        {field_name}:" in enrolment
    assert "required: [zone, pseudonym, reference]" in _schema(openapi, "Enrolled")


def test_openapi_bearer_format_is_the_issued_api_key_format(openapi: str) -> None:
    assert "scheme: bearer" in openapi
    assert "bearerFormat: wgk_<zone>_<keyid>_<secret>" in openapi
    token = issue_api_key("cn").token
    assert re.fullmatch(r"wgk_[a-z][a-z0-9]{0,15}_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)


def test_openapi_references_the_native_ingest_schema() -> None:
    native = json.loads(_read(SCHEMAS / "native-ingest.schema.json"))
    jsonschema.Draft202012Validator.check_schema(native)
    assert "reading" in native["$defs"]
