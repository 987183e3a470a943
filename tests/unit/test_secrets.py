"""Secrets are never printed: the URL masking over every URL shape Slipstream takes, the settings' repr, dumps and
error messages, and the command line itself (stdout and stderr of real `slipstream` processes) with known
passwords in every credential-bearing variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from slipstream.exceptions import ConfigError
from slipstream.features.exceptions import DefinitionError, OnlineStoreError
from slipstream.features.feast_repo import redis_connection_string
from slipstream.features.redis_client import parse_redis_url
from slipstream.schemas.secrets import MASK, mask_config, mask_url, mask_urls
from slipstream.settings import load_settings

PASSWORD = "Pw-7f3a9c-LEAKCHECK"  # noqa: S105 - a marker the tests look for in what is printed
TOKENS = ("tok-A-0123456789abcdef-LEAKCHECK", "tok-B-fedcba9876543210-LEAKCHECK")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:pw@h:6379/0", "redis://user:***@h:6379/0"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://default:pw@cache.example.com:6380/2", "rediss://default:***@cache.example.com:6380/2"),
        ("redis+cluster://u:pw@h1:7000,h2:7001", "redis+cluster://u:***@h1:7000,h2:7001"),
        ("rediss+cluster://u:pw@h1:7000,h2:7001/0", "rediss+cluster://u:***@h1:7000,h2:7001/0"),
        ("http://u:pw@registry:8081", "http://u:***@registry:8081"),
        ("https://key:secret@psrc-1.confluent.cloud/", "https://key:***@psrc-1.confluent.cloud/"),
        ("https://tok123@mlflow.example.com/api", "https://***@mlflow.example.com/api"),  # a lone user part: a token
        ("http://u:p%40ss%2Fw@h:1/x", "http://u:***@h:1/x"),  # percent-encoded
        ("redis://u:p@ss@h:1/0", "redis://u:***@h:1/0"),  # an unencoded @ in the password
        ("redis://u:pa/ss@h:1/0", "redis://u:***@h:1/0"),  # an unencoded / in the password: masked, not cut
        ("redis://u:pa:ss@h:1/0", "redis://u:***@h:1/0"),
        ("http://h:5000/x?user=me&password=pw&db=1", "http://h:5000/x?user=me&password=***&db=1"),
        ("https://h/api?api_key=k1&token=t1#frag", "https://h/api?api_key=***&token=***#frag"),
    ],
)
def test_mask_url_hides_the_password_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(masked) == masked  # masking twice changes nothing


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis+cluster://127.0.0.1:7100,127.0.0.1:7101",
        "sqlite:////tmp/state/mlflow.db",
        "http://h/path?email=someone@example.com",
        "unix:///run/redis.sock?db=1",
        "not a url",
        "",
    ],
)
def test_mask_url_leaves_urls_without_credentials_alone(url: str) -> None:
    assert mask_url(url) == url


def test_mask_urls_masks_every_url_in_a_message() -> None:
    text = f"cannot reach 'redis://u:{PASSWORD}@h:1/0' nor http://k:{PASSWORD}@r:8081/subjects (refused)"
    shown = mask_urls(text)
    assert PASSWORD not in shown
    assert shown == "cannot reach 'redis://u:***@h:1/0' nor http://k:***@r:8081/subjects (refused)"
    assert mask_urls("no url here: a:b@c") == "no url here: a:b@c"


def test_mask_config_hides_credential_keys_and_urls() -> None:
    config = {
        "bootstrap.servers": "b1:9092,b2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": PASSWORD,
        "ssl.key.password": PASSWORD,
        "sasl.oauthbearer.client.secret": PASSWORD,
        "sasl.jaas.config": f'org.apache.kafka...ScramLoginModule required username="svc" password="{PASSWORD}";',
        "basic.auth.user.info": f"key:{PASSWORD}",
        "url": f"https://key:{PASSWORD}@registry",
        "linger.ms": 5,
    }
    shown = mask_config(config)
    assert PASSWORD not in repr(shown)
    assert shown["sasl.password"] == shown["basic.auth.user.info"] == shown["sasl.jaas.config"] == MASK
    assert shown["url"] == "https://key:***@registry"
    assert {k: shown[k] for k in ("bootstrap.servers", "sasl.username", "linger.ms")} == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "sasl.username": "svc",
        "linger.ms": 5,
    }
    assert config["sasl.password"] == PASSWORD  # a copy: the client still gets the real value


def test_redis_url_errors_never_quote_the_password() -> None:
    for bad in (f"redis+cluster://me:{PASSWORD}@h:1/5", f"redis+cluster://me:{PASSWORD}@h:x"):
        with pytest.raises(OnlineStoreError) as info:
            parse_redis_url(bad)
        assert PASSWORD not in str(info.value) and "me:***@" in str(info.value)
    for bad in (f"redis://me:{PASSWORD}@h:99999/0", f"redis://me:{PASSWORD[:6]}/{PASSWORD[6:]}@h:1/0"):
        with pytest.raises(DefinitionError) as info:
            redis_connection_string(bad)
        assert PASSWORD[:6] not in str(info.value) and PASSWORD[6:] not in str(info.value)


# ------------------------------------------------------------------------------------------------ settings


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://app:{PASSWORD}@cache:6379/0")
    monkeypatch.setenv("SLIPSTREAM_SCHEMA_REGISTRY_URL", f"https://key:{PASSWORD}@registry:8081")
    monkeypatch.setenv("SLIPSTREAM_MLFLOW_TRACKING_URI", f"https://ml:{PASSWORD}@mlflow:5000")
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS", ",".join(TOKENS))


@pytest.mark.usefixtures("secret_env")
def test_settings_repr_and_dumps_show_no_secret() -> None:
    settings = load_settings()
    for shown in (repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert PASSWORD not in shown
        assert not any(token in shown for token in TOKENS)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == f"redis://app:{PASSWORD}@cache:6379/0"
    assert [t.get_secret_value() for t in settings.accepted_scorer_tokens] == list(TOKENS)


def test_tokens_come_comma_separated_or_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLIPSTREAM_SCORER_TOKENS", raising=False)
    monkeypatch.delenv("SLIPSTREAM_SCORER_TOKENS_FILE", raising=False)
    assert load_settings().accepted_scorer_tokens == ()  # none: the scorer is open
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS", f" {TOKENS[0]} , {TOKENS[1]},")
    assert [t.get_secret_value() for t in load_settings().accepted_scorer_tokens] == list(TOKENS)
    monkeypatch.delenv("SLIPSTREAM_SCORER_TOKENS")
    path = tmp_path / "tokens"
    path.write_text(f"# rotated 2026-12-01\n{TOKENS[0]}\n\n  {TOKENS[1]}  \n")
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS_FILE", str(path))
    settings = load_settings()
    assert [t.get_secret_value() for t in settings.accepted_scorer_tokens] == list(TOKENS)
    assert settings.scorer_tokens == ()
    assert not any(token in repr(settings) for token in TOKENS)


def test_bad_tokens_are_refused_without_being_quoted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    weak = "short-LEAK"
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS", f"{TOKENS[0]},{weak}")
    with pytest.raises(ConfigError, match=r"SLIPSTREAM_SCORER_TOKENS='\*\*\*'.*token 2 of 2 .*at least 16") as info:
        load_settings()
    assert weak not in str(info.value) and TOKENS[0] not in str(info.value)
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS", f"{TOKENS[0]} with-a-space-LEAK")
    with pytest.raises(ConfigError, match="token 1 of 1") as info:
        load_settings()
    assert "LEAK" not in str(info.value)
    path = tmp_path / "tokens"
    path.write_text(f"{TOKENS[1]}\n")
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS_FILE", str(path))
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS", TOKENS[0])
    with pytest.raises(ConfigError, match="both set: choose one"):
        load_settings()
    monkeypatch.delenv("SLIPSTREAM_SCORER_TOKENS")
    for content, reason in (("# nothing\n\n", "holds no token"), (f"{weak}\n", "token 1 of 1")):
        path.write_text(content)
        with pytest.raises(ConfigError, match=reason) as info:
            load_settings()
        assert weak not in str(info.value)
    monkeypatch.setenv("SLIPSTREAM_SCORER_TOKENS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot be read: FileNotFoundError"):
        load_settings()


def test_a_bad_secret_url_is_quoted_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"http://app:{PASSWORD}@cache:6379/0")
    with pytest.raises(ConfigError, match=r"SLIPSTREAM_REDIS_URL='http://app:\*\*\*@cache:6379/0'.*redis://") as info:
        load_settings()
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in str(info.value.__cause__)  # the chained ValidationError hides inputs too


def test_model_copy_keeps_secrets_secret() -> None:
    settings = load_settings(redis_url=f"redis://u:{PASSWORD}@h:1/0")
    copied = settings.model_copy(update={"redis_url": SecretStr(f"redis://u:{PASSWORD}@h:2/0")})
    assert PASSWORD not in repr(copied)


# ------------------------------------------------------------------------------------------------ the command line


def _cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def _leak_env(tmp_path: Path) -> dict[str, str]:
    return {
        "REDIS_URL": f"redis://app:{PASSWORD}@127.0.0.1:1/0",
        "SLIPSTREAM_SCHEMA_REGISTRY_URL": f"https://key:{PASSWORD}@registry.invalid:8081",
        "SLIPSTREAM_MLFLOW_TRACKING_URI": f"https://ml:{PASSWORD}@mlflow.invalid:5000",
        "SLIPSTREAM_SCORER_TOKENS": ",".join(TOKENS),
        "SLIPSTREAM_STATE_DIR": str(tmp_path / "state"),  # no platform there: status says so, nothing starts
        "SLIPSTREAM_BACKEND": "local",
    }


def _assert_no_secret(output: str) -> None:
    for secret in (PASSWORD, *TOKENS):
        assert secret not in output, output
    assert "LEAKCHECK" not in output, output


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("serve", "--help"),
        ("infra", "status", "--help"),
        ("infra", "status", "--json"),
        ("infra", "status"),
    ],
)
def test_commands_print_no_secret(args: tuple[str, ...], tmp_path: Path) -> None:
    code, output = _cli(*args, env=_leak_env(tmp_path), cwd=tmp_path)
    _assert_no_secret(output)
    if args[-1] == "--help":
        assert code == 0 and "Usage" in output
    if "serve" in args:
        assert "SLIPSTREAM_SCORER_TOKENS" in output and "401" in output  # the help says how auth works
    if args[-1] == "--json":
        assert code == 0 and '"redis"' in output


def test_a_bad_redis_url_fails_without_printing_its_password(tmp_path: Path) -> None:
    env = {**_leak_env(tmp_path), "REDIS_URL": f"tcp://app:{PASSWORD}@127.0.0.1:1/0"}
    code, output = _cli("infra", "status", "--json", env=env, cwd=tmp_path)
    assert code == 1
    assert "SLIPSTREAM_REDIS_URL='tcp://app:***@127.0.0.1:1/0'" in output
    _assert_no_secret(output)


def test_a_bad_token_fails_without_printing_it(tmp_path: Path) -> None:
    env = {**_leak_env(tmp_path), "SLIPSTREAM_SCORER_TOKENS": f"{TOKENS[0]},LEAKCHECK"}
    code, output = _cli("serve", "--port", "1", env=env, cwd=tmp_path)
    assert code == 1 and "token 2 of 2" in output
    _assert_no_secret(output)
