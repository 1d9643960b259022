"""Static checks of the deployment files (no Docker, no network): docker-compose.yml, deploy/k8s,
deploy/systemd, deploy/grafana and deploy/Dockerfile agree with the code they start."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.constants import DEFAULT_QUEUE
from tasks.settings import Settings
from workers.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
DASHBOARD = DEPLOY / "grafana" / "vuq-dashboard.json"
SKIP_DIRS = {".venv", "venv", ".git", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
SKIP_FILES = {Path("tests/conformance/openapi.yaml")}  # api.video's own spec
SOFT_SHUTDOWN_S = 60  # workers/celeryconfig.py worker_soft_shutdown_timeout
VUQ_METRICS = ("vuq_jobs", "vuq_bytes_uploaded_total", "vuq_chunk_seconds", "vuq_retries_total", "vuq_active_leases")
FLOWER_METRICS = ("flower_events_total", "flower_task_runtime_seconds_bucket", "flower_worker_online")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


# ---------------------------------------------------------------- helpers


def yaml_files() -> list[Path]:
    found = []
    for path in sorted([*ROOT.rglob("*.yml"), *ROOT.rglob("*.yaml")]):
        rel = path.relative_to(ROOT)
        if SKIP_DIRS & set(rel.parts) or rel in SKIP_FILES:
            continue
        found.append(path)
    return found


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.y*ml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def k8s(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def k8s_containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc in k8s_docs():
        if doc["kind"] in WORKLOADS:
            spec = pod_spec(doc)
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                out.append((f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", c))
    return out


def is_vuq_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] == "vuq"


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def vuq_argv(command: Any, args: Any) -> list[str]:
    """The `vuq` argv a container runs: the image's ENTRYPOINT is `vuq`; an explicit command must be vuq."""
    command_argv, args_argv = as_argv(command), as_argv(args)
    if command_argv:
        assert Path(command_argv[0]).name == "vuq", f"container command does not run vuq: {command_argv}"
        return [*command_argv[1:], *args_argv]
    return args_argv


def vuq_invocations() -> list[tuple[str, list[str]]]:
    """Every place a vuq container or unit starts `vuq SUBCOMMAND …`."""
    found = []
    for name, svc in services().items():
        if is_vuq_image(svc.get("image", "")) or "build" in svc:
            found.append((f"compose/{name}", vuq_argv(svc.get("entrypoint"), svc.get("command"))))
    for where, c in k8s_containers():
        if is_vuq_image(c["image"]):
            found.append((where, vuq_argv(c.get("command"), c.get("args"))))
    for unit in sorted(SYSTEMD.glob("*.service")):
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                found.append((unit.name, vuq_argv(line.removeprefix("ExecStart=").lstrip("-@:+!"), None)))
    return found


def subcommands() -> set[str]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return set(actions[0].choices)


def option_values(argv: list[str], *names: str) -> list[str]:
    """Values of an option given as `--name value`, `--name=value` or `-Qvalue`."""
    values = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif arg.startswith(name + "=") or (len(name) == 2 and arg.startswith(name) and len(arg) > 2):
                values.append(arg[len(name):].lstrip("="))
    return values


def env_of_k8s(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(k8s("ConfigMap", ref["configMapRef"]["name"])["data"])
    env.update({e["name"]: str(e.get("value", "")) for e in container.get("env", [])})
    return env


def settings_from(env: dict[str, Any]) -> Settings:
    """The Settings a container gets from its non-secret environment (compose's ${VAR:-x} resolved to x)."""
    plain = {}
    for key, value in env.items():
        if not key.startswith("VUQ_") or key.endswith("_FILE"):
            continue
        text = str(value)
        m = re.fullmatch(r"\$\{[A-Z_]+:?-(.*)\}", text)
        plain[key] = m.group(1) if m else text
    return Settings.from_env(plain)


def seconds(duration: Any) -> float:
    """A compose duration: 1900, "1900s", "31m40s", "1h", "1.5s"."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def deployment_texts() -> dict[str, str]:
    paths = [COMPOSE, *sorted(K8S.glob("*.y*ml")), *sorted(SYSTEMD.iterdir()), DEPLOY / "Dockerfile"]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths if p.is_file()}


# ---------------------------------------------------------------- every YAML file parses


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_file_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert any(d is not None for d in docs), f"{path} holds no YAML document"


def test_the_deployment_yaml_files_are_among_those_parsed() -> None:
    found = {p.relative_to(ROOT) for p in yaml_files()}
    assert Path("docker-compose.yml") in found
    assert {p.relative_to(ROOT) for p in K8S.glob("*.yaml")} <= found
    assert len(list(K8S.glob("*.yaml"))) >= 8


# ---------------------------------------------------------------- commands match the CLI


def test_every_container_and_unit_runs_an_existing_vuq_subcommand() -> None:
    known = subcommands()
    invocations = vuq_invocations()
    started = set()
    for where, argv in invocations:
        assert argv, f"{where}: no vuq subcommand (the image's default CMD is not explicit enough)"
        assert argv[0] in known, f"{where}: `vuq {argv[0]}` is not a vuq command ({sorted(known)})"
        started.add((where.split("/")[0], argv[0]))
    for role in ("worker", "flower", "beat"):
        assert ("compose", role) in started
        assert any(place.startswith(("Deployment", "StatefulSet")) and cmd == role for place, cmd in started), role
    assert ("compose", "emulator") in started


def test_flower_options_use_the_equals_form() -> None:
    # Flower hands its arguments to tornado, which rejects `--port 5555` ("Option 'port' requires a value").
    flower = [(w, a) for w, a in vuq_invocations() if a and a[0] == "flower"]
    assert flower
    for where, argv in flower:
        for arg in argv[1:]:
            if arg.startswith("--"):
                assert "=" in arg, f"{where}: Flower option {arg!r} needs --name=value"


def test_queue_names_match_the_code() -> None:
    keda = k8s("ScaledObject", "vuq-worker")
    redis_triggers = [t for t in keda["spec"]["triggers"] if t["type"].startswith("redis")]
    assert redis_triggers
    for trigger in redis_triggers:
        assert trigger["metadata"]["listName"] == DEFAULT_QUEUE
        assert int(trigger["metadata"]["listLength"]) >= 1
        assert "activationListLength" in trigger["metadata"]
    assert keda["spec"]["scaleTargetRef"]["name"] == k8s("Deployment", "vuq-worker")["metadata"]["name"]
    for where, argv in vuq_invocations():
        for queue in option_values(argv, "-Q", "--queues"):
            assert queue == DEFAULT_QUEUE, f"{where}: -Q {queue}"
    envs = [svc.get("environment") or {} for svc in services().values()]
    envs += [env_of_k8s(c) for _, c in k8s_containers()]
    envs += [d["data"] for d in k8s_docs() if d["kind"] == "ConfigMap"]
    for env in envs:
        assert env.get("VUQ_QUEUE", DEFAULT_QUEUE) == DEFAULT_QUEUE


def test_keda_reads_the_redis_address_the_worker_has() -> None:
    trigger = k8s("ScaledObject", "vuq-worker")["spec"]["triggers"][0]["metadata"]
    worker = pod_spec(k8s("Deployment", "vuq-worker"))["containers"][0]
    env = env_of_k8s(worker)
    address = env[trigger["addressFromEnv"]] if "addressFromEnv" in trigger else trigger["address"]
    assert "://" not in address and address.rsplit(":", 1)[1].isdigit(), address
    assert address.split(":")[0] in env["VUQ_BROKER_URL"]
    cooldown = k8s("ScaledObject", "vuq-worker")["spec"]["cooldownPeriod"]
    assert cooldown >= Settings().chunk_time_limit_s / 2


# ---------------------------------------------------------------- environment variables exist


def test_every_vuq_variable_used_in_deployment_files_is_a_setting() -> None:
    source = (ROOT / "tasks" / "settings.py").read_text(encoding="utf-8")
    known = set(re.findall(r'"(VUQ_[A-Z_]+)"', source))
    assert {"VUQ_BROKER_URL", "VUQ_API_KEY_FILE", "VUQ_QUEUE"} <= known
    used: dict[str, set[str]] = {}
    for name, text in deployment_texts().items():
        for var in re.findall(r"\b(VUQ_[A-Z0-9_]*[A-Z0-9])\b", text):
            used.setdefault(var, set()).add(name)
    assert used, "no VUQ_* variable found in the deployment files"
    unknown = {var: sorted(where) for var, where in used.items() if var not in known}
    assert not unknown, f"not read by tasks/settings.py: {unknown}"


def test_k8s_configmap_is_a_valid_configuration() -> None:
    for doc in k8s_docs():
        if doc["kind"] == "ConfigMap":
            settings_from(doc["data"])  # raises ConfigError naming the variable


def test_secret_files_are_mounted_where_the_env_points() -> None:
    for where, c in k8s_containers():
        mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])]
        for e in c.get("env", []):
            if e["name"].startswith("VUQ_") and e["name"].endswith("_FILE"):
                assert any(e["value"].startswith(m) for m in mounts), f"{where}: {e['name']} is not mounted"
        secrets = {"VUQ_API_KEY", "VUQ_FLOWER_BASIC_AUTH", "VUQ_WEBHOOK_SECRET"}
        for e in c.get("env", []):
            assert e["name"] not in secrets or "value" not in e, f"{where}: a secret value in the manifest"


def test_worker_api_key_comes_from_a_file() -> None:
    worker = pod_spec(k8s("Deployment", "vuq-worker"))["containers"][0]
    assert "VUQ_API_KEY_FILE" in env_of_k8s(worker)
    flower = pod_spec(k8s("Deployment", "vuq-flower"))["containers"][0]
    assert "VUQ_FLOWER_BASIC_AUTH_FILE" in env_of_k8s(flower)


# ---------------------------------------------------------------- shutdown outlasts the time limit


def test_k8s_worker_grace_period_exceeds_time_limit_and_soft_shutdown() -> None:
    deployment = k8s("Deployment", "vuq-worker")
    spec = pod_spec(deployment)
    worker = spec["containers"][0]
    limit = settings_from(env_of_k8s(worker)).chunk_time_limit_s
    assert limit >= Settings().chunk_time_limit_s or "VUQ_CHUNK_TIME_LIMIT_S" in env_of_k8s(worker)
    assert spec["terminationGracePeriodSeconds"] > max(limit, Settings().chunk_time_limit_s) + SOFT_SHUTDOWN_S
    assert env_of_k8s(worker).get("REMAP_SIGTERM") == "SIGQUIT"


def test_compose_worker_stop_grace_period_exceeds_time_limit_and_soft_shutdown() -> None:
    worker = services()["worker"]
    limit = settings_from(worker.get("environment") or {}).chunk_time_limit_s
    assert seconds(worker["stop_grace_period"]) > max(limit, Settings().chunk_time_limit_s) + SOFT_SHUTDOWN_S


def test_systemd_worker_stop_timeout_exceeds_time_limit_and_soft_shutdown() -> None:
    text = (SYSTEMD / "vuq-worker.service").read_text(encoding="utf-8")
    timeout = re.search(r"^TimeoutStopSec=(\d+)s?$", text, re.M)
    assert timeout and int(timeout.group(1)) > Settings().chunk_time_limit_s + SOFT_SHUTDOWN_S
    assert re.search(r"^KillMode=mixed$", text, re.M), "SIGTERM must reach only the main worker process"
    assert re.search(r"^EnvironmentFile=/etc/vuq/vuq.env$", text, re.M)


def test_seconds_parser() -> None:
    assert seconds("1900s") == seconds("31m40s") == seconds(1900) == 1900
    with pytest.raises(AssertionError):
        seconds("1900 seconds")


# ---------------------------------------------------------------- singletons and scaling


def test_beat_runs_exactly_once() -> None:
    beat = k8s("Deployment", "vuq-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert not any(d["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}
                   and d["spec"]["scaleTargetRef"]["name"] == "vuq-beat" for d in k8s_docs())
    compose_beat = services()["beat"]
    assert compose_beat.get("deploy", {}).get("replicas", 1) == 1
    assert compose_beat.get("scale", 1) == 1


def test_flower_runs_once() -> None:
    flower = k8s("Deployment", "vuq-flower")
    assert flower["spec"]["replicas"] == 1
    probes = [pod_spec(flower)["containers"][0].get(p, {}) for p in ("livenessProbe", "readinessProbe")]
    assert all(p.get("httpGet", {}).get("path") == "/healthcheck" for p in probes)
    service = k8s("Service", "vuq-flower")
    assert service["spec"]["selector"].items() <= flower["spec"]["template"]["metadata"]["labels"].items()


def test_compose_worker_is_scalable() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "a host port mapping stops `--scale worker=N`"
    assert "hostname" not in worker
    assert any(v.split(":")[1] == "/videos" for v in worker.get("volumes", []) if isinstance(v, str))


def test_compose_services_all_have_healthchecks() -> None:
    for name, svc in services().items():
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"} if isinstance(check["test"], list) else True, name


def test_compose_dependencies_wait_for_health() -> None:
    all_services = services()
    for name in ("worker", "flower", "beat"):
        deps = all_services[name]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy", name
    for svc in all_services.values():
        for dep in svc.get("depends_on", {}):
            assert dep in all_services


def test_compose_redis_is_durable_and_never_evicts() -> None:
    redis = services()["redis"]
    argv = as_argv(redis["command"])
    assert option_values(argv, "--appendonly") == ["yes"]
    assert option_values(argv, "--maxmemory-policy") == ["noeviction"]
    assert redis.get("volumes"), "the AOF needs a volume"


def test_k8s_redis_is_durable_and_never_evicts() -> None:
    text = (K8S / "redis-statefulset.yaml").read_text(encoding="utf-8")
    redis = [c for _, c in k8s_containers() if c["image"].startswith("redis")]
    if not redis:
        assert re.search(r"managed Redis", text, re.I)
        return
    argv = [*as_argv(redis[0].get("command")), *as_argv(redis[0].get("args"))]
    assert option_values(argv, "--appendonly") == ["yes"]
    assert option_values(argv, "--maxmemory-policy") == ["noeviction"]


def test_compose_vuq_services_share_one_image() -> None:
    vuq = {name: svc for name, svc in services().items() if "build" in svc}
    assert set(vuq) == {"emulator", "worker", "flower", "beat"}
    for name, svc in vuq.items():
        assert svc["image"] == "vuq:local", name
        assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name


# ---------------------------------------------------------------- image and dashboard


def test_dockerfile_is_one_non_root_vuq_image_without_secrets() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r'^ENTRYPOINT \["vuq"\]$', text, re.M)
    assert re.search(r'^CMD \["worker"\]$', text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"PYTHONUNBUFFERED=1", text)
    assert not re.search(r"^(ENV|ARG)\b.*(KEY|SECRET|TOKEN|PASSWORD|BASIC_AUTH)", text, re.M)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "tests"} <= set(ignore)


def test_grafana_dashboard_shows_every_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (*VUQ_METRICS, *FLOWER_METRICS):
        assert re.search(rf"\b{metric}(_bucket|_sum|_count)?\b", exprs), f"no panel queries {metric}"
    targets = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for quantile in ("0.5", "0.95"):
        assert any(f"histogram_quantile({quantile}," in e and "vuq_chunk_seconds_bucket" in e for e in targets)
    assert re.search(r"rate\(vuq_bytes_uploaded_total\[", exprs)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
