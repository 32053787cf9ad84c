"""The docker-compose stack as files: it parses, pins its images, checks every container's
health, publishes the documented ports and keeps secrets out of the repository.

No Docker engine is needed; tests/e2e/test_services.py checks that the dashboard and alert
rules only name metrics the running services export.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.support.processes import metric_names, stack_metric_names

PORTS = {
    "mongo-express": {8081},
    "redis": {6379, 8001},
    "pyroscope": {4040},
    "prometheus": {9090},
    "grafana": {3000},
    "collector": {8080},
    "processor": {8082},
    "trader": {8083},
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """Return docker-compose.yml, parsed (anchors and merges resolved)."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def published(service: dict[str, Any]) -> set[int]:
    """Return the container ports a compose service publishes."""
    return {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])}


def test_every_service_is_pinned_and_has_a_healthcheck(compose: dict[str, Any]) -> None:
    """Each container has a pinned image (a version tag, never latest) or a build, and a
    healthcheck."""
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert "build" in service or re.search(r":v?\d", image), f"{name}: unpinned {image!r}"
        assert ":latest" not in image, name
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


def test_the_documented_ports_are_published(compose: dict[str, Any]) -> None:
    """mongo-express 8081, redis-stack 6379 and 8001, pyroscope 4040, prometheus 9090,
    grafana 3000 and the three services on 8080, 8082 and 8083."""
    for name, ports in PORTS.items():
        assert ports <= published(compose["services"][name]), name
    for name, port in (("collector", "8080"), ("processor", "8082"), ("trader", "8083")):
        assert compose["services"][name]["environment"]["ALGOTRADE_HTTP_PORT"] == port


def test_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    """The three services start once MongoDB and Redis are healthy."""
    for name in ("collector", "processor", "trader", "collector-2", "trader-2"):
        depends = compose["services"][name]["depends_on"]
        assert depends["mongo"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_mongo_is_a_replica_set_and_redis_persists(compose: dict[str, Any]) -> None:
    """MongoDB runs as a replica set on a volume; Redis appends to a file on a volume."""
    mongo, redis = compose["services"]["mongo"], compose["services"]["redis"]
    assert "--replSet" in " ".join(mongo["entrypoint"])
    assert any(v.endswith(":/data/db") for v in mongo["volumes"])
    assert "--appendonly yes" in redis["environment"]["REDIS_ARGS"]
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_the_scale_profile_splits_symbols_and_shares_the_group(compose: dict[str, Any]) -> None:
    """The scale profile adds a collector on other symbols and a second trader."""
    services = compose["services"]
    second = services["collector-2"]
    assert second["profiles"] == ["scale"]
    assert services["trader-2"]["profiles"] == ["scale"]
    assert (
        second["environment"]["ALGOTRADE_SYMBOL"]
        != services["collector"]["environment"]["ALGOTRADE_SYMBOL"]
    )
    assert "ALGOTRADE_CONSUMER" not in services["trader-2"]["environment"]  # host-pid: unique


def test_no_secret_is_committed(compose: dict[str, Any]) -> None:
    """Every password, user and secret comes from .env and is required there (compose stops
    naming it when missing); none sits in a URL; .env is ignored by git."""
    text = (ROOT / "docker-compose.yml").read_text()
    secret_keys = re.compile(r"PASSWORD|_USER$|USERNAME|TOKEN|SECRET|API_KEY")
    values = [
        (key, str(value))
        for service in compose["services"].values()
        for key, value in service.get("environment", {}).items()
        if secret_keys.search(key)
    ]
    assert len(values) >= 12
    for key, value in values:
        variable = re.fullmatch(r"\$\{([A-Z_]+)(:\?set \1 in \.env.*|:-)\}", value)
        assert variable, f"{key}: {value!r} is not a variable from .env"
    assert not re.findall(r"://[^/@\s]*@", text), "credentials in a URL"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert {"MONGO_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
            "MONGO_EXPRESS_PASSWORD", "ALERT_WEBHOOK_URL"} <= required  # fmt: skip
    # A variable with neither a default nor :? would start the stack with a blank value.
    assert not re.findall(r"\$\{[A-Z_]+\}", text)
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert required <= defined, required - defined
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_every_container_is_confined_and_limited(compose: dict[str, Any]) -> None:
    """Each container: no-new-privileges, every capability dropped (MongoDB adds back only
    what its entrypoint needs), memory and CPU limits, ports on 127.0.0.1 by default."""
    for name, service in compose["services"].items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("cap_drop") == ["ALL"], name
        assert set(service.get("cap_add", [])) <= (
            {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"} if name == "mongo" else set()
        ), name
        limits = service["deploy"]["resources"]["limits"]
        assert limits.get("memory"), name
        assert limits.get("cpus"), name
        for port in service.get("ports", []):
            host = str(port).rsplit(":", 2)[0]
            assert host in {
                "${STACK_BIND_ADDRESS:-127.0.0.1}",
                "${GRAFANA_BIND_ADDRESS:-127.0.0.1}",
            }, f"{name}: {port} is published on every interface"


def test_alertmanager_receives_prometheus_alerts(compose: dict[str, Any]) -> None:
    """Prometheus sends alerts to the pinned, health-checked Alertmanager of the stack."""
    service = compose["services"]["alertmanager"]
    assert re.search(r":v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}$", service["image"])
    assert "/-/healthy" in " ".join(service["healthcheck"]["test"])
    assert service["entrypoint"] == ["/bin/sh", "/etc/alertmanager/render.sh"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    depends = compose["services"]["prometheus"]["depends_on"]
    assert depends["alertmanager"]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_three_services_and_alerts_parse() -> None:
    """Prometheus scrapes each service's port; the alert rules cover the issue's list."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    ports = {
        job["job_name"]: {sd["port"] for sd in job["dns_sd_configs"]}
        for job in config["scrape_configs"]
    }
    assert ports == {"collector": {8080}, "processor": {8082}, "trader": {8083}}
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "AlgotradeNoData",
        "AlgotradeBookOutOfSync",
        "AlgotradeConsumerLag",
        "AlgotradeDeadLetters",
        "AlgotradeErrorRate",
        "AlgotradeOrderWorking",
        "AlgotradeTradingHalted",
        "AlgotradeExchangeTrouble",
        "AlgotradeClockSkew",
    } <= names


def test_the_dashboard_parses_and_every_panel_queries() -> None:
    """The provisioned Grafana dashboard is valid JSON and each panel has a query."""
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/algotrade.json").read_text())
    assert dashboard["uid"] == "algotrade"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    topics = ("ingest", "gaps", "latency", "signals", "orders", "lag", "cpu", "memory",
              "connection", "clock skew", "exchange requests", "working")  # fmt: skip
    for topic in topics:
        assert topic in titles, topic
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yml").read_text()
    )
    assert {s["type"] for s in sources["datasources"]} == {
        "prometheus",
        "grafana-pyroscope-datasource",
    }


def test_every_panel_and_alert_is_valid_promql_over_documented_metrics() -> None:
    """Each dashboard and alert expression parses as PromQL (no Prometheus runs in the
    tests: a typo would show as an empty panel or an alert that never fires), and every
    metric it selects is one docs/operations.md lists (the e2e tests check they are
    exported)."""
    documented = set(re.findall(r"`(algotrade_[a-z_]+)", (ROOT / "docs/operations.md").read_text()))
    named = stack_metric_names()  # raises ValueError naming an expression that is not PromQL
    assert {n for n in named if n.startswith("algotrade_")} <= documented
    assert {n for n in named if not n.startswith("algotrade_")} <= {
        "process_cpu_seconds_total", "process_resident_memory_bytes",
    }  # fmt: skip
    with pytest.raises(ValueError, match=re.escape("not PromQL: 'sum(rate(x")):
        metric_names(["sum(rate(x[5m])"])


def test_the_image_is_multi_stage_non_root_with_a_healthcheck() -> None:
    """The Dockerfile builds in one stage (with a C compiler, for the compiled hot path),
    runs in another (without one) as a non-root user, and checks health."""
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    build, image = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert "gcc" in build
    assert "setup.py" in build
    assert "gcc" not in image
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user
    assert not user[-1].startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK .*", text, re.MULTILINE)


def test_the_lock_file_pins_every_runtime_dependency() -> None:
    """requirements.lock (nox -s lock, audited by nox -s audit) pins each dependency."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=~! ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    locked = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    assert names - locked == set()


def test_the_processor_runs_the_strategy_the_env_file_names(compose: dict[str, Any]) -> None:
    """The processor gets ALGOTRADE_STRATEGY and ALGOTRADE_PARAMS from .env and ./strategies
    read-only at the image's workdir; .env.example's choice, and the mounted example it
    suggests, resolve to strategies with those parameters."""
    from algotrade.apps.settings import StrategySettings
    from algotrade.apps.strategies import split_params

    processor = compose["services"]["processor"]
    env = processor["environment"]
    assert env["ALGOTRADE_STRATEGY"] == "${ALGOTRADE_STRATEGY:-sma_crossover}"
    assert env["ALGOTRADE_PARAMS"] == "${ALGOTRADE_PARAMS:-}"
    assert env["ALGOTRADE_SHORT"] == "${ALGOTRADE_SHORT:-}"  # empty: the strategy's default
    assert "./strategies:/app/strategies:ro" in processor["volumes"]
    assert re.search(r"^WORKDIR /app$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("ALGOTRADE_")
    )
    chosen = StrategySettings(
        name=example["ALGOTRADE_STRATEGY"],
        params=tuple(split_params(example["ALGOTRADE_PARAMS"].split())),
    ).spec()
    assert chosen.build().params == (("short", 50), ("long", 200))
    suggested = re.search(
        r"ALGOTRADE_STRATEGY=(strategies/\S+) with ALGOTRADE_PARAMS=(\S+)",
        (ROOT / ".env.example").read_text(),
    )
    assert suggested is not None
    mounted = StrategySettings(
        name=str(ROOT / suggested[1]), params=tuple(split_params([suggested[2]]))
    ).spec()
    assert dict(mounted.build().params)["window"] == 30
