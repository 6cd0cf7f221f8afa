"""Settings: defaults, the TOML file, environment overrides, and errors that name key and source."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from digest.core.errors import ConfigError
from digest.core.settings import (
    ApiSettings,
    DeliverySettings,
    DigestConfig,
    DkimSettings,
    MetricsSettings,
    ProviderLimits,
    ServiceSettings,
    Settings,
    WarmupSettings,
    WebhooksSettings,
    WebSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "config" / "digest.toml"
SECRET = "hunter2-Sup3rSecret"

WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DIGEST_* setting from the outer environment, and no config/digest.toml in the cwd."""
    for key in list(os.environ):
        if key.startswith("DIGEST_") and not key.startswith("DIGEST_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write TOML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "digest.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def config_error(path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value


# ---------------------------------------------------------------- sources


def test_defaults_load_without_a_file() -> None:
    settings = load_settings()

    assert settings == Settings()
    assert settings.base_url == "http://localhost:8000"
    assert list(settings.digests) == ["daily"]
    assert settings.digests["daily"].lookback == timedelta(hours=24)


def test_toml_file_is_read(write_config: WriteConfig) -> None:
    path = write_config(
        'base_url = "https://news.example.com/"\n'
        "batch_size = 50\n"
        'retry_base = "90m"\n'
        "[digests.morning]\n"
        'title = "Morning"\n'
        'timezone = "Europe/Berlin"\n'
        'sections = ["World", "Science"]\n'
    )

    settings = load_settings(path)

    assert settings.base_url == "https://news.example.com"
    assert settings.batch_size == 50
    assert settings.retry_base == timedelta(minutes=90)
    assert list(settings.digests) == ["morning"]
    assert settings.digests["morning"].timezone == "Europe/Berlin"
    assert settings.digests["morning"].sections == ["World", "Science"]


def test_digest_config_env_var_picks_the_file(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config('from_addr = "News <news@example.org>"\n', name="elsewhere.toml")
    monkeypatch.setenv("DIGEST_CONFIG", str(path))

    assert load_settings().from_addr == "News <news@example.org>"


def test_default_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "digest.toml").write_text("batch_size = 7\n", encoding="utf-8")

    assert load_settings().batch_size == 7


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        ("DIGEST_SMTP_URL", "smtp://mail.example.net:2525", "smtp_url", "smtp://mail.example.net:2525"),
        ("DIGEST_DATABASE_URL", "sqlite:///elsewhere.db", "database_url", "sqlite:///elsewhere.db"),
        ("DIGEST_SECRET_KEY", "from-the-env", "secret_key", "from-the-env"),
        ("DIGEST_BASE_URL", "https://env.example.com", "base_url", "https://env.example.com"),
    ],
)
def test_environment_overrides_the_file(
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    value: str,
    attr: str,
    expected: str,
) -> None:
    path = write_config(
        'smtp_url = "smtp://file.example.com:25"\n'
        'database_url = "sqlite:///file.db"\n'
        'secret_key = "from-the-file"\n'
        'base_url = "https://file.example.com"\n'
    )
    monkeypatch.setenv(var, value)

    got = getattr(load_settings(path), attr)

    assert (got.get_secret_value() if hasattr(got, "get_secret_value") else got) == expected


def test_nested_environment_variable_overrides_one_digest_key(
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_config('[digests.daily]\ntitle = "From the file"\nmax_articles = 30\n')
    monkeypatch.setenv("DIGEST_DIGESTS__DAILY__MAX_ARTICLES", "5")

    daily = load_settings(path).digests["daily"]

    assert daily.max_articles == 5
    assert daily.title == "From the file"  # the rest of the table still comes from the file


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[digests.daily]\nmax_articles = 0\n", "digests.daily.max_articles"),
        ('[digests.daily]\ntimezone = "Mars/Base"\n', "digests.daily.timezone"),
        ('[digests.daily]\nlookback = "soon"\n', "digests.daily.lookback"),
        ('base_url = "not-a-url"\n', "base_url"),
    ],
)
def test_bad_value_in_file_names_key_and_file(write_config: WriteConfig, toml: str, key: str) -> None:
    path = write_config(toml)

    exc = config_error(path)

    assert exc.key == key
    assert exc.source == str(path)
    assert key in str(exc) and str(path) in str(exc)


def test_bad_value_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_DIGESTS__DAILY__TIMEZONE", "Mars/Base")

    exc = config_error()

    assert exc.key == "digests.daily.timezone"
    assert "DIGEST_DIGESTS__DAILY__TIMEZONE" in str(exc)


def test_malformed_json_in_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_DIGESTS", "{not json")

    exc = config_error()

    assert "DIGEST_DIGESTS" in str(exc)


def test_toml_syntax_error_names_file_and_line(write_config: WriteConfig) -> None:
    path = write_config('base_url = "https://news.example.com"\nbatch_size = \n')

    message = str(config_error(path))

    assert str(path) in message
    assert re.search(r"\bline 2\b", message)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    message = str(config_error(missing))

    assert "not found" in message and str(missing) in message


def test_missing_file_named_by_digest_config_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "nope.toml"))

    assert "not found" in str(config_error())


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('smtp_ulr = "smtp://127.0.0.1:25"\n', "smtp_ulr"),
        ('[digests.daily]\ntitel = "Typo"\n', "digests.daily.titel"),
    ],
)
def test_unknown_key_is_an_error_naming_it(write_config: WriteConfig, toml: str, key: str) -> None:
    path = write_config(toml)

    exc = config_error(path)

    assert exc.key == key
    assert key in str(exc)


@pytest.mark.parametrize(
    "toml",
    [
        f'smtp_url = {{ host = "mail.example.com", password = "{SECRET}" }}\n',
        f'secret_key = ["{SECRET}"]\n',
        f'smtp_url = "smtp://user:{SECRET}@mail.example.com:25"\nsmtp_timeout = "{SECRET}"\n',
    ],
    ids=["smtp-url-table", "secret-key-list", "bad-timeout-next-to-password"],
)
def test_secret_never_appears_in_error(write_config: WriteConfig, toml: str) -> None:
    exc = config_error(write_config(toml))

    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)


def test_secret_from_environment_never_appears_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://user:{SECRET}@mail.example.com:25")
    monkeypatch.setenv("DIGEST_SMTP_TIMEOUT", SECRET)

    exc = config_error()

    assert exc.key == "smtp_timeout"
    assert SECRET not in str(exc)


def test_secrets_do_not_leak_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://user:{SECRET}@mail.example.com:25")
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)

    settings = load_settings()

    assert settings.secret_key.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


# ---------------------------------------------------------------- documentation


def documented_keys() -> set[str]:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    return set(re.findall(r"^#\s*([a-z][a-z0-9_]*):\s*\S", text, flags=re.MULTILINE))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (model, n)
        for model in (
            Settings,
            DigestConfig,
            ServiceSettings,
            DeliverySettings,
            ProviderLimits,
            WarmupSettings,
            WebSettings,
            DkimSettings,
            ApiSettings,
            WebhooksSettings,
            MetricsSettings,
        )
        for n in model.model_fields
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_every_field_is_documented(model: type, name: str) -> None:
    field = model.model_fields[name]  # type: ignore[attr-defined]

    assert field.description and field.description.strip(), f"{model.__name__}.{name} has no description"
    assert name in documented_keys(), f"config/digest.toml has no '# {name}: ...' comment"


def test_shipped_config_loads_and_sets_only_defaults() -> None:
    loaded = load_settings(SHIPPED_CONFIG)
    defaults = Settings()
    data = tomllib.loads(SHIPPED_CONFIG.read_text(encoding="utf-8"))

    for key in data.keys() - {"digests"}:
        assert getattr(loaded, key) == getattr(defaults, key), key
    for key in data["service"]:
        assert getattr(loaded.service, key) == getattr(defaults.service, key), f"service.{key}"
    default_digest = DigestConfig()
    for name, table in data["digests"].items():
        for key in table:
            assert getattr(loaded.digests[name], key) == getattr(default_digest, key), f"digests.{name}.{key}"
    assert loaded == defaults


def test_service_settings_come_from_their_table_and_the_environment(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config('[service]\ntick = "30s"\nlog_format = "json"\n')
    monkeypatch.setenv("DIGEST_SERVICE__FEED_MAX_BYTES", "2048")

    settings = load_settings(path)

    assert settings.service.tick == timedelta(seconds=30)
    assert settings.service.log_format == "json"
    assert settings.service.feed_max_bytes == 2048


def test_bad_service_value_names_the_nested_key(write_config: WriteConfig) -> None:
    exc = config_error(write_config('[service]\nlog_format = "xml"\n'))

    assert exc.key == "service.log_format"


def test_nested_section_is_read_from_its_table_and_the_environment(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        "[web]\nenabled = true\nport = 8100\n"
        '[dkim]\nselector = "s1"\ndomain = "example.com"\nprivate_key_file = "k.pem"\nfeedback_id = "d:x"\n'
    )
    monkeypatch.setenv("DIGEST_WEB__PORT", "8200")

    settings = load_settings(path)

    assert settings.web.enabled is True
    assert settings.web.port == 8200
    assert settings.dkim.selector == "s1"
    assert settings.dkim.feedback_id == "d:x"
    assert settings.dkim.enabled


def test_dkim_needs_selector_domain_and_key_together(write_config: WriteConfig) -> None:
    path = write_config('[dkim]\nselector = "s1"\n')

    error = config_error(path)

    assert error.key == "dkim"
    assert "set together" in str(error)


def test_a_provider_table_overrides_the_published_defaults_key_by_key(write_config: WriteConfig) -> None:
    path = write_config("[delivery.providers.yahoo]\nper_minute = 30\n")

    providers = load_settings(path).delivery.providers

    assert (providers["yahoo"].per_minute, providers["yahoo"].max_per_connection) == (30, 20)
    assert providers["google"].deferral_pause == timedelta(minutes=10)


def test_an_unknown_provider_is_an_error_naming_the_known_ones(write_config: WriteConfig) -> None:
    error = config_error(write_config("[delivery.providers.gmail]\nper_minute = 30\n"))

    assert error.key == "delivery.providers"
    assert "'gmail'" in str(error) and "google" in str(error)


# ---------------------------------------------------------------- warm-up


def test_warmup_table_is_read_with_a_toml_date(write_config: WriteConfig) -> None:
    path = write_config("[delivery.warmup]\nenabled = true\nstart_date = 2026-12-01\nstart = 50\ndays = 10\n")

    warmup = load_settings(path).delivery.warmup

    assert (warmup.enabled, warmup.start_date, warmup.start, warmup.days, warmup.full) == (
        True, date(2026, 12, 1), 50, 10, 0,
    )  # fmt: skip


def test_warmup_start_date_comes_from_the_environment_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_DELIVERY__WARMUP__ENABLED", "true")
    monkeypatch.setenv("DIGEST_DELIVERY__WARMUP__START_DATE", "2026-12-01")

    assert load_settings().delivery.warmup.start_date == date(2026, 12, 1)


def test_warmup_enabled_without_start_date_names_the_key(write_config: WriteConfig) -> None:
    path = write_config("[delivery.warmup]\nenabled = true\n")

    error = config_error(path)

    assert error.key == "delivery.warmup.start_date"
    assert "required when delivery.warmup.enabled is true" in error.problem and error.source == str(path)


def test_warmup_off_needs_no_start_date() -> None:
    assert WarmupSettings().start_date is None
