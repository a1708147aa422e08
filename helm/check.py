#!/usr/bin/env python3
"""Checks the sipcapture Helm chart without a helm binary, a cluster or network access.

For each scenario (default values, helm/ci-values-all.yaml enabling every option, and
helm/ci-values-external.yaml for the external-peer branches) it
  1. lints the chart with Helm's own linter (strict: warnings fail) and values.schema.json,
  2. renders it with Helm's engine (PyPI `helm-python-sdk`, the Helm Go SDK through ctypes),
  3. validates every rendered document against the Kubernetes JSON schemas (PyPI
     `kubernetes-validate`, strict: unknown fields fail); the prometheus-operator ServiceMonitor,
     which those schemas lack, against the subset of its CRD schema the chart uses,
  4. checks the chart's own rules: grpc.health.v1 probes, read-only root filesystems,
     capabilities only with raw capture, no SIPCAPTURE_* env var that is not a config key,
     and the key fields of the optional objects against the values that produced them
     (checks_extra.py: alert rules and dashboard on documented metric names, NetworkPolicies
     selecting the release's pods and ports, the `helm test` pod, the external HEP Service,
     image digest, startupProbe, [grpc_limits], extra volumes and init containers),
  5. writes every rendered ConfigMap's TOML to OUT/<scenario>-<key> (collector.toml, storer.toml,
     control.toml), which integration-tests/tests/helm_chart.rs feeds to each binary's
     `--check-config`.
It also checks that values.yaml documents every value.

usage: check.py --out DIR [--kube 1.30.0] [--chart helm/sipcapture]
exit 0: every check passed; 1: something failed (printed); 2: the venv lacks a package.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
from pathlib import Path

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as missing:  # pragma: no cover - set-up error
    print(f"check.py: {missing}; run it with the venv .ci/run creates", file=sys.stderr)
    sys.exit(2)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import checks_extra  # noqa: E402  (next to this file)
SCENARIOS = {
    "default": [],
    "all": [HERE / "ci-values-all.yaml"],
    "external": [HERE / "ci-values-external.yaml"],
}
RELEASE = "homer"
NAMESPACE = "voip"

# Env vars the chart may set per binary: SIPCAPTURE_* names are read as config keys and an
# unknown one stops the service, so only real keys of that service are allowed.
ALLOWED_SIPCAPTURE_ENV = {
    "sipcapture-collector": {
        "SIPCAPTURE_AUTH_TOKEN",
        "SIPCAPTURE_ALLOW_INSECURE",
        "SIPCAPTURE_HEP_AUTH_KEY",
        "SIPCAPTURE_METRICS_LISTEN",
    },
    "sipcapture-storer": {
        "SIPCAPTURE_AUTH_TOKEN",
        "SIPCAPTURE_ALLOW_INSECURE",
        "SIPCAPTURE_DB_URL",
        "SIPCAPTURE_METRICS_LISTEN",
    },
    "sipcapture-control": {
        "SIPCAPTURE_AUTH_TOKEN",
        "SIPCAPTURE_ALLOW_INSECURE",
        "SIPCAPTURE_METRICS_LISTEN",
    },
}
CAPTURE_MODE_ENV = re.compile(r"^SIPCAPTURE_CAPTURE_MODE__[A-Z0-9_]+__DB_URL$")

# The part of prometheus-operator's ServiceMonitor CRD schema (monitoring.coreos.com/v1) the
# chart renders; unknown fields fail as with the Kubernetes schemas.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {"type": "array"},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^[0-9]+(ms|s|m|h)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


# The part of prometheus-operator's PrometheusRule CRD schema the chart renders.
DURATION = {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE_SCHEMA = {
    **SERVICE_MONITOR_SCHEMA,
    "properties": {
        **SERVICE_MONITOR_SCHEMA["properties"],
        "kind": {"const": "PrometheusRule"},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z]+$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": DURATION,
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}
CRD_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR_SCHEMA, "PrometheusRule": PROMETHEUS_RULE_SCHEMA}


class Report:
    """Counts documents and collects failures, printing as it goes."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.documents = 0
        self.configs: list[Path] = []

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"FAIL {message}")


def deep_merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def check_values_documented(values_file: Path, report: Report) -> None:
    """Every leaf value carries a comment, on itself or on an enclosing key."""
    lines = values_file.read_text().splitlines()
    key_line = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        previous = next(
            (lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()),
            "",
        )
        commented = previous.strip().startswith("#") and (
            len(previous) - len(previous.lstrip()) == indent
        )
        documented = commented or any(doc for _, doc in stack)
        following = next(
            (lines[i] for i in range(number + 1, len(lines)) if lines[i].strip()),
            "",
        )
        is_leaf = bool(match.group(3).strip()) or (
            len(following) - len(following.lstrip()) <= indent
        )
        if is_leaf and not documented:
            report.fail(f"values.yaml:{number + 1}: `{match.group(2)}` has no comment")
        stack.append((indent, documented))


def lint(chart: Path, values: dict, kube: str, scenario: str, report: Report) -> None:
    result = helm.lint(
        str(chart),
        values or None,
        strict=True,
        namespace=NAMESPACE,
        kube_version="v" + kube,
    )
    severities = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    for message in result.get("messages", []) or []:
        severity = message["severity"]
        text = f"lint[{scenario}] {severities.get(severity, severity)} {message['path']}: {message['error']}"
        if severity >= 2:
            report.fail(text)
        else:
            print(text)
    for error in result.get("errors", []) or []:
        report.fail(f"lint[{scenario}] {error}")


def containers_of(doc: dict) -> list[dict]:
    spec = (doc.get("spec") or {}).get("template", {}).get("spec", {})
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def check_workload(doc: dict, what: str, report: Report) -> None:
    """The chart's own rules for the sipcapture containers of a workload."""
    pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    if pod.get("enableServiceLinks") is not False:
        # Service-link variables (<SERVICE>_PORT, ..._SERVICE_HOST) of a release named like the
        # env prefix look like config keys; the binaries ignore them, the chart does not inject.
        report.fail(f"{what}: enableServiceLinks is not false")
    for container in containers_of(doc):
        command = (container.get("command") or [""])[0]
        binary = os.path.basename(command)
        if binary not in ALLOWED_SIPCAPTURE_ENV:
            continue  # not ours (the example SBC container)
        name = f"{what} container {container.get('name')}"
        for env in container.get("env") or []:
            env_name = env.get("name", "")
            if not env_name.startswith("SIPCAPTURE_"):
                continue
            allowed = env_name in ALLOWED_SIPCAPTURE_ENV[binary] or (
                binary == "sipcapture-storer" and CAPTURE_MODE_ENV.match(env_name)
            )
            if not allowed:
                report.fail(f"{name}: env {env_name} is not a config key of {binary}")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        for probe in ("readinessProbe", "livenessProbe"):
            # grpc.health.v1 on the grpc port; with grpcTls a TCP connect probe on it (the
            # kubelet's gRPC probe cannot speak TLS).
            spec = container.get(probe) or {}
            check = spec.get("grpc") or spec.get("tcpSocket")
            if not check or check.get("port") != ports.get("grpc"):
                report.fail(f"{name}: {probe} is neither grpc.health.v1 nor TCP on the grpc port")
        security = container.get("securityContext") or {}
        if security.get("readOnlyRootFilesystem") is not True:
            report.fail(f"{name}: root filesystem is writable")
        if security.get("allowPrivilegeEscalation") is not False:
            report.fail(f"{name}: privilege escalation allowed")
        added = set((security.get("capabilities") or {}).get("add") or [])
        if binary != "sipcapture-collector" and added:
            report.fail(f"{name}: capabilities {sorted(added)}")
        if added - {"NET_RAW", "NET_ADMIN"}:
            report.fail(f"{name}: unexpected capabilities {sorted(added)}")


def validate(doc: dict, what: str, kube: str, report: Report) -> None:
    report.documents += 1
    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        kind = doc.get("kind")
        if kind not in CRD_SCHEMAS:
            report.fail(f"NOSCHEMA {what}: no CRD subset for {kind}")
            return
        try:
            jsonschema.validate(doc, CRD_SCHEMAS[kind])
            print(f"valid {what} ({kind} CRD subset)")
        except jsonschema.ValidationError as e:
            report.fail(f"INVALID {what}: {'/'.join(map(str, e.path))} {e.message}")
        return
    try:
        kubernetes_validate.validate(doc, kube, strict=True)
        print(f"valid {what}")
    except kubernetes_validate.utils.ValidationError as e:
        report.fail(f"INVALID {what}: {'/'.join(map(str, e.path))} {e.message}")
    except (
        kubernetes_validate.utils.SchemaNotFoundError,
        kubernetes_validate.utils.InvalidSchemaError,
    ) as e:
        report.fail(f"NOSCHEMA {what}: {e}")


def run_scenario(
    chart: Path, scenario: str, files: list[Path], kube: str, out: Path, report: Report
) -> None:
    values: dict = {}
    for file in files:
        values = deep_merge(values, helm.values_from_yaml(file.read_text()))
    lint(chart, values, kube, scenario, report)
    try:
        with helm.Chart.load(str(chart)) as loaded:
            manifests = loaded.render(
                values or None, name=RELEASE, namespace=NAMESPACE, is_install=True
            )
    except helm.HelmError as e:
        report.fail(f"render[{scenario}]: {e}")
        return
    rendered = out / "manifests" / scenario
    docs: list[dict] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        target = rendered / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            docs.append(doc)
            name = (doc.get("metadata") or {}).get("name")
            what = f"[{scenario}] {os.path.basename(path)} {doc.get('kind')}/{name}"
            validate(doc, what, kube, report)
            if doc.get("kind") in ("Deployment", "DaemonSet"):
                check_workload(doc, what, report)
            if doc.get("kind") == "ConfigMap":
                for key, toml in (doc.get("data") or {}).items():
                    if key.endswith(".toml"):
                        config = out / f"{scenario}-{key}"
                        config.write_text(toml)
                        report.configs.append(config)
                        print(f"config {config.name} <- ConfigMap/{name}")
    # The key-field checks compare with every value in effect: the chart's defaults under the
    # scenario's.
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    effective = deep_merge(defaults, copy.deepcopy(values))
    for problem in checks_extra.check_objects(docs, effective, NAMESPACE):
        report.fail(f"[{scenario}] {problem}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for the rendered TOML")
    parser.add_argument("--kube", default="1.30.0", help="Kubernetes version of the schemas")
    parser.add_argument("--chart", default=HERE / "sipcapture", type=Path)
    args = parser.parse_args()
    kube = args.kube.lstrip("v")

    # Old renders must not be mistaken for this run's.
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    report = Report()
    check_values_documented(args.chart / "values.yaml", report)
    for scenario, files in SCENARIOS.items():
        run_scenario(args.chart, scenario, files, kube, args.out, report)
    expected = {"collector.toml", "storer.toml", "control.toml"}
    seen = {path.name.split("-", 1)[1] for path in report.configs}
    if seen != expected:
        report.fail(f"rendered configs {sorted(seen)}, expected {sorted(expected)}")

    status = "FAILED" if report.failures else "OK"
    print(
        f"{status}: {len(SCENARIOS)} scenarios, {report.documents} documents validated against "
        f"Kubernetes {kube}, {len(report.configs)} ConfigMap TOML files in {args.out}"
        + (f", {len(report.failures)} failures" if report.failures else "")
    )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
