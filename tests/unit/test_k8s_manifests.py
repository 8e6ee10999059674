"""The Kubernetes manifests in deploy/k8s, checked without a cluster: every kustomization builds
(with the real ``kustomize`` when it is installed; base/ is also rendered here without it), the
workloads run real ``intake`` commands with real settings, as non-root on a read-only root
filesystem with resources and probes, the autoscaler and disruption budget hold the gateway,
the network policies open only what each component needs, and Prometheus finds the pods under
the job names the alert rules use."""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import ValidationError
from typer.testing import CliRunner

from identity.keys import KeysetError, load_keyset
from intake.cli import app as cli_app
from receiver.slash.keys import SlashKeyStore
from wiring.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
KUSTOMIZATIONS = sorted(path.parent for path in K8S.rglob("kustomization.yaml"))
SETTINGS_NAMES = {f"INTAKE_{field.upper()}" for field in Settings.model_fields}
WORKLOAD_KINDS = ("Deployment", "Job")
LONG_RUNNING = ("gateway", "projector", "quarantine", "receipts")
# Valid stand-ins for what the intake-secrets Secret holds, to check the settings they complete.
SECRET_STAND_INS = {
    "feed-secret": "f" * 40,
    "database-url": "postgresql+asyncpg://intake:pw@postgres:5432/intake",
    "slash-key-expires": "2030-01-01",
    "slash-key-password": "pw",
}
# Where each component may connect to: DNS, PostgreSQL, Kafka, and HTTPS to public addresses
# (the issuer's JWKS for the gateway, the units' webhooks for the receipts dispatcher).
EGRESS_PORTS = {
    "gateway": {53, 5432, 9092, 443},
    "projector": {53, 5432, 9092},
    "quarantine": {53, 5432, 9092},
    "receipts": {53, 5432, 9092, 443},
    "migrate": {53, 5432},
}
PRIVATE_RANGES = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
]

Obj = dict[str, Any]


def _docs(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def _generator_files(generator: Obj) -> dict[str, Path]:
    """A generator's ``files`` as key → file (``key=path`` or just ``path``)."""
    out = {}
    for spec in generator.get("files", []):
        key, _, path = spec.rpartition("=")
        out[key or Path(path).name] = Path(path)
    return out


def _kustomize() -> str | None:
    """``make test`` installs kustomize (deploy/kustomize.sh) and names it in
    INTAKE_TEST_KUSTOMIZE; without it (or one on PATH) the tests of overlays skip, unless
    INTAKE_REQUIRE_SERVICES=1, where that fails."""
    named = os.environ.get("INTAKE_TEST_KUSTOMIZE")
    found = named if named and os.access(named, os.X_OK) else shutil.which("kustomize")
    if found:
        return found
    if os.environ.get("INTAKE_REQUIRE_SERVICES") == "1":
        pytest.fail("kustomize is required here (INTAKE_REQUIRE_SERVICES=1): deploy/kustomize.sh")
    return None


def _render_without_kustomize(directory: Path) -> list[Obj]:
    """Near enough to ``kustomize build`` of base/ for these checks: its resources, its
    generated ConfigMap and Secret (names without the hash) and its image tags."""
    kustomization = _docs(directory / "kustomization.yaml")[0]
    objects = [
        doc for resource in kustomization["resources"] for doc in _docs(directory / resource)
    ]
    for generator in kustomization.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env in generator.get("envs", []):
            data.update(_env_file(directory / env))
        labels = generator.get("options", {}).get("labels", {})
        metadata = {"name": generator["name"], "labels": labels}
        objects.append({"kind": "ConfigMap", "metadata": metadata, "data": data})
    for generator in kustomization.get("secretGenerator", []):
        secret = {
            key: base64.b64encode((directory / path).read_bytes()).decode()
            for key, path in _generator_files(generator).items()
        }
        objects.append({"kind": "Secret", "metadata": {"name": generator["name"]}, "data": secret})
    tags = {image["name"]: image["newTag"] for image in kustomization.get("images", [])}
    for _, spec in _pod_specs(objects):
        for container in _containers(spec):
            if container["image"] in tags:
                container["image"] = f"{container['image']}:{tags[container['image']]}"
    return objects


@functools.cache
def _build(directory: Path) -> tuple[Obj, ...]:
    kustomize = _kustomize()
    if kustomize is None:
        if directory != BASE:
            pytest.skip(f"kustomize is not installed: {directory.relative_to(K8S)} not built")
        return tuple(_render_without_kustomize(directory))
    result = subprocess.run(
        [kustomize, "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def kustomization(request: pytest.FixtureRequest) -> Path:
    directory: Path = request.param
    return directory


@pytest.fixture
def built(kustomization: Path) -> list[Obj]:
    return list(_build(kustomization))


# --- reading the built objects ------------------------------------------------------------


def _of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def _named(objects: list[Obj], kind: str, name: str) -> Obj:
    found: list[Obj] = [o for o in _of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """Each workload with its pod template's spec."""
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj, obj["spec"]["template"]["spec"]


def _pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _component(workload: Obj) -> str:
    return _pod_labels(workload)["app.kubernetes.io/component"]


def _containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _workload(objects: list[Obj], component: str) -> Obj:
    [found] = [w for w, _ in _pod_specs(objects) if _component(w) == component]
    return found


def _container(workload: Obj) -> Obj:
    containers: list[Obj] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return containers[0]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _port(container: Obj, port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    assert isinstance(number, int)
    return number


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions with In/NotIn/Exists) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def _config_env(objects: list[Obj], container: Obj) -> dict[str, str]:
    """The INTAKE_* environment a container starts with (secrets replaced by stand-ins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            env[entry["name"]] = SECRET_STAND_INS[entry["valueFrom"]["secretKeyRef"]["key"]]
    return env


# --- the files ------------------------------------------------------------------------------


def test_every_manifest_parses_and_every_kustomization_reference_exists() -> None:
    files = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])
    assert files
    for path in files:
        for doc in _docs(path):
            assert isinstance(doc, dict), path
    assert {p.relative_to(K8S).as_posix() for p in KUSTOMIZATIONS} >= {
        "base",
        "overlays/production",
    }
    for directory in KUSTOMIZATIONS:
        kustomization = _docs(directory / "kustomization.yaml")[0]
        listed = set()
        for resource in kustomization.get("resources", []):
            target = (directory / resource).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
            listed.add(target)
        for patch in kustomization.get("patches", []):
            if "path" in patch:
                assert (directory / patch["path"]).is_file(), patch["path"]
                listed.add((directory / patch["path"]).resolve())
        for generator in [
            *kustomization.get("configMapGenerator", []),
            *kustomization.get("secretGenerator", []),
        ]:
            for env in generator.get("envs", []):
                assert (directory / env).is_file(), env
            for path in _generator_files(generator).values():
                assert (directory / path).is_file(), path
        # No manifest lies next to a kustomization without being part of it.
        for path in directory.glob("*.yaml"):
            assert path.name == "kustomization.yaml" or path.resolve() in listed, path


def test_kustomize_builds_every_kustomization_when_installed() -> None:
    if _kustomize() is None:
        pytest.skip("kustomize is not installed (deploy/kustomize.sh install)")
    for directory in KUSTOMIZATIONS:
        kinds = {o["kind"] for o in _build(directory)}
        assert {"Deployment", "Job", "Service", "ConfigMap", "NetworkPolicy"} <= kinds


# --- workloads ------------------------------------------------------------------------------


def test_the_components_are_there(built: list[Obj]) -> None:
    components = {_component(w): w["kind"] for w, _ in _pod_specs(built)}
    assert components == {
        "gateway": "Deployment",
        "projector": "Deployment",
        "quarantine": "Deployment",
        "receipts": "Deployment",
        "migrate": "Job",
    }


def test_selectors_match_the_pod_labels(built: list[Obj]) -> None:
    for workload, _ in _pod_specs(built):
        if workload["kind"] == "Deployment":
            assert _selects(workload["spec"]["selector"], _pod_labels(workload))
            # A selector must not also catch another component's pods.
            others = [w for w, _ in _pod_specs(built) if w is not workload]
            assert not any(_selects(workload["spec"]["selector"], _pod_labels(o)) for o in others)
    gateway = _workload(built, "gateway")
    [service] = _of_kind(built, "Service")
    selected = [
        w
        for w, _ in _pod_specs(built)
        if _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(w))
    ]
    assert selected == [gateway]
    [port] = service["spec"]["ports"]
    assert _port(_container(gateway), port["targetPort"]) == int(
        _option(_container(gateway)["args"], "--port")
    )


def test_every_command_is_a_real_intake_command(built: list[Obj]) -> None:
    runner = CliRunner()
    for workload, spec in _pod_specs(built):
        for container in _containers(spec):
            assert container["image"].startswith("register-intake:"), container["image"]
            # The image's entrypoint is `intake`; the manifests give its arguments only.
            assert "command" not in container, workload["metadata"]["name"]
            result = runner.invoke(cli_app, [*container["args"], "--help"])
            assert result.exit_code == 0, (container["args"], result.output)
    assert _container(_workload(built, "migrate"))["args"] == ["migrate"]
    assert _container(_workload(built, "gateway"))["args"][0] == "gateway"
    for consumer in ("projector", "quarantine", "receipts"):
        assert _container(_workload(built, consumer))["args"][:2] == ["consume", consumer]


def test_containers_have_resources_and_run_as_non_root_on_a_read_only_root(
    built: list[Obj],
) -> None:
    for workload, spec in _pod_specs(built):
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False
        for container in _containers(spec):
            where = (workload["metadata"]["name"], container["name"])
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
            security = {**pod, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where


def test_the_gateway_is_probed_on_healthz_and_readyz_at_its_port(built: list[Obj]) -> None:
    gateway = _workload(built, "gateway")
    container = _container(gateway)
    args = container["args"]
    assert _option(args, "--host") == "0.0.0.0"
    port = int(_option(args, "--port"))
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert _port(container, check["port"]) == port, probe


def test_consumers_serve_metrics_where_they_are_probed_and_scraped(built: list[Obj]) -> None:
    for component in LONG_RUNNING:
        workload = _workload(built, component)
        container = _container(workload)
        option = "--port" if component == "gateway" else "--metrics-port"
        port = int(_option(container["args"], option))
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
        if component != "gateway":
            assert _option(container["args"], "--metrics-host") == "0.0.0.0"
            assert [p["containerPort"] for p in container["ports"]] == [port]
            assert _port(container, container["livenessProbe"]["httpGet"]["port"]) == port
    assert "annotations" not in _workload(built, "migrate")["spec"]["template"]["metadata"]


def test_settings_are_real_and_valid_for_production(
    built: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    for config in _of_kind(built, "ConfigMap"):
        assert set(config["data"]) <= SETTINGS_NAMES, set(config["data"]) - SETTINGS_NAMES
    for workload, spec in _pod_specs(built):
        for container in _containers(spec):
            env = _config_env(built, container)
            assert set(env) <= SETTINGS_NAMES, set(env) - SETTINGS_NAMES
            for name in SETTINGS_NAMES:
                monkeypatch.delenv(name, raising=False)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = Settings()
            assert settings.environment == "production"
            assert settings.event_log == "kafka"
            assert settings.auto_migrate is False
            assert (settings.database_url or "").startswith("postgresql+asyncpg://")
            # The root filesystem is read-only: the data dir must be a writable volume.
            volumes = {v["name"]: v for v in spec["volumes"]}
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            assert "emptyDir" in mounts[str(settings.data_dir)], workload["metadata"]["name"]
            if _component(workload) == "gateway":
                assert settings.slash_key_file is not None
                volume = mounts[str(settings.slash_key_file.parent)]
                assert volume["secret"]["items"] == [
                    {"key": settings.slash_key_file.name, "path": settings.slash_key_file.name}
                ]


def test_config_and_secret_references_resolve(built: list[Obj]) -> None:
    secrets = {s["metadata"]["name"]: set(s["data"]) for s in _of_kind(built, "Secret")}
    # Without a Secret in the output (production), the cluster's own must have base's keys.
    documented = set(_generator_files(_docs(BASE / "kustomization.yaml")[0]["secretGenerator"][0]))
    for workload, spec in _pod_specs(built):
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for container in _containers(spec):
            for source in container.get("envFrom", []):
                config = _named(built, "ConfigMap", source["configMapRef"]["name"])
                # An upgrade applies the settings with the migrate Job, selected by this label.
                assert config["metadata"]["labels"]["app.kubernetes.io/component"] == "config"
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == "intake-secrets"
                    assert ref["key"] in secrets.get(ref["name"], documented), ref
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (workload["metadata"]["name"], mount)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                for item in volume["secret"]["items"]:
                    assert item["key"] in secrets.get(name, documented)


def test_the_autoscaler_and_the_disruption_budget_hold_the_gateway(built: list[Obj]) -> None:
    gateway = _workload(built, "gateway")
    # The autoscaler owns the replica count; a count in the Deployment would fight it.
    assert "replicas" not in gateway["spec"]
    [hpa] = _of_kind(built, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == gateway["metadata"]["name"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    [pdb] = _of_kind(built, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    covered = [w for w, _ in _pod_specs(built) if _selects(pdb["spec"]["selector"], _pod_labels(w))]
    assert covered == [gateway]
    # A drain can always proceed, and never takes every gateway.
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1


def test_consumer_replicas_fit_their_work(built: list[Obj]) -> None:
    projector = _workload(built, "projector")
    partitions = int(_config_env(built, _container(projector))["INTAKE_TOPIC_PARTITIONS"])
    assert 1 <= projector["spec"]["replicas"] <= partitions
    # The quarantine indexer is a consumer group too (idempotent inserts): one or two suffice.
    assert 1 <= _workload(built, "quarantine")["spec"]["replicas"] <= min(2, partitions)
    # One reader of the receipts' change feed, never two at once, even during a rollout.
    receipts = _workload(built, "receipts")
    assert receipts["spec"]["replicas"] == 1
    assert receipts["spec"]["strategy"] == {"type": "Recreate"}
    migrate = _workload(built, "migrate")
    assert migrate["spec"]["template"]["spec"]["restartPolicy"] == "Never"


# --- network policies -----------------------------------------------------------------------


def _policies_for(built: list[Obj], workload: Obj, direction: str) -> list[Obj]:
    return [
        p
        for p in _of_kind(built, "NetworkPolicy")
        if direction in p["spec"]["policyTypes"]
        and _selects(p["spec"]["podSelector"], _pod_labels(workload))
    ]


def _rule_ports(rules: list[Obj]) -> set[int]:
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


def test_network_policies_open_only_what_each_component_needs(built: list[Obj]) -> None:
    for workload, spec in _pod_specs(built):
        component = _component(workload)
        # Something closes every pod both ways; the allow rules below are the only openings.
        for direction in ("Ingress", "Egress"):
            assert any(
                not p["spec"].get(direction.lower())
                for p in _policies_for(built, workload, direction)
            ), (component, direction)

        ingress = [
            rule
            for p in _policies_for(built, workload, "Ingress")
            for rule in p["spec"].get("ingress", [])
        ]
        for rule in ingress:
            assert rule.get("ports"), (component, "an ingress rule must name its ports")
        served = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
        assert _rule_ports(ingress) == served, component
        if component != "gateway":
            # Consumers are reached by Prometheus only.
            for rule in ingress:
                assert rule["from"], component
                for peer in rule["from"]:
                    labels = peer["podSelector"]["matchLabels"]
                    assert labels == {"app.kubernetes.io/name": "prometheus"}

        egress = [
            rule
            for p in _policies_for(built, workload, "Egress")
            for rule in p["spec"].get("egress", [])
        ]
        for rule in egress:
            assert rule.get("ports"), (component, rule)
            assert rule.get("to"), (component, rule)
        assert _rule_ports(egress) == EGRESS_PORTS[component], component
        for rule in egress:
            if _rule_ports([rule]) == {443}:
                # Public addresses only: a webhook URL must not reach inside the cluster.
                [peer] = rule["to"]
                excluded = [ipaddress.ip_network(n) for n in peer["ipBlock"]["except"]]
                assert all(r in excluded for r in PRIVATE_RANGES), excluded


# --- secrets --------------------------------------------------------------------------------


def test_base_secrets_are_placeholders_that_intake_refuses(tmp_path: Path) -> None:
    generator = _docs(BASE / "kustomization.yaml")[0]["secretGenerator"][0]
    values = {
        key: (BASE / path).read_text(encoding="utf-8")
        for key, path in _generator_files(generator).items()
    }
    assert set(values) == set(SECRET_STAND_INS) | {"slash-key.pem", "identity-keyset.json"}
    for key, path in _generator_files(generator).items():
        assert path.name.endswith(".placeholder"), key
    with pytest.raises(ValidationError, match="INTAKE_FEED_SECRET"):
        Settings(
            environment="production",
            auth_issuer="https://issuer.invalid",
            auth_jwks_url="https://issuer.invalid/jwks",
            feed_secret=values["feed-secret"],
        )
    assert re.search(r"@[^/]*\.invalid[:/]", values["database-url"])
    key_file = tmp_path / "slash-key.pem"
    key_file.write_text(values["slash-key.pem"])
    with pytest.raises(ValueError, match="Unable to load PEM"):
        SlashKeyStore.from_settings(
            Settings(
                data_dir=tmp_path,
                slash_key_file=key_file,
                slash_key_expires=date.fromisoformat(values["slash-key-expires"]),
            )
        )
    assert date.fromisoformat(values["slash-key-expires"]) < date.today()
    keyset_file = tmp_path / "keyset.json"
    keyset_file.write_text(values["identity-keyset.json"])
    keyset_file.chmod(0o600)
    with pytest.raises(KeysetError, match="not an identity keyset"):
        load_keyset(keyset_file)


def test_only_base_holds_a_secret_and_that_one_is_placeholders(
    kustomization: Path, built: list[Obj]
) -> None:
    secrets = _of_kind(built, "Secret")
    if kustomization == BASE:
        assert [s["metadata"]["name"] for s in secrets] == ["intake-secrets"]
    else:
        # Overlays use the cluster's own intake-secrets, made outside git.
        assert secrets == []
        assert not list(kustomization.rglob("*.placeholder"))


# --- Prometheus -----------------------------------------------------------------------------


def test_prometheus_finds_the_pods_under_the_compose_job_names() -> None:
    compose_config = _docs(ROOT / "deploy" / "prometheus" / "prometheus.yml")[0]
    compose_jobs = {
        job["job_name"]
        for job in compose_config["scrape_configs"]
        if job["job_name"].startswith("intake-")
    }
    config = _docs(K8S / "prometheus.yml")[0]
    assert config["rule_files"] == compose_config["rule_files"]
    [scrape] = config["scrape_configs"]
    relabels = scrape["relabel_configs"]
    for relabel in relabels:
        regex = str(relabel.get("regex", "(.*)"))
        re.compile(regex)
        # Prometheus uses RE2: no back-references.
        assert not re.search(r"\\\d", regex), regex
    [job] = [r for r in relabels if r.get("target_label") == "job"]
    [kept] = [
        r
        for r in relabels
        if r.get("action") == "keep" and r["source_labels"] == job["source_labels"]
    ]
    components = set(re.fullmatch(r"\((.+)\)", kept["regex"]).group(1).split("|"))  # type: ignore[union-attr]
    assert components == set(LONG_RUNNING)
    assert {job["replacement"].replace("$1", c) for c in components} == compose_jobs
    [sd] = scrape["kubernetes_sd_configs"]
    for directory in KUSTOMIZATIONS:
        namespace = _docs(directory / "kustomization.yaml")[0].get("namespace")
        if namespace is not None:
            assert namespace in sd["namespaces"]["names"], directory


# --- docs/operations.md ---------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_operations_guide_links_resolve_and_cover_every_alert() -> None:
    docs = ROOT / "docs"
    guide = (docs / "operations.md").read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([\w.]*)#([^)]+)\)", guide):
        text = (docs / target).read_text(encoding="utf-8") if target else guide
        assert anchor in _anchors(text), f"{target}#{anchor}"
    for target in re.findall(r"\]\(([\w.]+\.md)\)", guide):
        assert (docs / target).is_file(), target
    rules = _docs(ROOT / "deploy" / "prometheus" / "alerts.yml")[0]
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}
    for alert in alerts:
        assert f"[{alert}](runbook.md#{alert.lower()})" in guide, alert
