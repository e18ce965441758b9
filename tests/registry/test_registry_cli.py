"""``piimw optout get|set|clear`` through argparse, as piimw.cli will call it."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import orjson
import pytest
from registry_support import KEY

from piimw.cli import build_parser
from piimw.cli_optout import run
from piimw.registry import Registry
from piimw.transform import Hasher


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_set_get_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.setenv("PIIMW_HASH_KEY_ID", "t1")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    args = _parse(["optout", "set", "--registry", url, "--user-stdin", "--opt-out", "marketing",
                   "--opt-out-category", "email"])
    out = io.StringIO()
    assert run(args, stdin=io.StringIO("jane@example.com\n"), stdout=out) == 0
    doc = orjson.loads(out.getvalue())
    assert "jane" not in out.getvalue()
    subject = doc["subject"]
    assert subject.startswith("hmac:t1.registry:")
    assert [u["name"] for u in doc["opted_out"]["uses"]] == ["marketing"]
    assert doc["opted_out"]["uses"][0]["signals"] == ["cli"]

    with Registry(url, Hasher(KEY, "t1")) as registry:
        assert registry.subject_for("jane@example.com") == subject
        assert registry.get(subject).opted_out_categories == {"user.contact.email"}

    out = io.StringIO()
    args = _parse(["optout", "set", "--registry", url, "--subject", subject, "--opt-in",
                   "marketing"])
    assert run(args, stdout=out) == 0
    assert orjson.loads(out.getvalue())["opted_in"]["uses"][0]["name"] == "marketing"

    out = io.StringIO()
    assert run(_parse(["optout", "get", "--registry", url, "--subject", subject]),
               stdout=out) == 0
    assert orjson.loads(out.getvalue())["opted_out"]["uses"] == []

    out = io.StringIO()
    assert run(_parse(["optout", "clear", "--registry", url, "--subject", subject]),
               stdout=out) == 0
    assert orjson.loads(out.getvalue()) == {"subject": subject, "cleared": True}


def test_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.delenv("PIIMW_REGISTRY_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert run(_parse(["optout", "get", "--registry", url, "--subject", "jane@example.com"])) == 2
    assert "jane" not in capsys.readouterr().err
    assert run(_parse(["optout", "set", "--registry", url, "--user", "x"])) == 2
    assert run(_parse(["optout", "get", "--config", str(tmp_path / "none.toml"),
                       "--user", "x"])) == 2
    with pytest.raises(SystemExit):
        _parse(["optout", "get", "--registry", url])  # a subject is required


def test_registry_from_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.delenv("PIIMW_REGISTRY_URL", raising=False)
    config = tmp_path / "piimw.toml"
    config.write_text(f'[registry]\nurl = "sqlite:///{tmp_path / "cfg.db"}"\n', "utf-8")
    out = io.StringIO()
    args = _parse(["optout", "set", "--config", str(config), "--user", "u1", "--opt-out",
                   "analytics"])
    assert run(args, stdout=out) == 0
    assert (tmp_path / "cfg.db").exists()


def test_settings_with_an_audit_trail_start_no_service(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the registry settings opens no audit trail: the command failed without the
    audit key, and with it created the trail's files (found by review of the docs)."""
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.delenv("PIIMW_AUDIT_KEY", raising=False)
    monkeypatch.delenv("PIIMW_REGISTRY_URL", raising=False)
    config = tmp_path / "piimw.toml"
    config.write_text(f'[registry]\nurl = "sqlite:///{tmp_path / "cfg.db"}"\n'
                      f'[audit]\nurl = "jsonl://{tmp_path / "trail.jsonl"}"\n', "utf-8")
    args = _parse(["optout", "set", "--config", str(config), "--user", "u1", "--opt-out",
                   "analytics"])
    assert run(args, stdout=io.StringIO()) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.db", "cfg.db-id", "piimw.toml"]


def test_unavailable_registry_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    args = _parse(["optout", "get", "--registry", "redis://127.0.0.1:1/0", "--user", "x"])
    assert run(args, stdout=io.StringIO()) == 1


def test_command_object_for_piimw_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piimw.cli import Command
    from piimw.cli_optout import COMMAND

    assert isinstance(COMMAND, Command)
    assert COMMAND.name == "optout"
    parser = argparse.ArgumentParser(prog="piimw")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("optout")
    COMMAND.add_arguments(p)
    p.set_defaults(_run=COMMAND.run)
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    args = parser.parse_args(["optout", "get", "--registry", f"sqlite:///{tmp_path / 'c.db'}",
                              "--user", "u"])
    assert args._run(args) == 0


def test_registry_url_override_keeps_the_settings_key_and_prefix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--registry`` names the backend only: subjects are keyed with the settings' hash key
    (``hash.key_env``) and prefix, or the application would never read what was written."""
    monkeypatch.delenv("PIIMW_HASH_KEY", raising=False)
    monkeypatch.delenv("PIIMW_REGISTRY_URL", raising=False)
    monkeypatch.setenv("SHOP_HASH_KEY", KEY)
    monkeypatch.setenv("SHOP_HASH_KEY_ID", "s1")
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    config = tmp_path / "piimw.toml"
    config.write_text('[hash]\nkey_env = "SHOP_HASH_KEY"\n\n[registry]\n'
                      f'url = "sqlite:///{tmp_path / "app.db"}"\nkey_prefix = "shop"\n', "utf-8")
    out = io.StringIO()
    args = _parse(["optout", "set", "--config", str(config), "--registry", url,
                   "--user-stdin", "--opt-out", "analytics"])
    assert run(args, stdin=io.StringIO("42\n"), stdout=out) == 0
    assert not (tmp_path / "app.db").exists()  # the override named the backend

    from piimw.config import Config

    app = Registry.from_config(Config.from_file(config), url=url)
    assert app is not None
    with app:
        subject = app.subject_for("42")
        assert orjson.loads(out.getvalue())["subject"] == subject
        assert subject.startswith("hmac:s1.registry:")
        assert app.get(subject).opted_out_uses == {"analytics"}


def test_registry_url_without_a_registry_section_uses_the_settings_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIIMW_HASH_KEY", raising=False)
    monkeypatch.setenv("SHOP_HASH_KEY", KEY)
    config = tmp_path / "piimw.toml"
    config.write_text('[hash]\nkey_env = "SHOP_HASH_KEY"\n', "utf-8")
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    out = io.StringIO()
    assert run(_parse(["optout", "get", "--config", str(config), "--registry", url,
                       "--user", "42"]), stdout=out) == 0
    with Registry(url, Hasher(KEY, "k1")) as registry:
        assert orjson.loads(out.getvalue())["subject"] == registry.subject_for("42")


def test_relative_sqlite_registry_is_relative_to_the_settings_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.delenv("PIIMW_REGISTRY_URL", raising=False)
    app_dir, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    app_dir.mkdir()
    elsewhere.mkdir()
    settings = app_dir / "piimw.toml"
    settings.write_text('[registry]\nurl = "sqlite:///state/registry.db"\n', "utf-8")
    (app_dir / "state").mkdir()
    monkeypatch.chdir(elsewhere)
    assert run(_parse(["optout", "set", "--config", str(settings), "--user", "7",
                       "--opt-out", "analytics"]), stdout=io.StringIO()) == 0
    assert (app_dir / "state" / "registry.db").exists()
    assert not (elsewhere / "state").exists()

    from piimw.config import Config

    monkeypatch.chdir(tmp_path)  # the application, started from another directory
    registry = Registry.from_config(Config.from_file(settings))
    assert registry is not None
    with registry:
        assert registry.get(registry.subject_for("7")).opted_out_uses == {"analytics"}


@pytest.mark.parametrize(("url", "want"), [
    ("sqlite:///r.db", "sqlite:////srv/app/r.db"),
    ("sqlite:////var/lib/r.db", "sqlite:////var/lib/r.db"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("memory://x", "memory://x"),
])
def test_registry_url_anchoring(url: str, want: str) -> None:
    from piimw._paths import registry_url

    assert registry_url(url, Path("/srv/app")) == want
