"""The alerting path and the stack's tooling: promtool rule tests for every alert,
Alertmanager's configuration rendered from .env, the .env check behind `make stack-up`,
compose-lint and hadolint clean, and the image's lock.

compose-lint and hadolint come with the test extra; promtool and amtool run where installed
(Debian's prometheus packages, which .ci/run installs); the rest needs none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
RENDER = ROOT / "deploy" / "alertmanager" / "render.sh"
CHECK_ENV = ROOT / "deploy" / "check-env"


def tool(name: str) -> str:
    """Return the path of a command-line tool, or skip the test naming it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed (compose-lint and hadolint: the test extra; "
            "promtool and amtool: Debian's prometheus packages, as in .ci/run)"
        )
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository; return its result (never raises on failure)."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def alert_names() -> set[str]:
    """Return the names of every alert rule in deploy/prometheus/alerts.yml."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Each alert appears in the promtool tests once expected to fire and once not."""
    tests = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alert_names() == fires, alert_names() ^ fires
    assert alert_names() - {"AlgotradeNoData", "AlgotradeServiceGone"} <= quiet | {
        "AlgotradeBookOutOfSync"
    }
    assert {"AlgotradeServiceGone", "AlgotradeNoData", "AlgotradeServiceDown"} <= alert_names()


def test_promtool_rule_tests_pass() -> None:
    """`promtool test rules` passes every case, and the config and rules check."""
    promtool = tool("promtool")
    result = run(promtool, "test", "rules", str(PROMETHEUS / "tests" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    checked = run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in checked.stdout


def test_a_vanished_target_fires_service_gone_where_up_never_reads_zero(tmp_path: Path) -> None:
    """The old rule alone (up == 0) stays silent for a container Docker's DNS dropped; the
    rules as they are fire AlgotradeServiceGone for it."""
    promtool = tool("promtool")
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    only_down = [r for r in rules["groups"][0]["rules"] if r["alert"] == "AlgotradeServiceDown"]
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "old", "rules": only_down}]})
    )
    case = {
        "interval": "15s",
        "input_series": [
            {"series": 'up{job="processor", instance="processor"}', "values": "1x4 stale"},
            {"series": 'up{job="collector", instance="collector"}', "values": "1x40"},
            {"series": 'up{job="trader", instance="trader"}', "values": "1x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "AlgotradeServiceDown", "exp_alerts": []},
        ],
    }
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "tests": [case]})
    )
    assert run(promtool, "test", "rules", str(tmp_path / "test.yml")).returncode == 0
    gone = {
        "exp_labels": {"severity": "critical", "job": "processor", "instance": "processor"},
        "exp_annotations": {
            "summary": "processor processor is gone: Prometheus finds no such target"
        },
    }
    case["alert_rule_test"] = [
        {"eval_time": "5m", "alertname": "AlgotradeServiceGone", "exp_alerts": [gone]}
    ]
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump({"rule_files": [str(PROMETHEUS / "alerts.yml")], "tests": [case]})
    )
    result = run(promtool, "test", "rules", str(tmp_path / "test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def render(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run render.sh --render-to with only ``env``; return its result and the output file."""
    out = tmp_path / "alertmanager.yml"
    result = run("sh", str(RENDER), "--render-to", str(out), env={"PATH": "/usr/bin:/bin", **env})
    return result, out


def test_alertmanager_config_has_the_webhook_and_each_complete_receiver(tmp_path: Path) -> None:
    """The webhook alone, or with Slack, Telegram and e-mail, renders a configuration that
    amtool accepts, with values quoted whatever they hold."""
    result, out = render(tmp_path, ALERT_WEBHOOK_URL='https://hooks.local/a"b\\c')
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    (receiver,) = config["receivers"]
    assert receiver["webhook_configs"] == [
        {"url": 'https://hooks.local/a"b\\c', "send_resolved": True}
    ]
    assert set(receiver) == {"name", "webhook_configs"}
    result, out = render(
        tmp_path,
        ALERT_WEBHOOK_URL="https://hooks.local/x",
        ALERT_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T/B/X",
        ALERT_SLACK_CHANNEL="#alerts",
        ALERT_TELEGRAM_BOT_TOKEN="123:abc",
        ALERT_TELEGRAM_CHAT_ID="-100123",
        ALERT_EMAIL_TO="ops@example.org",
        ALERT_SMTP_FROM="alerts@example.org",
        ALERT_SMTP_SMARTHOST="smtp.example.org:587",
        ALERT_SMTP_PASSWORD='p"w$x',
    )
    assert result.returncode == 0, result.stderr
    (receiver,) = yaml.safe_load(out.read_text())["receivers"]
    assert receiver["telegram_configs"][0]["chat_id"] == -100123
    assert receiver["email_configs"][0]["auth_password"] == 'p"w$x'
    assert receiver["slack_configs"][0]["channel"] == "#alerts"
    checked = run(tool("amtool"), "check-config", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "ALERT_WEBHOOK_URL is not set"),
        ({"ALERT_WEBHOOK_URL": "hooks.local/x"}, "must be an http:// or https:// URL"),
        (
            {"ALERT_WEBHOOK_URL": "https://h/x", "ALERT_SLACK_CHANNEL": "#a"},
            "Slack alerts need ALERT_SLACK_WEBHOOK_URL",
        ),
        (
            {
                "ALERT_WEBHOOK_URL": "https://h/x",
                "ALERT_TELEGRAM_BOT_TOKEN": "1:a",
                "ALERT_TELEGRAM_CHAT_ID": "chat",
            },
            "ALERT_TELEGRAM_CHAT_ID must be a number",
        ),
    ],
)
def test_alertmanager_refuses_an_incomplete_receiver(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    """A missing webhook, a receiver with some of its variables, or a malformed one stops
    Alertmanager with a message naming the variable, before any file is written."""
    result, out = render(tmp_path, **env)
    assert result.returncode == 2
    assert named in result.stderr
    assert not out.exists() or not out.read_text()


def completed_env(tmp_path: Path) -> Path:
    """Return .env.example with every change-me value replaced, as a user would."""
    text = (ROOT / ".env.example").read_text()
    text = re.sub(r"change-me[\w.-]*", "s3cr3t-P@ss:w/rd%", text)
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_stack_check_refuses_the_example_and_a_missing_password(tmp_path: Path) -> None:
    """deploy/check-env (make stack-up) names each change-me value, each required variable
    missing, and a Redis password with white space; a completed .env passes."""
    example = run("sh", str(CHECK_ENV), str(ROOT / ".env.example"))
    assert example.returncode == 2
    for name in ("MONGO_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "ALERT_WEBHOOK_URL"):
        assert f"{name} still has the example's change-me value" in example.stderr
    completed = completed_env(tmp_path)
    ok = run("sh", str(CHECK_ENV), str(completed))
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "broken.env"
    lines = completed.read_text().splitlines()
    broken.write_text(
        "\n".join(line for line in lines if not line.startswith("MONGO_PASSWORD="))
        + "\nREDIS_PASSWORD=two words\n"
    )
    bad = run("sh", str(CHECK_ENV), str(broken))
    assert bad.returncode == 2
    assert "MONGO_PASSWORD is not set" in bad.stderr
    assert "REDIS_PASSWORD holds white space" in bad.stderr


def test_make_stack_up_runs_the_check_first() -> None:
    """make stack-up, stack-build and stack-scale depend on stack-check (deploy/check-env)."""
    makefile = (ROOT / "Makefile").read_text()
    for target in ("stack-up", "stack-build", "stack-scale"):
        assert re.search(rf"^{target}: stack-check$", makefile, re.MULTILINE), target
    assert "deploy/check-env" in makefile


def compose_command() -> list[str]:
    """Return Docker Compose's command: v2's plugin where the client has it, else v1
    (Debian's docker-compose package, which .ci/run installs); skip without either."""
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    return [tool("docker-compose")]


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """Run ``compose config`` on docker-compose.yml with only ``env_file`` for variables."""
    env = {k: v for k, v in os.environ.items() if k.isupper() and not k.endswith(
        ("_USER", "_PASSWORD", "_URL", "_TOKEN", "_CHAT_ID", "_ADDRESS")
    )}  # fmt: skip
    return run(
        *compose_command(), "--project-directory", str(ROOT), "--env-file", str(env_file),
        "--file", str(ROOT / "docker-compose.yml"), "config", "--quiet", env=env,
    )  # fmt: skip


def test_compose_config_passes_with_a_complete_env_and_names_a_missing_variable(
    tmp_path: Path,
) -> None:
    """`docker compose config` on a completed .env passes with nothing on stderr (no
    warning, no unset variable defaulted to blank); on an empty one it fails naming the
    first required variable, and on one without a single password it names that one."""
    completed = completed_env(tmp_path)
    ok = compose_config(completed)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.strip() == "", ok.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = compose_config(empty)
    assert missing.returncode != 0
    assert "set MONGO_USER in .env" in missing.stderr, missing.stderr
    for name in ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "ALERT_WEBHOOK_URL"):
        partial = tmp_path / f"without-{name}.env"
        partial.write_text("\n".join(
            line for line in completed.read_text().splitlines()
            if not line.startswith(f"{name}=")
        ))  # fmt: skip
        refused = compose_config(partial)
        assert refused.returncode != 0, name
        assert name in refused.stderr, (name, refused.stderr)


def test_compose_lint_leaves_no_medium_finding_without_a_reason() -> None:
    """compose-lint at medium passes; every suppression in .compose-lint.yml has a reason."""
    config = yaml.safe_load((ROOT / ".compose-lint.yml").read_text())
    for rule, body in config["rules"].items():
        for service, reason in body["exclude_services"].items():
            assert len(reason) > 20, (rule, service)
            assert "TODO" not in reason, (rule, service)
    result = run(
        tool("compose-lint"), "check", "--strict-config", "--fail-on", "medium",
        "docker-compose.yml",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_is_pinned_and_hadolint_clean() -> None:
    """Base images by digest with their tag, apt and pip pinned, the lock installed offline;
    hadolint finds nothing."""
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(bases) == 2
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert "--requirement requirements.lock" in text
    assert "--no-index" in text
    assert "--constraint /tmp/requirements.lock" in text
    assert re.search(r"gcc=\S+", text)
    assert re.search(r"libc6-dev=\S+", text)
    version = re.search(r"^version = \"(.+)\"$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    assert f"ARG ALGOTRADE_VERSION={version[1]}" in text
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def locked() -> dict[str, str]:
    """Return requirements.lock as canonical name -> pinned version."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"not pinned exactly: {line}"
            pins[canonicalize_name(name)] = pinned
    return pins


def closure(name: str, extras: set[str]) -> set[str]:
    """Return every distribution ``name[extras]`` needs on this platform (installed ones)."""
    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        try:
            requires = distribution(current).requires or []
        except PackageNotFoundError:
            pytest.fail(f"{current} is not installed: cannot follow its requirements")
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": e}) for e in wanted | {""}):
                continue
            dep = canonicalize_name(requirement.name)
            if dep != canonicalize_name(name) and dep not in seen:
                seen.add(dep)
                todo.append((dep, set(requirement.extras)))
            elif dep == canonicalize_name(name):
                todo.append((dep, set(requirement.extras)))  # algotrade[test] -> [profiling]
    return seen


def test_the_lock_covers_what_the_image_installs() -> None:
    """Every distribution algotrade[profiling,trading] needs (what the Dockerfile installs)
    is pinned in requirements.lock, pyroscope-io and cryptography included."""
    text = (ROOT / "Dockerfile").read_text()
    extras = re.search(r'"algotrade\[([a-z,]+)\]==', text)
    assert extras, "the Dockerfile installs algotrade with extras"
    wanted = set(extras[1].split(","))
    assert wanted == {"profiling", "trading"}
    pins = locked()
    needed = closure("algotrade", wanted)
    assert {"pyroscope-io", "cryptography", "pymongo", "redis"} <= needed
    assert needed <= set(pins), needed - set(pins)
