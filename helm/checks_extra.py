"""Key-field checks of the chart's optional objects, for check.py.

Each check compares rendered objects with the values that produced them (the chart's defaults
merged with the scenario's), so an option that renders but is wired wrongly fails: alert rules
and the Grafana dashboard may only use metric names docs/METRICS.md documents (the names the
binaries export), NetworkPolicies must select the release's pods and their real ports, the
`helm test` pod must run `sipcapture status check` against the control Service, the external
HEP Service must carry UDP and TCP on one port to the external collectors' pods, and image
digest, startupProbe, [grpc_limits], extra volumes and init containers must reach every
sipcapture container / TOML file.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
METRIC = re.compile(r"\bsipcapture_[a-z0-9_]+")
OURS = ("sipcapture-collector", "sipcapture-storer", "sipcapture-control", "sipcapture")
ALERTS = {
    "SipcaptureCaptureOff",
    "SipcaptureStorerNotReady",
    "SipcaptureSpoolGrowing",
    "SipcaptureDropsRising",
    "SipcaptureInsertFailures",
}
DASHBOARD_METRICS = {
    "sipcapture_collector_hep_received_total",
    "sipcapture_storer_rows_stored_total",
    "sipcapture_collector_dropped_total",
    "sipcapture_collector_spool_bytes",
    "sipcapture_storer_ready",
    "sipcapture_collector_capture_on",
    "sipcapture_storer_insert_seconds_bucket",
}


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "METRICS.md").read_text()
    return set(METRIC.findall(text))


def undocumented(exprs: list[str], known: set[str]) -> list[str]:
    out = []
    for expr in exprs:
        for name in METRIC.findall(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in known and base not in known:
                out.append(name)
    return out


def pod_spec(doc: dict) -> dict:
    if doc.get("kind") == "Pod":
        return doc.get("spec") or {}
    return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(doc: dict) -> dict:
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}


def ours(container: dict) -> bool:
    command = (container.get("command") or [""])[0]
    return command.rsplit("/", 1)[-1] in OURS


def find(docs: list[dict], kind: str, suffix: str = "") -> list[dict]:
    return [
        d
        for d in docs
        if d.get("kind") == kind and (d.get("metadata") or {}).get("name", "").endswith(suffix)
    ]


def selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        if expr.get("operator") == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def check_objects(docs: list[dict], values: dict, namespace: str) -> list[str]:
    """Problems of the optional objects in `docs`, rendered from `values` (defaults included)."""
    problems: list[str] = []
    known = documented_metrics()
    workloads = [d for d in docs if d.get("kind") in ("Deployment", "DaemonSet", "Pod")]
    problems += check_rules(docs, values, known, namespace)
    problems += check_dashboard(docs, values, known)
    problems += check_network_policies(docs, values, workloads)
    problems += check_test_pod(docs, values, namespace)
    problems += check_external(docs, values)
    problems += check_containers(docs, values, workloads)
    return problems


def check_rules(docs: list[dict], values: dict, known: set[str], namespace: str) -> list[str]:
    m = values["metrics"]
    want = m["enabled"] and m["prometheusRule"]["enabled"]
    rules_docs = find(docs, "PrometheusRule")
    if bool(rules_docs) != bool(want):
        return [f"PrometheusRule rendered={bool(rules_docs)}, expected {bool(want)}"]
    problems = []
    for doc in rules_docs:
        r = m["prometheusRule"]
        for key, value in (r.get("labels") or {}).items():
            if doc["metadata"].get("labels", {}).get(key) != value:
                problems.append(f"PrometheusRule: label {key} is not {value!r}")
        rules = [rule for g in doc["spec"]["groups"] for rule in g["rules"]]
        by_name = {rule["alert"]: rule for rule in rules}
        if set(by_name) != ALERTS:
            problems.append(f"PrometheusRule alerts {sorted(by_name)}, expected {sorted(ALERTS)}")
        for rule in rules:
            bad = undocumented([rule["expr"]], known)
            if bad:
                problems.append(f"{rule['alert']}: metrics not in docs/METRICS.md: {bad}")
            if f'namespace="{namespace}"' not in rule["expr"]:
                problems.append(f"{rule['alert']}: not scoped to namespace {namespace}")
            if rule.get("labels", {}).get("severity") != r["severity"]:
                problems.append(f"{rule['alert']}: severity is not {r['severity']!r}")
        expect_for = {
            "SipcaptureCaptureOff": f"{r['captureOffMinutes']}m",
            "SipcaptureStorerNotReady": f"{r['storerNotReadyMinutes']}m",
            "SipcaptureSpoolGrowing": f"{r['spoolGrowingMinutes']}m",
        }
        for alert, duration in expect_for.items():
            if alert in by_name and by_name[alert].get("for") != duration:
                problems.append(f"{alert}: for {by_name[alert].get('for')}, expected {duration}")
        for alert, metric in (
            ("SipcaptureCaptureOff", "sipcapture_collector_capture_on"),
            ("SipcaptureStorerNotReady", "sipcapture_storer_ready"),
            ("SipcaptureSpoolGrowing", "sipcapture_collector_spool_bytes"),
            ("SipcaptureDropsRising", "sipcapture_collector_dropped_total"),
            ("SipcaptureInsertFailures", "sipcapture_storer_insert_failed_total"),
        ):
            if alert in by_name and metric not in by_name[alert]["expr"]:
                problems.append(f"{alert}: does not use {metric}")
    return problems


def check_dashboard(docs: list[dict], values: dict, known: set[str]) -> list[str]:
    m = values["metrics"]
    g = m["grafanaDashboard"]
    want = m["enabled"] and g["enabled"]
    maps = find(docs, "ConfigMap", "-dashboard")
    if bool(maps) != bool(want):
        return [f"dashboard ConfigMap rendered={bool(maps)}, expected {bool(want)}"]
    problems = []
    for doc in maps:
        labels = doc["metadata"].get("labels") or {}
        for key, value in g["labels"].items():
            if labels.get(key) != value:
                problems.append(f"dashboard: label {key}={labels.get(key)!r}, expected {value!r}")
        if g["namespace"] and doc["metadata"].get("namespace") != g["namespace"]:
            problems.append(f"dashboard: namespace is not {g['namespace']}")
        try:
            board = json.loads(doc["data"]["sipcapture.json"])
        except (KeyError, json.JSONDecodeError) as e:
            problems.append(f"dashboard: not valid JSON: {e}")
            continue
        exprs = [t["expr"] for p in board.get("panels", []) for t in p.get("targets", [])]
        bad = undocumented(exprs, known)
        if bad:
            problems.append(f"dashboard: metrics not in docs/METRICS.md: {sorted(set(bad))}")
        used = {name for e in exprs for name in METRIC.findall(e)}
        if not DASHBOARD_METRICS <= used:
            problems.append(f"dashboard: lacks {sorted(DASHBOARD_METRICS - used)}")
    return problems


def check_network_policies(docs: list[dict], values: dict, workloads: list[dict]) -> list[str]:
    np_values = values["networkPolicy"]
    policies = find(docs, "NetworkPolicy")
    if bool(policies) != bool(np_values["enabled"]):
        return [f"NetworkPolicy rendered={bool(policies)}, expected {np_values['enabled']}"]
    problems = []
    ports_of = {}
    for w in workloads:
        if w.get("kind") == "Pod":
            continue
        component = pod_labels(w).get("app.kubernetes.io/component")
        for c in pod_spec(w).get("containers") or []:
            if ours(c):
                ports_of[component] = (
                    w,
                    {(p["containerPort"], p.get("protocol", "TCP")) for p in c.get("ports", [])},
                )
    callers = {
        "storer": {"collector", "collector-external", "control"},
        "control": {"collector", "collector-external", "storer", "test"},
        "collector": {"control"},
        "collector-external": {"control"},
    }
    for policy in policies:
        spec = policy["spec"]
        name = policy["metadata"]["name"]
        if spec.get("policyTypes") != ["Ingress"]:
            problems.append(f"NetworkPolicy/{name}: policyTypes {spec.get('policyTypes')}")
        component = spec["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        if component not in ports_of:
            problems.append(f"NetworkPolicy/{name}: selects no rendered workload ({component})")
            continue
        workload, container_ports = ports_of[component]
        if not selects(spec["podSelector"], pod_labels(workload)):
            problems.append(f"NetworkPolicy/{name}: does not select its workload's pods")
        admitted = {
            (p["port"], p.get("protocol", "TCP")) for rule in spec["ingress"] for p in rule["ports"]
        }
        if not admitted <= container_ports:
            extra_ports = sorted(admitted - container_ports)
            problems.append(f"NetworkPolicy/{name}: ports {extra_ports} not served")
        if admitted != container_ports:
            closed = sorted(container_ports - admitted)
            problems.append(f"NetworkPolicy/{name}: served ports {closed} not admitted")
        grpc_rule = spec["ingress"][0]
        peers = grpc_rule.get("from") or []
        released = peers[0]["podSelector"]["matchExpressions"] if peers else []
        allowed = next((e["values"] for e in released if e["key"].endswith("component")), [])
        if set(allowed) != callers[component]:
            expected = sorted(callers[component])
            problems.append(f"NetworkPolicy/{name}: gRPC callers {allowed}, expected {expected}")
        extra = {"storer": "storerFrom", "control": "controlFrom"}.get(component)
        if extra and peers[1:] != (np_values[extra] or []):
            problems.append(f"NetworkPolicy/{name}: extra peers are not networkPolicy.{extra}")
    return problems


def check_test_pod(docs: list[dict], values: dict, namespace: str) -> list[str]:
    pods = find(docs, "Pod")
    want = values["tests"]["enabled"] and values["control"]["enabled"]
    if bool(pods) != bool(want):
        return [f"helm test pod rendered={bool(pods)}, expected {bool(want)}"]
    problems = []
    for pod in pods:
        if pod["metadata"].get("annotations", {}).get("helm.sh/hook") != "test":
            problems.append("test pod: no helm.sh/hook: test annotation")
        if pod["spec"].get("restartPolicy") != "Never":
            problems.append("test pod: restartPolicy is not Never")
        (container,) = pod["spec"]["containers"]
        if container["command"] != ["/usr/local/bin/sipcapture"]:
            problems.append(f"test pod: command {container['command']}")
        args = container["args"]
        if args[:3] != ["status", "check", "--target"]:
            problems.append(f"test pod: args {args}")
        control = next(
            d["metadata"]["name"] for d in find(docs, "Service", "-control")
        )
        port = values["control"]["grpcPort"]
        scheme = "https" if values["grpcTls"]["enabled"] else "http"
        expected = f"{scheme}://{control}.{namespace}.svc.{values['clusterDomain']}:{port}"
        if args[3] != expected:
            problems.append(f"test pod: target {args[3]}, expected {expected}")
        if values["grpcTls"]["enabled"] and "--cacert" not in args:
            problems.append("test pod: TLS without --cacert")
        sec = container.get("securityContext") or {}
        if sec.get("readOnlyRootFilesystem") is not True:
            problems.append("test pod: root filesystem is writable")
    return problems


def check_external(docs: list[dict], values: dict) -> list[str]:
    x = values["collector"]["external"]
    deployments = find(docs, "Deployment", "-collector-external")
    services = find(docs, "Service", "-collector-external")
    if bool(deployments) != bool(x["enabled"]) or bool(services) != bool(x["enabled"]):
        rendered = f"{bool(deployments)}/{bool(services)}"
        return [f"external collectors rendered={rendered}, expected {x['enabled']}"]
    problems = []
    for dep, svc in zip(deployments, services):
        if dep["spec"]["replicas"] != x["replicas"]:
            problems.append(f"external collectors: replicas {dep['spec']['replicas']}")
        spec = svc["spec"]
        if spec["type"] != x["service"]["type"]:
            problems.append(f"external Service: type {spec['type']}")
        if not selects({"matchLabels": spec["selector"]}, pod_labels(dep)):
            problems.append("external Service: selector misses the Deployment's pods")
        daemon_labels = [pod_labels(d) for d in find(docs, "DaemonSet")]
        if any(selects({"matchLabels": spec["selector"]}, lab) for lab in daemon_labels):
            problems.append("external Service: selector also takes the DaemonSet's pods")
        ports = {(p["name"], p["protocol"]): p for p in spec["ports"]}
        udp, tcp = ports.get(("hep-udp", "UDP")), ports.get(("hep-tcp", "TCP"))
        if not udp or not tcp or udp["port"] != tcp["port"] or udp["port"] != x["service"]["port"]:
            problems.append(f"external Service: HEP ports {spec['ports']}")
        elif x["service"]["type"] == "NodePort" and x["service"].get("nodePort"):
            node_port = x["service"]["nodePort"]
            if udp.get("nodePort") != node_port or tcp.get("nodePort") != node_port:
                problems.append("external Service: nodePort not on both protocols")
        (container,) = [c for c in pod_spec(dep)["containers"] if ours(c)]
        named = {p["name"]: p for p in container["ports"]}
        for p in spec["ports"]:
            if p["targetPort"] not in named or named[p["targetPort"]]["protocol"] != p["protocol"]:
                target = p["targetPort"]
                problems.append(f"external Service: targetPort {target} not a container port")
            if "hostPort" in named.get(p["targetPort"], {}):
                problems.append("external collectors: hostPort set on the pod network")
    return problems


def check_containers(docs: list[dict], values: dict, workloads: list[dict]) -> list[str]:
    problems = []
    digest = values["image"].get("digest")
    startup = values["probes"]["startup"]
    for w in workloads:
        name = f"{w['kind']}/{w['metadata']['name']}"
        spec = pod_spec(w)
        component = pod_labels(w).get("app.kubernetes.io/component", "")
        section = {"collector-external": "collector", "test": None}.get(component, component)
        for c in spec.get("containers") or []:
            if not ours(c):
                continue
            if digest and not c["image"].endswith("@" + digest):
                problems.append(f"{name}: image {c['image']} is not pinned to {digest}")
            if w["kind"] == "Pod":
                continue
            probe = c.get("startupProbe")
            if bool(probe) != bool(startup["enabled"]):
                problems.append(f"{name}: startupProbe rendered={bool(probe)}")
            elif probe:
                live = {k: v for k, v in c["livenessProbe"].items() if k in ("grpc", "tcpSocket")}
                if {k: v for k, v in probe.items() if k in ("grpc", "tcpSocket")} != live:
                    problems.append(f"{name}: startupProbe does not check what liveness checks")
                if probe["failureThreshold"] != startup["failureThreshold"]:
                    problems.append(f"{name}: startupProbe failureThreshold")
            comp_values = values.get(section or "", {}) if section else {}
            mounts = {m["name"] for m in c.get("volumeMounts") or []}
            for m in comp_values.get("extraVolumeMounts") or []:
                if m["name"] not in mounts:
                    problems.append(f"{name}: extra mount {m['name']} missing")
            volumes = {v["name"] for v in spec.get("volumes") or []}
            for v in comp_values.get("extraVolumes") or []:
                if v["name"] not in volumes:
                    problems.append(f"{name}: extra volume {v['name']} missing")
            inits = [i["name"] for i in spec.get("initContainers") or []]
            if w["kind"] != "Pod" and "sbc-example" not in name:
                want = [i["name"] for i in comp_values.get("initContainers") or []]
                if inits != want:
                    problems.append(f"{name}: initContainers {inits}, expected {want}")
    limits = values.get("grpcLimits") or {}
    for cm in find(docs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            rendered = tomllib.loads(text).get("grpc_limits")
            if (rendered or {}) != limits:
                problems.append(f"{key}: [grpc_limits] {rendered}, expected {limits}")
    return problems
