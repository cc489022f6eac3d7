"""Config items and environment overrides, the error hierarchy, the public surface, the CLI."""

import os
import subprocess
import sys

import pytest

import ember
from ember import errors
from ember.config import Config, ConfigError


def test_defaults_and_sources():
    cfg = Config(use_environment=False)
    assert cfg.SERIALIZER == "msgpack" and cfg.NS_PORT == 9090 and cfg.MAX_MESSAGE_SIZE == 2**30
    assert cfg.source("NS_PORT") == "default"
    cfg.NS_PORT = 1
    assert cfg.source("NS_PORT") == "set in code"
    with pytest.raises(ConfigError, match="no config item 'NO_SUCH'"):
        cfg.NO_SUCH = 1


@pytest.mark.parametrize(
    "var, text, item, value",
    [
        ("PYRO_COMMTIMEOUT", "2.5", "COMMTIMEOUT", 2.5),
        ("PYRO_NS_PORT", "1234", "NS_PORT", 1234),
        ("PYRO_COMPRESSION", "yes", "COMPRESSION", True),
        ("PYRO_SOCK_NODELAY", "off", "SOCK_NODELAY", False),
        ("PYRO_BROADCAST_ADDRS", "127.255.255.255, 10.0.0.255", "BROADCAST_ADDRS", ["127.255.255.255", "10.0.0.255"]),
        ("PYRO_NATHOST", "example.org", "NATHOST", "example.org"),
    ],
)
def test_environment_typed(monkeypatch, var, text, item, value):
    monkeypatch.setenv(var, text)
    cfg = Config()
    assert getattr(cfg, item) == value and var in cfg.source(item)


def test_environment_bad_value_and_unknown_name(monkeypatch):
    monkeypatch.setenv("PYRO_NS_PORT", "ninety")
    with pytest.raises(ConfigError, match="PYRO_NS_PORT"):
        Config()
    monkeypatch.delenv("PYRO_NS_PORT")
    monkeypatch.setenv("PYRO_NOT_AN_ITEM", "1")
    cfg = Config()
    assert "PYRO_NOT_AN_ITEM" in cfg.unknown_environment() and "PYRO_NOT_AN_ITEM" in cfg.dump()


def test_copy_reset_override():
    cfg = Config(use_environment=False)
    other = cfg.copy()
    other.COMMTIMEOUT = 9.0
    assert cfg.COMMTIMEOUT == 0.0
    with cfg.override(COMMTIMEOUT=1.0):
        assert cfg.COMMTIMEOUT == 1.0
    assert cfg.COMMTIMEOUT == 0.0
    cfg.COMMTIMEOUT = 5
    cfg.reset(use_environment=False)
    assert cfg.COMMTIMEOUT == 0.0


def test_error_hierarchy():
    assert issubclass(errors.TimeoutError, errors.ConnectionClosedError)
    assert issubclass(errors.ConnectionClosedError, errors.CommunicationError)
    assert issubclass(errors.MessageTooLargeError, errors.ProtocolError)
    assert issubclass(errors.SerializeError, errors.ProtocolError)
    assert issubclass(errors.ConnectionDeniedError, errors.CommunicationError)
    for name in ("NamingError", "DaemonError", "SecurityError", "CommunicationError"):
        assert issubclass(getattr(errors, name), errors.PyroError)
    exc = errors.ConnectionDeniedError("too busy", errors.DENY_BUSY)
    assert exc.code == 1 and exc.reason == "too busy"


def test_remote_traceback_and_excepthook(capsys):
    exc = ValueError("x")
    assert errors.remote_traceback(exc) == ""
    exc._pyroTraceback = ["Traceback (most recent call last):\n", "ValueError: x\n"]
    assert "ValueError: x" in errors.remote_traceback(exc)
    errors.excepthook(ValueError, exc, None)
    err = capsys.readouterr().err
    assert "Remote traceback" in err and " | ValueError: x" in err


def test_detailed_traceback_has_locals():
    def fail():
        secret_local = 42  # noqa: F841
        raise RuntimeError("boom")

    try:
        fail()
    except RuntimeError:
        lines = errors.format_traceback(detailed=True)
    text = "".join(lines)
    assert "secret_local = 42" in text and "RuntimeError: boom" in text


def test_public_all_is_sorted_and_complete():
    assert ember.__all__ == sorted(ember.__all__)
    for name in ember.__all__:
        assert hasattr(ember, name), name


def test_cli_version_and_config():
    env = dict(os.environ, PYRO_COMMTIMEOUT="4")
    out = subprocess.run([sys.executable, "-m", "ember.cli", "--version"], capture_output=True, text=True, check=True)
    assert ember.__version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "ember.cli", "config"], capture_output=True, text=True, env=env, check=True)
    assert "COMMTIMEOUT" in out.stdout and "environment (PYRO_COMMTIMEOUT)" in out.stdout
