"""Settings from TOML and the environment; secrets from *_FILE paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.settings import load_settings


def test_environment_settings_with_a_database_url_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "cn_url"
    secret.write_text("postgresql://gw:s3cret@db-cn/gateway\n")
    settings = load_settings(
        {
            "GATEWAY_ZONES": "cn",
            "GATEWAY_ZONE_CN_DATABASE_URL_FILE": str(secret),
            "GATEWAY_ZONE_CN_KEY_FILE": "/keys/cn.json",
            "GATEWAY_PORT": "9000",
        }
    )
    assert settings.zones["cn"].database_url == "postgresql://gw:s3cret@db-cn/gateway"
    assert settings.zones["cn"].key_file == Path("/keys/cn.json")
    assert settings.port == 9000
    assert "s3cret" not in repr(settings)


def test_the_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[server]\nport = 8000\nmax_readings = 50\n"
        '[zones.eu]\ndatabase_url = "postgresql://db-eu/gateway"\nkey_file = "/keys/eu.json"\n'
    )
    settings = load_settings({"GATEWAY_PORT": "8001"}, config_path=config)
    assert list(settings.zones) == ["eu"]
    assert settings.port == 8001
    assert settings.max_readings == 50


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no zone"),
        ({"GATEWAY_ZONES": "cn"}, "GATEWAY_ZONE_CN_DATABASE_URL"),
        ({"GATEWAY_ZONES": "cn", "GATEWAY_ZONE_CN_DATABASE_URL": "postgresql://x/y"}, "KEY_FILE"),
        (
            {
                "GATEWAY_ZONES": "CN!",
                "GATEWAY_ZONE_CN!_DATABASE_URL": "x",
                "GATEWAY_ZONE_CN!_KEY_FILE": "k",
            },
            "zone name",
        ),
        (
            {
                "GATEWAY_ZONES": "cn",
                "GATEWAY_ZONE_CN_DATABASE_URL": "x",
                "GATEWAY_ZONE_CN_KEY_FILE": "k",
                "GATEWAY_PORT": "eighty",
            },
            "port",
        ),
        (
            {
                "GATEWAY_ZONES": "cn",
                "GATEWAY_ZONE_CN_DATABASE_URL_FILE": "/nonexistent/url",
                "GATEWAY_ZONE_CN_KEY_FILE": "k",
            },
            "cannot read",
        ),
    ],
)
def test_incomplete_settings_are_refused_with_a_clear_message(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(environ)


def test_a_misspelt_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\nprot = 8000\n")
    with pytest.raises(ConfigurationError, match="prot"):
        load_settings({}, config_path=config)


def test_migrate_needs_no_key_file() -> None:
    settings = load_settings(
        {"GATEWAY_ZONES": "cn", "GATEWAY_ZONE_CN_DATABASE_URL": "postgresql://db/x"},
        require_keys=False,
    )
    assert settings.zones["cn"].key_file is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("GATEWAY_POOL_MIN_SIZE", "50"), ("GATEWAY_LOG_LEVEL", "chatty"), ("GATEWAY_PORT", "70000")],
)
def test_out_of_range_values_are_refused(name: str, value: str) -> None:
    environ = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": "x",
        "GATEWAY_ZONE_CN_KEY_FILE": "k",
        name: value,
    }
    with pytest.raises(ConfigurationError):
        load_settings(environ)
