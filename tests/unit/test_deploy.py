"""Static checks of deploy/: files parse, references resolve, PromQL names real metrics, alerts link to the runbook.

promtool (Debian package ``prometheus``) additionally checks the rules, the Prometheus config, the rules' own
unit tests and the dashboard's queries when it is on PATH; those tests are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import alerting.metrics  # noqa: F401  (importing registers the alerting metrics in REGISTRY)
import streams.metrics  # noqa: F401  (and the stream workers' metrics)
from core.settings import Settings
from streams.topics import topic_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fraudwatch.json"
RUNBOOK = DEPLOY / "RUNBOOK.md"
K8S = DEPLOY / "k8s"

WORKER_JOB = "fraudwatch-worker"
# Names a PromQL expression may use that the service's registry does not export.
EXTRA_METRICS = {"up", "fw_consumer_lag_messages"}
# Settings the deployment sets before the code reads them (see test_worker_web_bind_setting_is_read).
PENDING_SETTINGS = {"worker_web_bind"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH: `apt-get install --no-install-recommends prometheus` (Debian) provides it",
)

YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
JSON_FILES = sorted(DEPLOY.rglob("*.json"))
K8S_FILES = sorted(K8S.glob("*.yaml"))


def _rel(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in K8S_FILES for d in yaml.safe_load_all(p.read_text()) if d is not None]


def _k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _k8s_docs() if d.get("kind") == kind]


def _configmap_env() -> dict[str, str]:
    (cm,) = [d for d in _k8s_kind("ConfigMap") if d["metadata"]["name"] == "fraudwatch-config"]
    return {str(k): str(v) for k, v in cm["data"].items()}


def _worker_deployment() -> dict[str, Any]:
    (dep,) = [d for d in _k8s_kind("Deployment") if d["metadata"]["name"] == "fraudwatch-worker"]
    return dep


def _compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_yaml(RULES)["groups"] for rule in group["rules"]]


def _dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _dashboard_panels(panel.get("panels", []))


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard_panels(dash["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


# --- PromQL metric names -------------------------------------------------------------------------------------

_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left"}
_PROMQL_WORDS |= {"group_right", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (strings, matchers, ranges and grouping labels removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers (and Grafana variables inside them)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def exported_metric_names() -> set[str]:
    """Every sample name the service's Prometheus registry can expose."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        base = family.name
        if family.type == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif family.type in ("histogram", "gaugehistogram"):
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
        elif family.type == "summary":
            names |= {base, f"{base}_sum", f"{base}_count", f"{base}_created"}
        elif family.type == "info":
            names.add(f"{base}_info")
        else:
            names.add(base)
        names |= {sample.name for sample in family.samples}
    return names


@pytest.mark.unit
def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(fw_x_bucket{instance=~"$instance"}[$__rate_interval])))'
        " > 1e-3 and on (topic) (max by (topic) (deriv(fw_lag[10m] offset 5m)) > 0)"
        ' or absent(up{job="w"}) unless sum(fw_y_total) / count(label_replace(fw_z, "a", "$1", "b", "(.*)"))'
    )
    assert promql_metric_names(expr) == {"fw_x_bucket", "fw_lag", "up", "fw_y_total", "fw_z"}


@pytest.mark.unit
def test_exported_metric_names_cover_each_kind() -> None:
    names = exported_metric_names()
    assert {"fw_events_consumed_total", "fw_event_to_decision_seconds_bucket", "fw_model_info"} <= names
    assert {"fw_model_loaded", "fw_tasks_delivered_total", "fw_decision_to_delivery_seconds_count"} <= names


# --- every file parses ------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_expected_files_exist() -> None:
    expected = [
        "docker-compose.yml",
        "Dockerfile",
        "RUNBOOK.md",
        "prometheus/prometheus.yml",
        "prometheus/rules.yml",
        "grafana/dashboards/fraudwatch.json",
        "k8s/namespace.yaml",
        "k8s/configmap.yaml",
        "k8s/secret.template.yaml",
        "k8s/worker-deployment.yaml",
        "k8s/service.yaml",
        "k8s/hpa.yaml",
    ]
    missing = [name for name in expected if not (DEPLOY / name).is_file()]
    assert not missing
    assert list((DEPLOY / "grafana/provisioning/datasources").glob("*.yml"))
    assert list((DEPLOY / "grafana/provisioning/dashboards").glob("*.yml"))


@pytest.mark.unit
@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(isinstance(doc, dict) for doc in docs if doc is not None)


@pytest.mark.unit
@pytest.mark.parametrize("path", JSON_FILES, ids=_rel)
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


# --- docker-compose ---------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_compose_has_the_stack() -> None:
    services = _compose()["services"]
    for name in ("kafka", "topics", "redis", "worker", "receiver", "prometheus", "grafana"):
        assert name in services, name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["worker"]["command"] == ["fraudwatch", "worker"]
    receiver = " ".join(services["receiver"]["command"])
    assert "-m sandbox.receiver" in receiver and "--port 8080" in receiver
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "ensure_topics" in " ".join(services["topics"]["command"])  # the service's own topic list


@pytest.mark.unit
def test_compose_file_is_valid_for_docker_compose() -> None:
    """Debian's docker-compose (1.29, installed by scripts/setup.sh) parses and validates it; no engine needed."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run scripts/setup.sh"
    env = {**os.environ, "FW_PSEUDONYM_KEY": "test"}
    done = subprocess.run(
        [exe, "-p", "fraudwatch", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.unit
def test_compose_references_existing_files() -> None:
    compose = _compose()
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
            else:
                assert source in declared_volumes, f"{name}: {source}"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        assert service.get("image") or build, name


@pytest.mark.unit
def test_compose_inline_scripts_compile() -> None:
    """The one-shot jobs' inline Python and shell scripts are at least syntactically valid."""
    checked = 0
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not isinstance(command, list) or len(command) < 3 or command[1] not in ("-c", "-ec"):
            continue
        script = command[2]
        if command[0] == "python":
            compile(script, f"{name} command", "exec")
        elif command[0] == "sh":
            result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{name}: {result.stderr}"
            for snippet in re.findall(r"python -c '(.*?)'", script, re.S):
                compile(snippet, f"{name} command", "exec")
        checked += 1
    assert checked >= 2


@pytest.mark.unit
def test_dockerfile_builds_the_project() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _target = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source


@pytest.mark.unit
def test_compose_worker_settings() -> None:
    services = _compose()["services"]
    env = services["worker"]["environment"]
    partitions = int(env["FW_PARTITIONS"])
    assert int(services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]) == partitions
    assert services["worker"]["deploy"]["replicas"] <= partitions
    assert env["FW_DISPATCH_URL"] == "http://receiver:8080/tasks"
    assert env["FW_BROKER_URL"] == "kafka://kafka:9092"
    assert services["topics"]["environment"]["FW_PARTITIONS"] == env["FW_PARTITIONS"]


@pytest.mark.unit
def test_prometheus_config_scrapes_workers_and_loads_rules() -> None:
    config = _load_yaml(PROM_CONFIG)
    for rule_file in config["rule_files"]:
        assert (PROM_CONFIG.parent / rule_file).is_file(), rule_file
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB]
    port = int(_compose()["services"]["worker"]["environment"]["FW_WORKER_WEB_PORT"])
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [sd["port"] for sd in job["dns_sd_configs"]] == [port]
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    compose_mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus:/etc/prometheus:ro" in compose_mounts


@pytest.mark.unit
def test_grafana_provisioning_matches_dashboard() -> None:
    datasources = _load_yaml(next((DEPLOY / "grafana/provisioning/datasources").glob("*.yml")))["datasources"]
    uids = {ds["uid"] for ds in datasources if ds["type"] == "prometheus"}
    dash = json.loads(DASHBOARD.read_text())
    used = {p["datasource"]["uid"] for p in _dashboard_panels(dash["panels"]) if "datasource" in p}
    assert used and used <= uids
    providers = _load_yaml(next((DEPLOY / "grafana/provisioning/dashboards").glob("*.yml")))["providers"]
    mounts = dict(v.split(":")[:2] for v in _compose()["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


# --- PromQL in the rules and the dashboard ----------------------------------------------------------------------


@pytest.mark.unit
def test_rule_expressions_use_exported_metrics() -> None:
    known = exported_metric_names() | EXTRA_METRICS
    for rule in _rules():
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, f"{rule['alert']}: unknown {sorted(names - known)}"


@pytest.mark.unit
def test_dashboard_expressions_use_exported_metrics() -> None:
    known = exported_metric_names() | EXTRA_METRICS
    exprs = _dashboard_exprs()
    assert len(exprs) >= 12
    for title, expr in exprs:
        names = promql_metric_names(expr)
        assert names, title
        assert names <= known, f"{title}: unknown {sorted(names - known)}"


@pytest.mark.unit
def test_dashboard_covers_the_required_metrics() -> None:
    used = set().union(*(promql_metric_names(expr) for _, expr in _dashboard_exprs()))
    required = {
        "fw_events_consumed_total",
        "fw_events_scored_total",
        "fw_event_to_decision_seconds_bucket",
        "fw_consumer_lag_messages",
        "fw_decisions_total",
        "fw_tasks_total",
        "fw_delivery_retries_total",
        "fw_delivery_failures_total",
        "fw_decision_to_delivery_seconds_bucket",
        "fw_dead_letters_total",
        "fw_scoring_seconds_bucket",
        "fw_feature_state_keys",
        "fw_model_info",
        "fw_in_call_alerts_total",
        "fw_repeated_actions_total",
        "fw_hold_latency_seconds_bucket",
        "fw_holds_total",
    }
    assert required <= used, sorted(required - used)
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in _dashboard_panels(dash["panels"])]
    assert len(ids) == len(set(ids))


# --- alert rules and the runbook --------------------------------------------------------------------------------


def _runbook_anchors() -> set[str]:
    """GitHub-style heading anchors of RUNBOOK.md, plus explicit <a id=...> anchors."""
    text = RUNBOOK.read_text()
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.unit
def test_rules_are_complete_and_link_to_the_runbook() -> None:
    anchors = _runbook_anchors()
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        for field in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(field), f"{rule['alert']}: {field}"
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "deploy/RUNBOOK.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in RUNBOOK.md"


@pytest.mark.unit
def test_rules_cover_the_required_conditions() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    joined = "\n".join(exprs.values())
    assert "deriv(fw_consumer_lag_messages[10m])" in joined and "> 10000" in joined
    assert "fw_event_to_decision_seconds_bucket" in joined and "> 0.05" in joined
    assert "fw_dead_letters_total" in joined and "> 0.01" in joined
    assert "fw_tasks_total" in joined and "fw_tasks_delivered_total" in joined
    assert "fw_model_loaded == 0" in joined
    assert f'up{{job="{WORKER_JOB}"}} == 0' in joined


@pytest.mark.unit
def test_runbook_internal_links_resolve() -> None:
    anchors = _runbook_anchors()
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert links
    assert set(links) <= anchors, sorted(set(links) - anchors)


@pytest.mark.unit
def test_runbook_lists_every_topic() -> None:
    text = RUNBOOK.read_text()
    assert "## Scaling by partitions" in text
    for name in topic_names(Settings()):
        assert f"`{name}`" in text, name


# --- Kubernetes -------------------------------------------------------------------------------------------------

_CLUSTER_SCOPED = {"Namespace", "Kustomization"}


@pytest.mark.unit
def test_k8s_manifests_are_well_formed() -> None:
    docs = _k8s_docs()
    assert docs
    for path, doc in docs:
        assert doc.get("apiVersion"), path.name
        assert doc.get("kind"), path.name
        assert doc.get("metadata", {}).get("name"), path.name
        if doc["kind"] not in _CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "fraudwatch", f"{path.name} {doc['kind']}"
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds


@pytest.mark.unit
def test_k8s_worker_probes_resources_and_scraping() -> None:
    dep = _worker_deployment()
    env = _configmap_env()
    port = int(env["FW_WORKER_WEB_PORT"])
    pod = dep["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in ports.values()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == port, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"
    assert container["command"] == ["fraudwatch", "worker"]


@pytest.mark.unit
def test_k8s_replicas_never_exceed_partitions() -> None:
    partitions = int(_configmap_env()["FW_PARTITIONS"])
    dep = _worker_deployment()
    assert 1 <= dep["spec"]["replicas"] <= partitions
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    (hpa,) = _k8s_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraudwatch-worker"}
    assert 1 <= hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "fw_consumer_lag_messages"
    hpa_text = (K8S / "hpa.yaml").read_text()
    assert "metrics adapter" in hpa_text and "KEDA" in hpa_text  # the prerequisite is spelled out


@pytest.mark.unit
def test_k8s_references_resolve() -> None:
    dep = _worker_deployment()
    pod_spec = dep["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    names = {(d["kind"], d["metadata"]["name"]) for _, d in _k8s_docs()}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            assert ("ConfigMap", source["configMapRef"]["name"]) in names
        if "secretRef" in source:
            assert ("Secret", source["secretRef"]["name"]) in names
    for volume in pod_spec["volumes"]:
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in _k8s_kind("Deployment")]
    for deployment in _k8s_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in _k8s_kind("Service"):  # each Service selects the pods of exactly one Deployment
        assert sum(service["spec"]["selector"].items() <= labels.items() for labels in pod_labels) == 1
    (kustomization,) = _k8s_kind("Kustomization")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.template.yaml" not in kustomization["resources"]


@pytest.mark.unit
def test_k8s_secret_is_a_placeholder_and_receiver_not_deployed() -> None:
    values: dict[str, str] = {}
    for secret in _k8s_kind("Secret"):
        values.update({**secret.get("stringData", {}), **secret.get("data", {})})
    assert set(values) == {"FW_PSEUDONYM_KEY", "FW_CONSOLE_TICKET_KEY", "console-tokens.json"}
    assert all("placeholder" in value.lower() for value in values.values())
    assert "FW_PSEUDONYM_KEY" not in _configmap_env()
    for path in K8S_FILES:
        assert "sandbox.receiver" not in path.read_text(), path.name
    assert not _configmap_env()["FW_DISPATCH_URL"].startswith("http://receiver")


@pytest.mark.unit
def test_k8s_dispatch_service_is_deployed_with_two_replicas_probes_secrets_and_a_budget() -> None:
    (dep,) = [d for d in _k8s_kind("Deployment") if d["metadata"]["name"] == "fraudwatch-dispatch"]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["fraudwatch", "dispatch"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    env = {e["name"]: e for e in container["env"]}
    assert env["FW_CONSOLE_TICKET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "fraudwatch-dispatch-secrets"
    secrets = {d["metadata"]["name"] for d in _k8s_kind("Secret")}
    assert {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v} <= secrets
    (pdb,) = [d for d in _k8s_kind("PodDisruptionBudget") if d["metadata"]["name"] == "fraudwatch-dispatch"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (service,) = [d for d in _k8s_kind("Service") if d["metadata"]["name"] == "fraudwatch-dispatch"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    compose = _compose()["services"]["dispatch"]
    assert compose["command"] == ["fraudwatch", "dispatch"] and compose["deploy"]["replicas"] == 2
    jobs = {job["job_name"] for job in _load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]}
    assert "fraudwatch-dispatch" in jobs


@pytest.mark.unit
def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    """Strict validation against the Kubernetes schemas (``kubernetes-validate``, a dev dependency)."""
    import kubernetes_validate

    for path, doc in _k8s_docs():
        if doc["kind"] == "Kustomization":
            continue  # not a cluster resource
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} {doc['kind']}: {exc}")


def _fw_env_to_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    fields = {key[3:].lower() for key in env if key.startswith("FW_")}
    unknown = fields - set(Settings.model_fields) - PENDING_SETTINGS
    assert not unknown, f"FW_ variables that are no setting: {sorted(unknown)}"
    for key in [k for k in os.environ if k.startswith("FW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()  # validates every value's type and bounds


@pytest.mark.unit
def test_k8s_configmap_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**_configmap_env(), "FW_PSEUDONYM_KEY": "test"}
    settings = _fw_env_to_settings(env, monkeypatch)
    assert settings.broker_url and settings.redis_url and settings.dispatch_url
    assert settings.worker_web_port == 6066


@pytest.mark.unit
def test_compose_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: str(v) for k, v in _compose()["services"]["worker"]["environment"].items()}
    env["FW_PSEUDONYM_KEY"] = "test"  # the compose value is an interpolation with a default
    settings = _fw_env_to_settings(env, monkeypatch)
    assert settings.partitions == int(env["FW_PARTITIONS"])


@pytest.mark.unit
def test_worker_web_bind_setting_is_read() -> None:
    assert "worker_web_bind" in Settings.model_fields
    from streams import build_worker

    settings = Settings(broker_url="kafka://127.0.0.1:1", redis_url="redis://127.0.0.1:1", worker_web_bind="0.0.0.0")
    assert build_worker(settings).app.conf.web_bind == "0.0.0.0"  # what the pods' probes need


# --- promtool ---------------------------------------------------------------------------------------------------


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.unit
@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
@needs_promtool
def test_promtool_check_config() -> None:
    result = _promtool("check", "config", PROM_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    result = _promtool("test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
@needs_promtool
def test_promtool_parses_dashboard_queries(tmp_path: Path) -> None:
    """Each dashboard query, with Grafana's variables filled in, as a recording rule promtool must accept."""
    substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}
    rules = []
    for i, (_title, expr) in enumerate(_dashboard_exprs()):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
