"""Settings: unknown names rejected, secrets hidden, every field documented with its default."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from spanline.errors import ConfigError
from spanline.settings import Settings, load_settings
from spanline.streams.app import faust_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_unknown_spanline_variables_are_rejected_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match=r"SPANLINE_RAW_TTL_DAY.*known settings: .*SPANLINE_RAW_TTL_DAYS"):
        load_settings({"SPANLINE_RAW_TTL_DAY": "3"})


def test_defaults_are_the_embedded_stack(tmp_path: Path) -> None:
    settings = load_settings({"SPANLINE_HOME": str(tmp_path)})
    assert settings.embedded_kafka and settings.embedded_clickhouse
    assert settings.resolved_clickhouse_url == f"chdb://{tmp_path}/clickhouse"
    server = load_settings({"SPANLINE_CLICKHOUSE_URL": "http://ch:8123", "SPANLINE_KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert not server.embedded_clickhouse and server.bootstrap_servers == "k:9092"


def test_secrets_never_print() -> None:
    settings = load_settings({"SPANLINE_API_KEYS": '{"acme": "sk-very-secret"}', "SPANLINE_USER_ID_SALT": "pepper"})
    assert "sk-very-secret" not in repr(settings) and "pepper" not in repr(settings)
    assert settings.api_keys["acme"].get_secret_value() == "sk-very-secret"


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ValueError, match="clickhouse_url"):
        load_settings({"SPANLINE_CLICKHOUSE_URL": "mysql://x"})


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_field_is_documented_with_its_default_in_code_and_readme(name: str) -> None:
    description = Settings.model_fields[name].description or ""
    assert "Default" in description, f"{name}: say the default in the description"
    assert f"`SPANLINE_{name.upper()}`" in README.read_text(), f"README's configuration table lacks {name}"


def test_the_worker_prefetches_two_batches_not_fausts_default(tmp_path: Path) -> None:
    """Faust's default stream buffer (4,096 messages of up to 500 spans) held 2.5 GB under a
    backlog; the worker's app is configured for two of its batches, and Faust takes the setting."""
    settings = load_settings({"SPANLINE_HOME": str(tmp_path), "SPANLINE_BATCH_MAX_MESSAGES": "50"})
    app = faust.App("prefetch-test", **faust_settings(settings))
    assert app.conf.stream_buffer_maxsize == 100
