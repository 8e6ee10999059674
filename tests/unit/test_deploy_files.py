"""The deployment files, checked without a Docker engine: the compose stack, the Dockerfile, the
Prometheus config and rules (beyond what promtool checks), the Grafana provisioning and dashboard,
and the runbook every alert links to."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from typer.testing import CliRunner

from intake.cli import app as cli_app
from receiver.app import create_app
from wiring.metrics import CATALOGUE
from wiring.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INTAKE_SERVICES = ("migrate", "gateway", "projector", "quarantine", "receipts")
LONG_RUNNING = (
    "kafka",
    "postgres",
    "gateway",
    "projector",
    "quarantine",
    "receipts",
    "prometheus",
    "grafana",
)
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    stack: dict[str, Any] = _yaml(DEPLOY / "compose.yaml")
    return stack


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in _yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
        for rule in group["rules"]
    ]


def _alerts(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in rules if "alert" in rule]


def _recorded(rules: list[dict[str, Any]]) -> set[str]:
    return {rule["record"] for rule in rules if "record" in rule}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(intake[_:][a-z0-9_:]+)", expr))


def _catalogued(name: str) -> bool:
    for spec in CATALOGUE:
        if spec.type == "histogram":
            if name in {f"{spec.name}{s}" for s in ("_bucket", "_count", "_sum")}:
                return True
        elif name == spec.name:
            return True
    return False


def _slug(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _env_value(value: str) -> str:
    """A compose value with its ${VAR:?...} placeholders filled in with something valid."""
    return PLACEHOLDER.sub(lambda m: "x" * 40 if "SECRET" in m.group(1) else f"{m.group(1)}", value)


# --- compose ------------------------------------------------------------------------------


def test_compose_has_the_production_shaped_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka",
        "postgres",
        "migrate",
        "gateway",
        "projector",
        "quarantine",
        "receipts",
        "prometheus",
        "grafana",
    }
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])
    assert services["gateway"]["deploy"]["replicas"] >= 2
    assert services["projector"]["deploy"]["replicas"] >= 2
    assert services["quarantine"]["deploy"]["replicas"] >= 1


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            assert service["build"]["context"] == ".."
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        repository, _, tag = image.rpartition(":")
        assert repository, (name, image)
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), (name, image)


def test_compose_services_have_healthchecks_and_wait_for_their_dependencies(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check, name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["migrate"]["restart"] == "no"
    for name in ("gateway", "projector", "quarantine", "receipts"):
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_compose_intake_settings_exist_and_are_valid_for_production(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {f"INTAKE_{field.upper()}" for field in Settings.model_fields}
    for name in INTAKE_SERVICES:
        environment: dict[str, str] = compose["services"][name]["environment"]
        unknown = {key for key in environment if key.startswith("INTAKE_")} - known
        assert unknown == set(), name
        for key, value in environment.items():
            if key.startswith("INTAKE_"):
                monkeypatch.setenv(key, _env_value(str(value)))
        settings = Settings()
        assert settings.environment == "production"
        assert settings.event_log == "kafka"
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.auto_migrate is False
        assert (settings.database_url or "").startswith("postgresql+asyncpg://")
    # Nothing secret is written into the file itself.
    for name, service in compose["services"].items():
        for key, value in dict(service.get("environment", {})).items():
            if "SECRET" in key or "PASSWORD" in key:
                assert PLACEHOLDER.fullmatch(str(value)), (name, key)


def test_compose_commands_are_accepted_by_the_intake_cli(compose: dict[str, Any]) -> None:
    runner = CliRunner()
    for name in INTAKE_SERVICES:
        command = compose["services"][name]["command"]
        result = runner.invoke(cli_app, [*command, "--help"])
        assert result.exit_code == 0, (name, shlex.join(command), result.output)


def test_prometheus_scrapes_the_ports_the_services_listen_on(compose: dict[str, Any]) -> None:
    config = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected = {
        "intake-gateway": ("gateway", "--port"),
        "intake-projector": ("projector", "--metrics-port"),
        "intake-quarantine": ("quarantine", "--metrics-port"),
        "intake-receipts": ("receipts", "--metrics-port"),
    }
    for job_name, (service, option) in expected.items():
        [sd] = jobs[job_name]["dns_sd_configs"]
        assert sd["names"] == [service]
        command = compose["services"][service]["command"]
        assert str(sd["port"]) == command[command.index(option) + 1], job_name
        assert "0.0.0.0" in command  # reachable from the Prometheus container
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert all((DEPLOY / "prometheus" / f).is_file() for f in config["rule_files"])


# --- Dockerfile ---------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_pinned_non_root_and_healthchecked() -> None:
    instructions = _dockerfile()
    bases = [rest.split()[0] for kind, rest in instructions if kind == "FROM"]
    assert bases
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases)
    final = instructions[max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM") :]
    users = [rest for kind, rest in final if kind == "USER"]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    [healthcheck] = [rest for kind, rest in final if kind == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["intake"]') in final


def test_dockerfile_copies_every_package_and_dockerignore_lets_only_those_in() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set()
    for kind, rest in _dockerfile():
        if kind == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    assert packages <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"  # an allow-list: .venv, .git, .intake never reach the build
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == copied


# --- Prometheus rules ---------------------------------------------------------------------


def test_every_alert_links_to_its_runbook_section(rules: list[dict[str, Any]]) -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    sections = set(re.findall(r"^### (Intake\w+)$", runbook, re.M))
    alerts = _alerts(rules)
    assert {a["alert"] for a in alerts} == sections
    for alert in alerts:
        # A severity may be templated on the alert's labels; every outcome is one of the two.
        severity = alert["labels"]["severity"]
        outcomes = re.findall(r"}}(\w+){{", severity) if "{{" in severity else [severity]
        assert outcomes, severity
        assert set(outcomes) <= {"critical", "warning"}, severity
        assert alert["annotations"]["summary"]
        url = alert["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{_slug(alert['alert'])}"
        assert url.partition("#")[2] in anchors
    # Links inside the runbook resolve too.
    for anchor in re.findall(r"\]\(#([^)]+)\)", runbook):
        assert anchor in anchors, anchor


def test_rules_read_only_catalogued_metrics(rules: list[dict[str, Any]]) -> None:
    recorded = _recorded(rules)
    for rule in rules:
        for name in _metric_names(rule["expr"]):
            assert _catalogued(name) or name in recorded, (
                rule.get("alert", rule.get("record")),
                name,
            )


def test_the_issue_s_alerts_exist_and_each_has_a_firing_unit_test(
    rules: list[dict[str, Any]],
) -> None:
    alerts = {a["alert"]: a["expr"] for a in _alerts(rules)}
    wanted = {
        "IntakeConsumerLagGrowing": "intake_consumer_lag_records",
        "IntakeRejectionRateSpike": "intake:rejections_by_rule",
        "IntakeProduceErrors": "intake_produce_errors_total",
        "IntakeNotReady": "intake_ready",
        "IntakeWebhookDeliveriesParked": 'outcome="parked"',
        "IntakeStoreErrors": "intake_store_errors_total",
    }
    for alert, needle in wanted.items():
        assert needle in alerts[alert], alert
    tests = _yaml(DEPLOY / "prometheus" / "alerts_test.yml")
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == set(alerts)


# --- Grafana ------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "dashboards" / "intake.json").read_text(encoding="utf-8")
    )
    return dashboard


def test_grafana_provisioning_matches_the_stack(compose: dict[str, Any]) -> None:
    grafana = DEPLOY / "grafana"
    [source] = _yaml(grafana / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    [provider] = _yaml(grafana / "provisioning" / "dashboards" / "intake.yml")["providers"]
    volumes = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in volumes
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    datasource = next(v for v in _dashboard()["templating"]["list"] if v["type"] == "datasource")
    assert datasource["current"]["value"] == source["uid"]


def test_dashboard_panels_query_catalogued_metrics(rules: list[dict[str, Any]]) -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    recorded = _recorded(rules)
    used: set[str] = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            for name in names:
                assert _catalogued(name) or name in recorded, (panel["title"], name)
            used |= names
    # Throughput, latency, rejections by rule, lag, webhook deliveries.
    for needed in (
        "intake_items_total",
        "intake_http_request_duration_seconds_bucket",
        "intake_findings_total",
        "intake_consumer_lag_records",
        "intake_webhook_deliveries_total",
    ):
        assert needed in used, needed


def test_route_labels_in_rules_and_dashboard_are_real_routes(
    rules: list[dict[str, Any]], tmp_path: Path
) -> None:
    paths = set(create_app(Settings(data_dir=tmp_path)).openapi()["paths"])
    exprs = [rule["expr"] for rule in rules] + [
        target["expr"] for panel in _dashboard()["panels"] for target in panel.get("targets", [])
    ]
    for expr in exprs:
        for route in re.findall(r'route!?="([^"]+)"', expr):
            assert route in paths, route
