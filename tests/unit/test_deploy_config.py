"""Static checks of the deployment files (no Docker, no network): docker-compose.yml,
deploy/compose.sentinel.yml, deploy/k8s (and k8s/sentinel), deploy/systemd, deploy/grafana and
deploy/Dockerfile agree with the code they start."""

from __future__ import annotations

import argparse
import copy
import json
import os
import posixpath
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from tasks.constants import DEFAULT_QUEUE
from tasks.job.connections import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, is_sentinel, sentinel_nodes, url_password
from tasks.outbound import is_loopback
from tasks.settings import Settings
from workers.console.cli import build_parser
from workers.console.endings import UsageError
from workers.console.launch import flower_args

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
SENTINEL_COMPOSE = DEPLOY / "compose.sentinel.yml"
COMPOSE_FILES = (COMPOSE, SENTINEL_COMPOSE)
K8S = DEPLOY / "k8s"
K8S_SENTINEL = K8S / "sentinel"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "vuq-dashboard.json"
SKIP_DIRS = {".venv", "venv", ".git", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
SKIP_FILES = {Path("tests/conformance/openapi.yaml")}  # api.video's own spec
SOFT_SHUTDOWN_S = 60  # workers/process/celeryconfig.py worker_soft_shutdown_timeout
FLOWER_METRICS = ("flower_events_total", "flower_task_runtime_seconds_bucket", "flower_worker_online")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
VUQ_ROLES = ("worker", "flower", "beat")
# Values that must never be interpolated into a command line (compose `${…}`, Kubernetes `$(…)`).
SECRET_VARIABLES = {"VUQ_API_KEY", "VUQ_FLOWER_BASIC_AUTH", "VUQ_WEBHOOK_SECRET", "VUQ_SENTINEL_PASSWORD",
                    "VUQ_BROKER_URL", "VUQ_REDIS_URL", "REDIS_PASSWORD", "SENTINEL_PASSWORD", "VUQ_REDIS_PASSWORD"}
SECRET_OPTIONS = ("--basic_auth", "--basic-auth", "--auth=", "--requirepass", "--masterauth", "--pass")
UNAUTHENTICATED_FLAG = "--unauthenticated"
# The sentinel:// URL's password placeholder when compose's ${REDIS_PASSWORD:?…} is resolved here.
REQUIRED_PLACEHOLDER = "required0{name}"


# ---------------------------------------------------------------- helpers: files


def yaml_files() -> list[Path]:
    found = []
    for path in sorted([*ROOT.rglob("*.yml"), *ROOT.rglob("*.yaml")]):
        rel = path.relative_to(ROOT)
        if SKIP_DIRS & set(rel.parts) or rel in SKIP_FILES:
            continue
        found.append(path)
    return found


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def services(path: Path = COMPOSE) -> dict[str, dict[str, Any]]:
    return compose(path)["services"]


def vuq_services(path: Path) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services(path).items() if is_vuq_image(svc.get("image", "")) or "build" in svc}


def k8s_docs(directory: Path = K8S) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(directory.glob("*.y*ml")):
        loaded = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        docs += [d for d in loaded if isinstance(d, dict) and "kind" in d]
    return docs


def k8s(kind: str, name: str, directory: Path = K8S) -> dict[str, Any]:
    matches = [d for d in k8s_docs(directory) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name} in {directory}, found {len(matches)}"
    return matches[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def k8s_containers(directory: Path = K8S) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc in k8s_docs(directory):
        if doc["kind"] in WORKLOADS:
            spec = pod_spec(doc)
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                out.append((f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", c))
    return out


def all_k8s_containers() -> list[tuple[str, dict[str, Any]]]:
    return [*k8s_containers(K8S), *k8s_containers(K8S_SENTINEL)]


def deployment_texts() -> dict[str, str]:
    paths = [*COMPOSE_FILES, *sorted(K8S.glob("*.y*ml")), *sorted(K8S_SENTINEL.glob("*.y*ml")),
             *sorted(SYSTEMD.iterdir()), DOCKERFILE]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths if p.is_file()}


def settings_names() -> set[str]:
    """Every VUQ_* name tasks/settings.py reads, from its source (a string literal naming it)."""
    source = (ROOT / "tasks" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r'"(VUQ_[A-Z0-9_]+)"', source))


def dockerfile_build_args() -> dict[str, str]:
    """The Dockerfile's ARGs (after its last FROM, where RUN sees them) and their defaults."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    stage = text[text.rindex("\nFROM "):]
    return {m.group(1): m.group(2) or "" for m in re.finditer(r"^ARG (\w+)(?:=(\S*))?$", stage, re.M)}


# ---------------------------------------------------------------- helpers: commands and environments


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


def systemd_exec_starts() -> list[tuple[str, list[str]]]:
    found = []
    for unit in sorted(SYSTEMD.glob("*.service")):
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                found.append((unit.name, as_argv(line.removeprefix("ExecStart=").lstrip("-@:+!"))))
    return found


def vuq_invocations() -> list[tuple[str, list[str]]]:
    """Every place a vuq container or unit starts `vuq SUBCOMMAND …` (the argv after `vuq`)."""
    found = []
    for path in COMPOSE_FILES:
        for name, svc in vuq_services(path).items():
            found.append((f"{path.name}/{name}", vuq_argv(svc.get("entrypoint"), svc.get("command"))))
    for where, c in all_k8s_containers():
        if is_vuq_image(c["image"]):
            found.append((where, vuq_argv(c.get("command"), c.get("args"))))
    for unit, argv in systemd_exec_starts():
        found.append((unit, vuq_argv(argv, None)))
    return found


def probe_commands() -> list[tuple[str, list[str]]]:
    """Every healthcheck and exec probe, as an argv (CMD-SHELL and `sh -c` as their shell text)."""
    found = []
    for path in COMPOSE_FILES:
        for name, svc in services(path).items():
            test = (svc.get("healthcheck") or {}).get("test")
            if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
                found.append((f"{path.name}/{name}/healthcheck", test[1:]))
            elif test:
                found.append((f"{path.name}/{name}/healthcheck", as_argv(test)))
    for where, c in all_k8s_containers():
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = (c.get(probe) or {}).get("exec", {}).get("command")
            if command:
                found.append((f"{where}/{probe}", [str(a) for a in command]))
    return found


def shell_vuq_subcommands(text: str) -> list[str]:
    """`vuq SUBCOMMAND` started inside a shell command line."""
    return re.findall(r"(?:^|[;&|(]\s*|\bexec\s+)(?:\S*/)?vuq\s+([a-z][a-z-]*)", text)


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


_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, environment: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """Compose's interpolation of ``text`` without a shell environment (or with ``environment``):
    ``${X:-d}`` gives d, ``${X:?msg}`` a placeholder (and X is reported as required), ``$$`` a ``$``."""
    environment = environment or {}
    required: set[str] = set()

    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op = m.group("name"), m.group("op") or ""
        if name in environment:
            return environment[name]
        if op.endswith("?"):
            required.add(name)
            return REQUIRED_PLACEHOLDER.format(name=name.lower().replace("_", "0"))
        return m.group("arg") if op.endswith("-") else ""

    return _COMPOSE_VARIABLE.sub(value, text), required


def compose_env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def secret_data(doc: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (doc.get("stringData") or {}).items()}


def env_of_k8s(container: dict[str, Any], docs: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """A container's environment: its ConfigMaps, its env values, and secretKeyRef values from the
    (template) Secrets among ``docs``."""
    docs = k8s_docs() if docs is None else docs
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(maps[ref["configMapRef"]["name"]])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[e["name"]] = ""
    return env


def settings_from(env: dict[str, Any]) -> Settings:
    """The Settings a container gets from its non-secret environment (compose's ${VAR:-x} resolved to x,
    ${VAR:?…} to a placeholder); files (…_FILE) are left out."""
    plain = {}
    for key, value in env.items():
        if key.startswith("VUQ_") and not key.endswith("_FILE"):
            plain[key] = interpolate(str(value))[0]
    return Settings.from_env(plain)


def seconds(duration: Any) -> float:
    """A compose duration: 1900, "1900s", "31m40s", "1h", "1.5s"."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def mounted_file(container: dict[str, Any], spec: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume a file path of ``container`` lies on (None if no mount covers it)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root):
            return volumes[mount["name"]]
    return None


def secret_items(volume: dict[str, Any]) -> set[str] | None:
    """The files a Secret volume holds (None: every key of the Secret)."""
    items = volume["secret"].get("items")
    return None if items is None else {item["path"] for item in items}


def json_patch(doc: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 `add` (what vuq-patch.yaml uses), strictly: every parent must exist."""
    doc = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] == "add", f"only add is expected in the patch, not {op['op']}"
        *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        target: Any = doc
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            target[last] = copy.deepcopy(op["value"])
    return doc


# ---------------------------------------------------------------- every YAML file parses


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_file_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert any(d is not None for d in docs), f"{path} holds no YAML document"


def test_the_deployment_yaml_files_are_among_those_parsed() -> None:
    found = {p.relative_to(ROOT) for p in yaml_files()}
    assert {Path("docker-compose.yml"), Path("deploy/compose.sentinel.yml")} <= found
    assert {p.relative_to(ROOT) for p in K8S.glob("*.yaml")} <= found
    assert {p.relative_to(ROOT) for p in K8S_SENTINEL.glob("*.yaml")} <= found
    assert len(list(K8S.glob("*.yaml"))) >= 8
    assert len(list(K8S_SENTINEL.glob("*.yaml"))) >= 4


# ---------------------------------------------------------------- commands match the CLI


def test_every_container_and_unit_runs_an_existing_vuq_subcommand() -> None:
    known = subcommands()
    started = set()
    for where, argv in vuq_invocations():
        assert argv, f"{where}: no vuq subcommand (the image's default CMD is not explicit enough)"
        assert argv[0] in known, f"{where}: `vuq {argv[0]}` is not a vuq command ({sorted(known)})"
        started.add((where.split("/")[0], argv[0]))
    for role in VUQ_ROLES:
        for path in COMPOSE_FILES:
            assert (path.name, role) in started, (path.name, role)
        assert any(place.startswith(("Deployment", "StatefulSet")) and cmd == role for place, cmd in started), role
        assert (f"vuq-{role}.service", role) in started
    for path in COMPOSE_FILES:
        assert (path.name, "emulator") in started


def test_every_vuq_command_in_probes_and_docs_exists() -> None:
    known = subcommands()
    used: list[tuple[str, str]] = []
    for where, argv in probe_commands():
        if argv and Path(argv[0]).name == "vuq":
            used.append((where, argv[1] if len(argv) > 1 else ""))
        for text in argv:
            used += [(where, sub) for sub in shell_vuq_subcommands(text)]
    # commands shown to people: `vuq …` in backquotes, and `docker compose run … SERVICE SUBCOMMAND`
    docs = {**deployment_texts(), "deploy/README.md": (DEPLOY / "README.md").read_text(encoding="utf-8")}
    for name, text in docs.items():
        used += [(name, sub) for sub in re.findall(r"`vuq ([a-z][a-z-]*)", text)]
        used += [(name, sub) for sub in re.findall(r"compose\b[^\n`]*? run (?:--rm )?worker ([a-z][a-z-]*)", text)]
    assert any(sub == "health" for _, sub in used)
    unknown = [(where, sub) for where, sub in used if sub not in known]
    assert not unknown, f"not vuq commands ({sorted(known)}): {unknown}"


def test_flower_options_use_the_equals_form() -> None:
    # `vuq flower` joins `--port 5555` for tornado (which rejects the space form); the files use `=`.
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
    envs = [compose_env(svc) for path in COMPOSE_FILES for svc in services(path).values()]
    envs += [env_of_k8s(c) for _, c in k8s_containers()]
    envs += [d["data"] for d in k8s_docs(K8S) + k8s_docs(K8S_SENTINEL) if d["kind"] == "ConfigMap"]
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
    known = settings_names()
    assert {"VUQ_BROKER_URL", "VUQ_API_KEY_FILE", "VUQ_QUEUE", "VUQ_RATE_LIMITS", "VUQ_SENTINEL_MASTER",
            "VUQ_HEALTH_IDLE_S", "VUQ_BEAT_SCHEDULE"} <= known
    build_args = set(dockerfile_build_args())  # build time only, never read by vuq
    used: dict[str, set[str]] = {}
    for name, text in deployment_texts().items():
        for var in re.findall(r"\b(VUQ_[A-Z0-9_]*[A-Z0-9])\b", text):
            if not (name == "deploy/Dockerfile" and var in build_args):
                used.setdefault(var, set()).add(name)
    assert used, "no VUQ_* variable found in the deployment files"
    unknown = {var: sorted(where) for var, where in used.items() if var not in known}
    assert not unknown, f"not read by tasks/settings.py: {unknown}"


def test_deployments_show_the_new_settings_with_the_code_defaults() -> None:
    defaults = Settings()
    expected = {"VUQ_JOB_RETENTION_S": defaults.job_retention_s,
                "VUQ_FAILED_JOB_RETENTION_S": defaults.failed_job_retention_s}
    texts = deployment_texts()
    for name in ("docker-compose.yml", "deploy/compose.sentinel.yml", "deploy/k8s/configmap.yaml",
                 "deploy/k8s/sentinel/vuq-configmap.yaml", "deploy/systemd/vuq.env.example"):
        text = texts[name]
        for var in ("VUQ_RATE_LIMITS", "VUQ_ALLOWED_PRIVATE_NETS", *expected):
            assert var in text, f"{name} does not mention {var}"
        for var, default in expected.items():
            shown = re.findall(rf"^\s*#\s*{var}[:=]\s*\"?(\d+)\"?", text, re.M)
            assert shown == [str(default)], f"{name}: {var} shown as {shown}, the code's default is {default}"
    for name in ("docker-compose.yml", "deploy/k8s/configmap.yaml", "deploy/systemd/vuq.env.example"):
        assert "VUQ_HEALTH_IDLE_S" in texts[name], name


def test_configurations_are_valid_settings() -> None:
    for doc in k8s_docs():
        if doc["kind"] == "ConfigMap":
            settings_from(doc["data"])  # raises ConfigError naming the variable
    for path in COMPOSE_FILES:
        for name, svc in vuq_services(path).items():
            if name != "emulator":
                settings_from(compose_env(svc))
    env_file = (SYSTEMD / "vuq.env.example").read_text(encoding="utf-8")
    settings_from(dict(line.split("=", 1) for line in env_file.splitlines() if line and not line.startswith("#")))


def test_secret_files_are_mounted_where_the_env_points() -> None:
    for where, c, spec in [*workload_containers(K8S), *patched_sentinel_containers()]:
        for e in c.get("env", []):
            if e["name"].startswith("VUQ_") and e["name"].endswith("_FILE"):
                volume = mounted_file(c, spec, e["value"])
                assert volume is not None, f"{where}: {e['name']} is not mounted"
                if "secret" in volume:
                    items = secret_items(volume)
                    assert items is None or posixpath.basename(e["value"]) in items, where
        for e in c.get("env", []):
            name = e["name"]
            assert name not in SECRET_VARIABLES or "value" not in e, f"{where}: a secret value in the manifest"


def test_worker_api_key_comes_from_a_file() -> None:
    worker = pod_spec(k8s("Deployment", "vuq-worker"))["containers"][0]
    assert "VUQ_API_KEY_FILE" in env_of_k8s(worker)
    flower = pod_spec(k8s("Deployment", "vuq-flower"))["containers"][0]
    assert "VUQ_FLOWER_BASIC_AUTH_FILE" in env_of_k8s(flower)


def test_no_secret_on_a_command_line() -> None:
    argvs = [(w, a) for w, a in vuq_invocations()]
    argvs += probe_commands()
    argvs += [(f"{p.name}/{n}", as_argv(s.get("command"))) for p in COMPOSE_FILES for n, s in services(p).items()]
    argvs += [(w, [*as_argv(c.get("command")), *as_argv(c.get("args"))]) for w, c in all_k8s_containers()]
    argvs += systemd_exec_starts()
    for where, argv in argvs:
        for arg in argv:
            assert not arg.startswith(SECRET_OPTIONS), f"{where}: {arg.split('=')[0]} on a command line"
            assert arg != "-a", f"{where}: redis-cli -a shows the password (use REDISCLI_AUTH)"
            assert arg != UNAUTHENTICATED_FLAG, f"{where}: {UNAUTHENTICATED_FLAG}"
            unescaped = arg.replace("$$", "")
            for var in SECRET_VARIABLES:
                # compose interpolates ${VAR} / $VAR, Kubernetes $(VAR), systemd ${VAR} / $VAR
                assert not re.search(rf"\$(\{{|\(|){var}\b", unescaped), f"{where}: {var} on a command line"


# ---------------------------------------------------------------- Flower beyond loopback needs a login


def flower_address(options: list[str]) -> str:
    addresses = [o.split("=", 1)[1] for o in options if o.startswith("--address=")]
    return addresses[-1] if addresses else "127.0.0.1"




def flower_auth_sources() -> list[tuple[str, list[str], str | None]]:
    """(where, Flower's options, where its basic auth comes from or None) for every Flower started."""
    found: list[tuple[str, list[str], str | None]] = []
    for path in COMPOSE_FILES:
        for name, svc in vuq_services(path).items():
            argv = vuq_argv(svc.get("entrypoint"), svc.get("command"))
            if argv[:1] == ["flower"]:
                env = compose_env(svc)
                auth = env.get("VUQ_FLOWER_BASIC_AUTH", "")
                # no default: compose refuses to start without it (${VAR:?message})
                required = re.fullmatch(r"\$\{VUQ_FLOWER_BASIC_AUTH:\?[^}]+\}", auth)
                found.append((f"{path.name}/{name}", argv[1:], "environment" if required else None))
    for kind_name, c, spec in workload_containers(K8S):
        argv = vuq_argv(c.get("command"), c.get("args"))
        if is_vuq_image(c["image"]) and argv[:1] == ["flower"]:
            env = {e["name"]: e for e in c.get("env", [])}
            source = None
            if "VUQ_FLOWER_BASIC_AUTH_FILE" in env:
                volume = mounted_file(c, spec, env["VUQ_FLOWER_BASIC_AUTH_FILE"]["value"])
                source = "secret file" if volume is not None and "secret" in volume else None
            found.append((kind_name, argv[1:], source))
    env_example = (SYSTEMD / "vuq.env.example").read_text(encoding="utf-8")
    for unit, argv in systemd_exec_starts():
        if vuq_argv(argv, None)[:1] == ["flower"]:
            unit_text = (SYSTEMD / unit).read_text(encoding="utf-8")
            has_file = re.search(r"^VUQ_FLOWER_BASIC_AUTH_FILE=/\S+$", env_example, re.M)
            reads_env = re.search(r"^EnvironmentFile=/etc/vuq/vuq.env$", unit_text, re.M)
            found.append((unit, vuq_argv(argv, None)[1:], "env file" if has_file and reads_env else None))
    return found


def workload_containers(directory: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for doc in k8s_docs(directory):
        if doc["kind"] in WORKLOADS:
            spec = pod_spec(doc)
            for c in spec["containers"]:
                out.append((f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", c, spec))
    return out


def test_flower_beyond_loopback_always_has_authentication() -> None:
    sources = flower_auth_sources()
    assert len(sources) == 4  # two compose files, Kubernetes, systemd
    beyond = 0
    for where, options, auth in sources:
        address = flower_address(options)
        if not is_loopback(address):
            beyond += 1
            assert auth, f"{where}: Flower on {address} without basic auth from a secret"
        # what `vuq flower` makes of these options: accepted with the login, refused without it
        with mock.patch.dict(os.environ):
            for var in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER"):
                os.environ.pop(var, None)
            if auth:
                flower_args(options, Settings(flower_basic_auth="ops:secret"))
            if not is_loopback(address):
                os.environ.pop("FLOWER_BASIC_AUTH", None)
                with pytest.raises(UsageError):
                    flower_args(options, Settings())
    assert beyond >= 3  # compose (both) and Kubernetes bind 0.0.0.0 in the container


# ---------------------------------------------------------------- liveness


def test_k8s_worker_liveness_runs_vuq_health() -> None:
    spec = pod_spec(k8s("Deployment", "vuq-worker"))
    worker = spec["containers"][0]
    liveness, startup = worker["livenessProbe"], worker.get("startupProbe")
    for probe in (liveness, startup):
        assert probe, "the worker needs a startup probe (it reports only once ready) and a liveness probe"
        argv = probe["exec"]["command"]
        assert Path(argv[0]).name == "vuq" and argv[1:] == ["health"], argv
        # a slow Redis: every client waits up to CONNECT_TIMEOUT_S + SOCKET_TIMEOUT_S, plus Python's start
        assert probe["timeoutSeconds"] > CONNECT_TIMEOUT_S + SOCKET_TIMEOUT_S, probe
    assert liveness["failureThreshold"] >= 3
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 3 * 60
    # the health check reads what the worker writes: VUQ_HEALTH_DIR on a writable volume of the pod
    env = env_of_k8s(worker)
    health_dir = env.get("VUQ_HEALTH_DIR", "/tmp/vuq-health")
    volume = mounted_file(worker, spec, health_dir.rstrip("/") + "/x")
    assert volume is not None and "emptyDir" in volume, "VUQ_HEALTH_DIR must be on a writable volume"
    settings_from(env)  # VUQ_HEALTH_IDLE_S valid


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_worker_healthcheck_runs_vuq_health(path: Path) -> None:
    check = services(path)["worker"]["healthcheck"]
    assert check["test"] == ["CMD", "vuq", "health"]
    assert seconds(check["timeout"]) > CONNECT_TIMEOUT_S + SOCKET_TIMEOUT_S
    assert check["retries"] >= 3
    assert seconds(check["interval"]) * check["retries"] >= 3 * 60
    assert "start_period" in check


def test_nothing_pings_workers_through_celery_inspect() -> None:
    for name, text in deployment_texts().items():
        assert "inspect ping" not in text, f"{name}: use `vuq health` (a deaf worker still answers pings)"


# ---------------------------------------------------------------- beat's schedule file


def beat_schedule_checks() -> list[tuple[str, list[str], dict[str, str], str]]:
    """(where, beat's argv, its environment, its health check's text) for compose and Kubernetes."""
    found = []
    for path in COMPOSE_FILES:
        beat = services(path)["beat"]
        found.append((f"{path.name}/beat", vuq_argv(beat.get("entrypoint"), beat.get("command")),
                      compose_env(beat), " ".join(beat["healthcheck"]["test"])))
    container = pod_spec(k8s("Deployment", "vuq-beat"))["containers"][0]
    found.append(("Deployment/vuq-beat", vuq_argv(container.get("command"), container.get("args")),
                  env_of_k8s(container), " ".join(container["livenessProbe"]["exec"]["command"])))
    return found


def test_beat_schedule_is_vuq_beat_schedule_and_is_checked() -> None:
    for where, argv, env, check in beat_schedule_checks():
        schedule = env.get("VUQ_BEAT_SCHEDULE", "")
        assert schedule.startswith("/"), f"{where}: set VUQ_BEAT_SCHEDULE to an absolute path"
        given = option_values(argv, "-s", "--schedule")
        assert given in ([], [schedule]), f"{where}: --schedule {given} is not VUQ_BEAT_SCHEDULE"
        directory, base = posixpath.split(schedule)
        assert directory in check and base in check, f"{where}: the health check does not look at {schedule}"
    spec = pod_spec(k8s("Deployment", "vuq-beat"))
    container = spec["containers"][0]
    schedule = env_of_k8s(container)["VUQ_BEAT_SCHEDULE"]
    assert container["securityContext"].get("readOnlyRootFilesystem") is not True or (
        mounted_file(container, spec, schedule) is not None), "beat's schedule needs a writable volume"
    unit = (SYSTEMD / "vuq-beat.service").read_text(encoding="utf-8")
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.M)
    schedule_line = re.search(r"^Environment=VUQ_BEAT_SCHEDULE=(\S+)$", unit, re.M)
    assert state and schedule_line and schedule_line.group(1).startswith(f"/var/lib/{state.group(1)}/")


# ---------------------------------------------------------------- shutdown outlasts the time limit


def test_k8s_worker_grace_period_exceeds_time_limit_and_soft_shutdown() -> None:
    deployment = k8s("Deployment", "vuq-worker")
    spec = pod_spec(deployment)
    worker = spec["containers"][0]
    limit = settings_from(env_of_k8s(worker)).chunk_time_limit_s
    assert limit >= Settings().chunk_time_limit_s or "VUQ_CHUNK_TIME_LIMIT_S" in env_of_k8s(worker)
    assert spec["terminationGracePeriodSeconds"] > max(limit, Settings().chunk_time_limit_s) + SOFT_SHUTDOWN_S
    assert env_of_k8s(worker).get("REMAP_SIGTERM") == "SIGQUIT"
    sentinel_limit = settings_from(k8s("ConfigMap", "vuq-config", K8S_SENTINEL)["data"]).chunk_time_limit_s
    assert spec["terminationGracePeriodSeconds"] > sentinel_limit + SOFT_SHUTDOWN_S


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_worker_stop_grace_period_exceeds_time_limit_and_soft_shutdown(path: Path) -> None:
    worker = services(path)["worker"]
    limit = settings_from(compose_env(worker)).chunk_time_limit_s
    assert seconds(worker["stop_grace_period"]) > max(limit, Settings().chunk_time_limit_s) + SOFT_SHUTDOWN_S
    assert compose_env(worker).get("REMAP_SIGTERM") == "SIGQUIT"


def test_systemd_worker_stop_timeout_exceeds_time_limit_and_soft_shutdown() -> None:
    text = (SYSTEMD / "vuq-worker.service").read_text(encoding="utf-8")
    timeout = re.search(r"^TimeoutStopSec=(\d+)s?$", text, re.M)
    assert timeout and int(timeout.group(1)) > Settings().chunk_time_limit_s + SOFT_SHUTDOWN_S
    assert re.search(r"^KillMode=mixed$", text, re.M), "SIGTERM must reach only the main worker process"
    assert re.search(r"^EnvironmentFile=/etc/vuq/vuq.env$", text, re.M)


def test_systemd_health_dir_is_outside_the_private_tmp() -> None:
    unit = (SYSTEMD / "vuq-worker.service").read_text(encoding="utf-8")
    env = (SYSTEMD / "vuq.env.example").read_text(encoding="utf-8")
    if re.search(r"^PrivateTmp=(true|yes)$", unit, re.M):
        runtime = re.search(r"^RuntimeDirectory=(\S+)$", unit, re.M)
        health = re.search(r"^VUQ_HEALTH_DIR=(\S+)$", env, re.M)
        assert runtime and health, "with PrivateTmp, `vuq health` outside the unit needs VUQ_HEALTH_DIR elsewhere"
        assert health.group(1).startswith(f"/run/{runtime.group(1)}/")


def test_seconds_parser() -> None:
    assert seconds("1900s") == seconds("31m40s") == seconds(1900) == 1900
    with pytest.raises(AssertionError):
        seconds("1900 seconds")


def test_interpolation() -> None:
    text, required = interpolate("a${X:-d}b${Y:?need Y}c$$d${Z}")
    assert text == "adb" + REQUIRED_PLACEHOLDER.format(name="y") + "c$d"
    assert required == {"Y"}


# ---------------------------------------------------------------- singletons and scaling


def test_beat_runs_exactly_once() -> None:
    beat = k8s("Deployment", "vuq-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    for directory in (K8S, K8S_SENTINEL):
        assert not any(d["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}
                       and d["spec"]["scaleTargetRef"]["name"] == "vuq-beat" for d in k8s_docs(directory))
    for path in COMPOSE_FILES:
        compose_beat = services(path)["beat"]
        assert compose_beat.get("deploy", {}).get("replicas", 1) == 1
        assert compose_beat.get("scale", 1) == 1


def test_flower_runs_once() -> None:
    flower = k8s("Deployment", "vuq-flower")
    assert flower["spec"]["replicas"] == 1
    probes = [pod_spec(flower)["containers"][0].get(p, {}) for p in ("livenessProbe", "readinessProbe")]
    assert all(p.get("httpGet", {}).get("path") == "/healthcheck" for p in probes)
    service = k8s("Service", "vuq-flower")
    assert service["spec"]["selector"].items() <= flower["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_worker_is_scalable(path: Path) -> None:
    worker = services(path)["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "a host port mapping stops `--scale worker=N`"
    assert "hostname" not in worker
    assert any(v.split(":")[1] == "/videos" for v in worker.get("volumes", []) if isinstance(v, str))


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_services_all_have_healthchecks(path: Path) -> None:
    for name, svc in services(path).items():
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"} if isinstance(check["test"], list) else True, name


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_dependencies_wait_for_health(path: Path) -> None:
    all_services = services(path)
    redis = [name for name, svc in all_services.items() if str(svc.get("image", "")).startswith("redis")]
    for name in VUQ_ROLES:
        deps = all_services[name]["depends_on"]
        waited = [dep for dep in deps if dep in redis]
        assert waited, f"{name} starts before Redis"
        assert all(deps[dep]["condition"] == "service_healthy" for dep in waited), name
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
    expected_build = {COMPOSE: {"context": ".", "dockerfile": "deploy/Dockerfile"},
                      SENTINEL_COMPOSE: {"context": "..", "dockerfile": "deploy/Dockerfile"}}
    for path, build in expected_build.items():
        vuq = {name: svc for name, svc in services(path).items() if "build" in svc}
        assert set(vuq) == {"emulator", "worker", "flower", "beat"}, path.name
        for name, svc in vuq.items():
            assert svc["image"] == "vuq:local", name
            assert svc["build"] == build, name
            assert (path.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


# ---------------------------------------------------------------- Redis Sentinel: compose


def sentinel_compose_scripts() -> dict[str, str]:
    """The shell each Redis or sentinel service of compose.sentinel.yml runs, as the shell sees it."""
    scripts = {}
    for name, svc in services(SENTINEL_COMPOSE).items():
        if str(svc.get("image", "")).startswith("redis"):
            argv = as_argv(svc["command"])
            assert argv[:2] == ["sh", "-c"], f"{name}: expected sh -c SCRIPT"
            scripts[name] = interpolate(argv[2])[0]
    return scripts


def sentinel_config_names(text: str) -> dict[str, set[str]]:
    """The primary's name in every `sentinel <directive> NAME …` line, and `master=NAME` shell variables."""
    names: dict[str, set[str]] = {}
    for directive, name in re.findall(r"sentinel (monitor|down-after-milliseconds|failover-timeout|parallel-syncs|"
                                      r"auth-pass|get-master-addr-by-name) (\S+)", text):
        name = name.strip("'\"")
        if not name.startswith("$"):  # "$master": the shell variable, checked as master= below
            names.setdefault(directive, set()).add(name)
    for name in re.findall(r"^\s*master=(\S+)$", text, re.M):
        names.setdefault("master=", set()).add(name)
    return names


def test_compose_sentinel_names_one_primary_everywhere() -> None:
    scripts = sentinel_compose_scripts()
    sentinels = {n: s for n, s in scripts.items() if "--sentinel" in s}
    assert len(sentinels) == 3, "three sentinels: a quorum survives one"
    names = set()
    for script in sentinels.values():
        for directive, found in sentinel_config_names(script).items():
            assert len(found) == 1, f"{directive}: {found}"
            names |= found
        monitor = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script)
        assert monitor and int(monitor.group(4)) == len(sentinels) // 2 + 1, "quorum: a majority"
        assert monitor.group(2) in scripts and "--sentinel" not in scripts[monitor.group(2)]
    assert len(names) == 1, names
    (master,) = names
    for name, svc in vuq_services(SENTINEL_COMPOSE).items():
        if name != "emulator":
            assert compose_env(svc)["VUQ_SENTINEL_MASTER"] == master, name
    assert f"get-master-addr-by-name {master}" in SENTINEL_COMPOSE.read_text(encoding="utf-8")


def test_compose_sentinel_vuq_services_use_the_sentinels() -> None:
    all_services = services(SENTINEL_COMPOSE)
    sentinels = {n for n, s in sentinel_compose_scripts().items() if "--sentinel" in s}
    for name, svc in vuq_services(SENTINEL_COMPOSE).items():
        if name == "emulator":
            continue
        env = compose_env(svc)
        url, required = interpolate(env["VUQ_BROKER_URL"])
        assert is_sentinel(url), f"{name}: VUQ_BROKER_URL is not a sentinel:// URL"
        assert {host for host, _ in sentinel_nodes(url)} == sentinels, name
        assert {port for _, port in sentinel_nodes(url)} == {26379}
        assert required == {"REDIS_PASSWORD"} and url_password(url), f"{name}: the primary's password, required"
        assert re.fullmatch(r"\$\{SENTINEL_PASSWORD:\?[^}]+\}", env["VUQ_SENTINEL_PASSWORD"]), name
        settings = settings_from(env)
        assert settings.sentinel is not None and settings.sentinel.password
        deps = svc["depends_on"]
        assert sentinels <= set(deps), f"{name} does not wait for the sentinels"
        assert all(all_services[s]["healthcheck"] for s in sentinels)


def test_compose_sentinel_redis_servers_are_durable_and_password_protected() -> None:
    scripts = sentinel_compose_scripts()
    servers = {n: s for n, s in scripts.items() if "--sentinel" not in s}
    all_services = services(SENTINEL_COMPOSE)
    assert len(servers) == 2, "a primary and a replica"
    replicas = [n for n in servers if compose_env(all_services[n]).get("REPLICA_OF")]
    assert len(replicas) == 1 and compose_env(all_services[replicas[0]])["REPLICA_OF"] in servers
    for name, script in servers.items():
        for line in ("appendonly yes", "maxmemory-policy noeviction", "requirepass", "masterauth"):
            assert line in script, f"{name}: no {line}"
        assert all_services[name].get("volumes"), f"{name}: the AOF and the config need a volume"
    for name, svc in all_services.items():
        for key, value in compose_env(svc).items():
            if "PASSWORD" in key or key in ("REDISCLI_AUTH", "VUQ_FLOWER_BASIC_AUTH"):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name}: {key} needs ${{VAR:?…}}, no default"


# ---------------------------------------------------------------- Redis Sentinel: Kubernetes


def sentinel_k8s_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(K8S_SENTINEL.glob("*.y*ml")))


def patched_sentinel_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The worker, Flower and beat containers of ../ with vuq-patch.yaml applied."""
    patch = yaml.safe_load((K8S_SENTINEL / "vuq-patch.yaml").read_text(encoding="utf-8"))
    out = []
    for role in VUQ_ROLES:
        doc = json_patch(k8s("Deployment", f"vuq-{role}"), patch)
        spec = pod_spec(doc)
        out.append((f"sentinel/Deployment/vuq-{role}", spec["containers"][0], spec))
    return out


def sentinel_env(container: dict[str, Any]) -> dict[str, str]:
    """A patched container's environment with the sentinel ConfigMap and Secret template."""
    return env_of_k8s(container, k8s_docs(K8S_SENTINEL))


def test_k8s_sentinel_names_one_primary_everywhere() -> None:
    scripts = k8s("ConfigMap", "redis-ha-scripts", K8S_SENTINEL)["data"]
    names = set()
    for script in scripts.values():
        for found in sentinel_config_names(script).values():
            names |= found
    assert len(names) == 1, names
    (master,) = names
    assert k8s("ConfigMap", "vuq-config", K8S_SENTINEL)["data"]["VUQ_SENTINEL_MASTER"] == master
    for where, container, _ in patched_sentinel_containers():
        assert sentinel_env(container)["VUQ_SENTINEL_MASTER"] == master, where
    sentinels = k8s("StatefulSet", "redis-sentinel", K8S_SENTINEL)
    monitor = re.search(r"sentinel monitor \S+ (\S+) (\d+) (\d+)", scripts["sentinel.sh"])
    assert monitor and int(monitor.group(3)) == sentinels["spec"]["replicas"] // 2 + 1, "quorum: a majority"
    assert sentinels["spec"]["replicas"] == 3


def test_k8s_sentinel_addresses_match_the_statefulsets() -> None:
    sentinels = k8s("StatefulSet", "redis-sentinel", K8S_SENTINEL)
    servers = k8s("StatefulSet", "redis-ha", K8S_SENTINEL)
    namespace = sentinels["metadata"]["namespace"]

    def hosts(statefulset: dict[str, Any]) -> list[str]:
        name, service = statefulset["metadata"]["name"], statefulset["spec"]["serviceName"]
        k8s("Service", service, K8S_SENTINEL)  # exists
        return [f"{name}-{i}.{service}.{namespace}.svc.cluster.local" for i in range(statefulset["spec"]["replicas"])]

    sentinel_hosts = hosts(sentinels)
    server_hosts = hosts(servers)
    text = sentinel_k8s_text()
    scripts = k8s("ConfigMap", "redis-ha-scripts", K8S_SENTINEL)["data"]
    first = re.search(r"^\s*first=(\S+)$", scripts["sentinel.sh"], re.M)
    assert first and first.group(1) == server_hosts[0], "the sentinels first monitor the StatefulSet's pod 0"
    assert f"redis-sentinel-$i.{sentinels['spec']['serviceName']}.{namespace}.svc.cluster.local" in text
    config = k8s("ConfigMap", "vuq-config", K8S_SENTINEL)["data"]
    assert config["REDIS_SENTINEL_ADDRESSES"].split(",") == [f"{h}:26379" for h in sentinel_hosts]
    for where, container, _ in patched_sentinel_containers():
        url = sentinel_env(container)["VUQ_BROKER_URL"]
        assert is_sentinel(url) and url_password(url), where
        assert sentinel_nodes(url) == [(h, 26379) for h in sentinel_hosts], where
    redis_password = secret_data(k8s("Secret", "vuq-redis", K8S_SENTINEL))["redis-password"]
    assert url_password(secret_data(k8s("Secret", "vuq-redis", K8S_SENTINEL))["broker-url"]) == redis_password


def test_k8s_sentinel_patch_applies_to_every_vuq_deployment() -> None:
    containers = patched_sentinel_containers()
    assert len(containers) == 3
    for where, container, spec in containers:
        env = sentinel_env(container)
        settings = settings_from(env)  # valid, and a sentinel configuration
        assert settings.sentinel is not None and is_sentinel(settings.broker_url), where
        password_file = env["VUQ_SENTINEL_PASSWORD_FILE"]
        volume = mounted_file(container, spec, password_file)
        assert volume is not None and volume["secret"]["secretName"] == "vuq-redis", where
        items = secret_items(volume)
        assert items is None or posixpath.basename(password_file) in items
        broker = next(e for e in container["env"] if e["name"] == "VUQ_BROKER_URL")
        assert broker["valueFrom"]["secretKeyRef"]["name"] == "vuq-redis", "the URL holds a password"


def test_k8s_sentinel_configmap_differs_from_the_base_only_in_redis() -> None:
    base = dict(k8s("ConfigMap", "vuq-config")["data"])
    sentinel = dict(k8s("ConfigMap", "vuq-config", K8S_SENTINEL)["data"])
    assert {k: v for k, v in base.items() if k not in ("VUQ_BROKER_URL", "REDIS_ADDRESS")} == {
        k: v for k, v in sentinel.items() if k not in ("VUQ_SENTINEL_MASTER", "REDIS_SENTINEL_ADDRESSES")}
    assert "VUQ_BROKER_URL" not in sentinel, "the sentinel:// URL holds the primary's password: Secret vuq-redis"


def test_k8s_sentinel_servers_are_durable_and_read_passwords_from_files() -> None:
    scripts = k8s("ConfigMap", "redis-ha-scripts", K8S_SENTINEL)["data"]
    for line in ("appendonly yes", "maxmemory-policy noeviction", "requirepass", "masterauth"):
        assert line in scripts["redis.sh"], line
    for where, container, spec in workload_containers(K8S_SENTINEL):
        assert not container.get("env"), f"{where}: passwords come from files"
        assert spec["securityContext"]["runAsNonRoot"] is True
        used = set()
        for script in scripts.values():
            used |= set(re.findall(r"(/var/run/secrets/\S+?)[\"')\s]", script))
        argv = [*as_argv(container.get("command")), *as_argv(container.get("args"))]
        for probe in ("livenessProbe", "readinessProbe"):
            used |= {a for a in container[probe]["exec"]["command"] if a.startswith("/var/run/secrets/")}
        assert argv[:2] == ["sh", "/scripts/" + argv[1].rsplit("/", 1)[-1]] and argv[1].rsplit("/", 1)[-1] in scripts
        for path in used:
            volume = mounted_file(container, spec, path)
            assert volume is not None and "secret" in volume, f"{where}: {path} not mounted"
            items = secret_items(volume)
            assert items is None or posixpath.basename(path) in items, f"{where}: {path}"
        assert any(t["metadata"]["name"] == "data" for t in k8s(
            "StatefulSet", where.split("/")[1], K8S_SENTINEL)["spec"]["volumeClaimTemplates"]), where


def test_k8s_sentinel_keda_scales_on_the_queue_through_the_sentinels() -> None:
    keda = k8s("ScaledObject", "vuq-worker", K8S_SENTINEL)
    assert keda["spec"]["scaleTargetRef"]["name"] == "vuq-worker"
    (trigger,) = keda["spec"]["triggers"]
    assert trigger["type"] == "redis-sentinel"
    metadata = trigger["metadata"]
    assert metadata["listName"] == DEFAULT_QUEUE and int(metadata["listLength"]) >= 1
    worker = next(c for where, c, _ in patched_sentinel_containers() if where.endswith("vuq-worker"))
    env = sentinel_env(worker)
    assert env[metadata["sentinelMasterFromEnv"]] == env["VUQ_SENTINEL_MASTER"]
    addresses = env[metadata["addressesFromEnv"]].split(",")
    assert [f"{h}:{p}" for h, p in sentinel_nodes(env["VUQ_BROKER_URL"])] == addresses
    auth = k8s("TriggerAuthentication", trigger["authenticationRef"]["name"], K8S_SENTINEL)
    secret = secret_data(k8s("Secret", "vuq-redis", K8S_SENTINEL))
    parameters = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(parameters) == {"password", "sentinelPassword"}
    assert all(ref["name"] == "vuq-redis" and ref["key"] in secret for ref in parameters.values())
    base = k8s("ScaledObject", "vuq-worker")["spec"]
    for key in ("minReplicaCount", "maxReplicaCount", "cooldownPeriod", "advanced"):
        assert keda["spec"][key] == base[key], key


# ---------------------------------------------------------------- image and dashboard


def test_dockerfile_is_one_non_root_vuq_image_without_secrets() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r'^ENTRYPOINT \["vuq"\]$', text, re.M)
    assert re.search(r'^CMD \["worker"\]$', text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"PYTHONUNBUFFERED=1", text)
    assert not re.search(r"^(ENV|ARG)\b.*(KEY|SECRET|TOKEN|PASSWORD|BASIC_AUTH)", text, re.M)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "tests"} <= set(ignore)


def expand_build_arg(word: str, name: str, value: str) -> str:
    """The shell's expansion of ``${NAME:+…}``, ``${NAME}`` and ``$NAME`` in a RUN line's word."""
    word = re.sub(rf"\$\{{{name}:\+([^}}]*)\}}", lambda m: m.group(1) if value else "", word)
    return re.sub(rf"\$\{{{name}\}}|\${name}\b", value, word)


def test_dockerfile_installs_the_emulator_extra_by_default_and_can_leave_it_out() -> None:
    args = dockerfile_build_args()
    assert args.get("VUQ_EXTRAS") == "emulator", "ARG VUQ_EXTRAS=emulator (after FROM)"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "emulator" in pyproject["project"]["optional-dependencies"]
    text = DOCKERFILE.read_text(encoding="utf-8")
    installs = re.findall(r"^RUN .*?\bpip install\s+(\"[^\"]+\"|\S+)", text, re.M)
    assert len(installs) == 1, installs
    word = installs[0].strip('"')
    assert "VUQ_EXTRAS" in word
    assert expand_build_arg(word, "VUQ_EXTRAS", "emulator") == "/src[emulator]"
    # pip takes "/src[]" for a path that does not exist: no brackets without extras
    assert expand_build_arg(word, "VUQ_EXTRAS", "") == "/src"
    assert expand_build_arg(word, "VUQ_EXTRAS", "emulator,dev") == "/src[emulator,dev]"
    assert not re.search(r"^ENV\b.*\bVUQ_EXTRAS\b", text, re.M), "a build argument, not a runtime setting"


def metric_names() -> set[str]:
    """The metric names workers/process/metrics.py exposes, as Prometheus sees them."""
    source = (ROOT / "workers" / "process" / "metrics.py").read_text(encoding="utf-8")
    names = {f"{n}_total" for n in re.findall(r'\bCounter\(\s*"(\w+)"', source)}
    names |= {f"{n}_bucket" for n in re.findall(r'\bHistogram\(\s*"(\w+)"', source)}
    names |= set(re.findall(r'\bGaugeMetricFamily\(\s*"(\w+)"', source))
    return names


def test_grafana_dashboard_shows_every_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    ours = metric_names()
    assert {"vuq_jobs", "vuq_bytes_uploaded_total", "vuq_chunk_seconds_bucket", "vuq_retries_total",
            "vuq_active_leases"} <= ours
    for metric in (*sorted(ours), *FLOWER_METRICS):
        assert re.search(rf"\b{metric}\b", exprs), f"no panel queries {metric}"
    targets = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for quantile in ("0.5", "0.95"):
        assert any(f"histogram_quantile({quantile}," in e and "vuq_chunk_seconds_bucket" in e for e in targets)
    assert re.search(r"rate\(vuq_bytes_uploaded_total\[", exprs)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


# ---------------------------------------------------------------- metrics: loopback unless scraped


def test_k8s_workers_that_prometheus_scrapes_listen_beyond_loopback() -> None:
    for where, container in k8s_containers():
        env = env_of_k8s(container)
        if "VUQ_METRICS_PORT" not in env:
            continue
        doc = k8s("Deployment", where.split("/")[1])
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", where
        assert annotations["prometheus.io/port"] == env["VUQ_METRICS_PORT"], where
        assert settings_from(env).metrics_address == "0.0.0.0", f"{where}: Prometheus reaches the pod's IP"
        assert any(p["containerPort"] == int(env["VUQ_METRICS_PORT"]) for p in container["ports"]), where


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_metrics_stay_on_loopback_where_nothing_scrapes_them(path: Path) -> None:
    scrapers = [name for name, svc in services(path).items() if "prometheus" in str(svc.get("image", ""))]
    for name, svc in vuq_services(path).items():
        env = compose_env(svc)
        if "VUQ_METRICS_PORT" not in env:
            continue
        assert "VUQ_METRICS_ADDRESS" in env, f"{name}: say where the metrics listen"
        address = settings_from(env).metrics_address
        if not scrapers:
            assert is_loopback(address), f"{name}: metrics on {address} but nothing scrapes them"
            assert not svc.get("expose") and not svc.get("ports"), f"{name}: a port nothing listens on"


def test_systemd_metrics_default_to_loopback() -> None:
    unit = (SYSTEMD / "vuq-worker.service").read_text(encoding="utf-8")
    env = (SYSTEMD / "vuq.env.example").read_text(encoding="utf-8")
    assert re.search(r"^Environment=VUQ_METRICS_PORT=\d+$", unit, re.M)
    assert not re.search(r"^(Environment=)?VUQ_METRICS_ADDRESS=(?!127\.0\.0\.1$)", unit + "\n" + env, re.M)
    assert Settings().metrics_address == "127.0.0.1"


# ---------------------------------------------------------------- Redis: TLS and passwords


def test_the_redis_tls_and_password_settings_are_shown_where_redis_is_configured() -> None:
    texts = deployment_texts()
    for name in ("deploy/k8s/configmap.yaml", "deploy/systemd/vuq.env.example"):
        for var in ("VUQ_REDIS_TLS_CA_FILE", "VUQ_REDIS_PASSWORD_FILE"):
            assert var in texts[name], f"{name} does not mention {var}"
    example = texts["deploy/systemd/vuq.env.example"]
    tls = [url for url in re.findall(r"^# VUQ_BROKER_URL=(\S+)", example, re.M) if url.startswith("rediss://")]
    assert tls, "vuq.env.example shows no rediss:// broker"
    settings = Settings.from_env({"VUQ_BROKER_URL": tls[0]})  # a TLS URL the settings take: verification on
    assert "ssl_cert_reqs=required" in settings.broker_url


def test_no_manifest_turns_redis_tls_verification_off() -> None:
    for name, text in deployment_texts().items():
        for line in text.splitlines():
            if re.search(r"ssl_cert_reqs=(none|CERT_NONE)|ssl_check_hostname=false", line, re.I):
                assert line.lstrip().startswith("#"), f"{name}: {line.strip()}"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration"):readme.index("## Operating vuq")]
    def listed(name: str) -> bool:  # `VUQ_X` / `_FILE` stands for both
        base = name.removesuffix("_FILE")
        return name in table or (name != base and f"`{base}` / `_FILE`" in table)

    missing = sorted(name for name in settings_names() if not listed(name))
    assert not missing, f"not in the README's Configuration table: {missing}"


# ---------------------------------------------------------------- Prometheus alert rules

ALERTS = DEPLOY / "prometheus" / "vuq-alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "vuq-alerts.test.yml"
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
SEVERITIES = {"warning", "critical"}
PROM_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
PROM_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Read from Redis at scrape time by every worker: the same number from each, so never summed.
STORE_GAUGES = ("vuq_jobs", "vuq_active_leases")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def promtool() -> str | None:
    """A promtool binary: $PROMTOOL, else on the PATH (Debian's `prometheus` package has one)."""
    import shutil

    return os.environ.get("PROMTOOL") or shutil.which("promtool")


def test_alert_rules_have_the_fields_prometheus_requires() -> None:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"} and document["groups"], "a rule file holds `groups:` only"
    names = [g["name"] for g in document["groups"]]
    assert all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names), names
    seen = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group["rules"], group.get("name")
        for rule in group["rules"]:
            name = rule.get("alert")
            assert set(rule) <= RULE_KEYS and isinstance(name, str) and PROM_NAME.match(name), rule
            assert name not in seen, f"two alerts named {name}"
            seen.add(name)
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
            assert PROM_DURATION.match(str(rule["for"])), f"{name}: for: {rule['for']!r}"
            assert rule["labels"]["severity"] in SEVERITIES, name
            assert all(PROM_NAME.match(k) for k in [*rule["labels"], *rule["annotations"]]), name
            for field in ("summary", "description"):
                assert isinstance(rule["annotations"].get(field), str) and rule["annotations"][field].strip(), name
    assert {"VuqJobsFailing", "VuqRetriesClimbing", "VuqBacklogStalled", "VuqNoWorkerReporting"} <= seen


def test_alerts_and_dashboard_read_only_metrics_the_code_defines() -> None:
    from tests.support.promql import parse

    ours = metric_names()
    ours |= {n.replace("_bucket", suffix) for n in ours if n.endswith("_bucket") for suffix in ("_count", "_sum")}
    flower = {*FLOWER_METRICS, *(n.replace("_bucket", s) for n in FLOWER_METRICS for s in ("_count", "_sum"))}
    for expr in [*dashboard_exprs(), *(r["expr"] for r in alert_rules())]:
        query = parse(expr)
        assert query.metrics, expr
        assert query.metrics <= ours | flower, f"{expr}: {sorted(query.metrics - ours - flower)}"
    assert all(parse(r["expr"]).metrics <= ours for r in alert_rules()), "the alerts need only the workers"


def test_gauges_read_from_the_job_store_are_never_summed_across_workers() -> None:
    """Every worker serves the same vuq_jobs and vuq_active_leases (read from Redis): a sum counts each
    job once per worker."""
    summed = re.compile(r"\b(sum|count)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*(" + "|".join(STORE_GAUGES) + r")\b")
    for expr in [*dashboard_exprs(), *(r["expr"] for r in alert_rules())]:
        assert not summed.search(expr), f"{expr}: take max() of a job-store gauge across workers"
    assert summed.search("sum by (state) (vuq_jobs)") and summed.search("sum(vuq_active_leases)")
    assert not summed.search("sum(max by (state) (vuq_jobs))")


def test_every_alert_has_a_promtool_case_where_it_fires() -> None:
    cases = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert cases["rule_files"] == [ALERTS.name]
    firing = {case["alertname"] for test in cases["tests"] for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    quiet = {case["alertname"] for test in cases["tests"] for case in test.get("alert_rule_test", [])
             if not case.get("exp_alerts")}
    names = {r["alert"] for r in alert_rules()}
    assert firing == names and quiet == names, f"fires: {sorted(firing)}, stays quiet: {sorted(quiet)}"


@pytest.mark.parametrize("command", [("check", "rules", ALERTS.name), ("test", "rules", ALERTS_TEST.name)],
                         ids=["check", "test"])
def test_promtool_accepts_the_alert_rules(command: tuple[str, ...]) -> None:
    import subprocess

    binary = promtool()
    if binary is None:
        pytest.skip("no promtool (set PROMTOOL or install Debian's prometheus package); the structure is checked above")
    result = subprocess.run([binary, *command], cwd=ALERTS.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_readme_describes_the_alert_rules() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "prometheus/vuq-alerts.yml" in readme and "promtool" in readme
    for name in (r["alert"] for r in alert_rules()):
        assert name in readme, f"deploy/README.md does not describe {name}"
