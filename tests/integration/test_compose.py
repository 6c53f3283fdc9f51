"""docker/compose.yaml can't be run here (no Docker engine), so it is checked against the code:
it parses, every FASHIONBOT_* variable it sets is a setting, every command is a real CLI
command with real options, and the Dockerfile serves a deployment (not the demo)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from bot.cli import build_parser
from engine.config import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"FASHIONBOT_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []) or []:
            names.add(str(choice).upper())
    return names


def _fashionbot_argv(command: list[str]) -> list[str]:
    if command[:2] == ["sh", "-c"]:
        command = shlex.split(command[2].replace("exec ", "", 1))
    assert command[0] == "fashionbot", command
    return command[1:]


def test_compose_parses_and_has_the_workers() -> None:
    services = _compose()["services"]
    assert {"postgres", "web", "telegram", "discord"} <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
    for name in ("web", "telegram", "discord"):
        svc = services[name]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(str(v).endswith(":/data") for v in svc["volumes"]), f"{name} keeps no index volume"
        url = svc["environment"]["FASHIONBOT_DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_every_variable_is_a_setting_and_every_command_is_real() -> None:
    known = _setting_names()
    parser = build_parser()
    for name, svc in _compose()["services"].items():
        for key in svc.get("environment", {}):
            if key.startswith("FASHIONBOT_") or key.endswith("_BOT_TOKEN"):
                assert key in known, f"{name}: {key} is not a setting in engine/config.py"
        if name != "postgres":
            argv = _fashionbot_argv(svc["command"])
            args = parser.parse_args([a if "$" not in a else "https://example.invalid/hook" for a in argv])
            assert args.command == argv[0]
        if "telegram" in name:
            assert "--webhook-url" in svc["command"][-1]  # polling can't be shared by workers


def test_dockerfile_serves_a_deployment() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    cmd = next(line for line in text.splitlines() if line.startswith("CMD "))
    assert cmd == 'CMD ["fashionbot", "run", "--web"]'
    assert build_parser().parse_args(["run", "--web"]).web
    assert "HEALTHCHECK" in text and "8443" in next(line for line in text.splitlines() if line.startswith("EXPOSE"))
    assert ".[postgres]" in text
