#!/usr/bin/env python3
"""Semantic checks of the Kubernetes manifests (no cluster here to apply them;
deploy/check.sh validates them against the Kubernetes schemas first): the
DaemonSet has what the agent needs on a node and nothing it was not proven to
need, and the Jaeger example receives what the agent sends.

    python3 deploy/check_manifests.py                 # check deploy/*.yaml
    python3 deploy/check_manifests.py --capabilities  # print the DaemonSet's
                                                      # capabilities, one a line
                                                      # (tests/tests/deploy_caps.rs)
"""
import os
import sys

import yaml

DEPLOY = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(DEPLOY, "daemonset.yaml")
JAEGER = os.path.join(DEPLOY, "jaeger.yaml")

# Capabilities tests/tests/deploy_caps.rs shows the agent needs: each is
# required, and nothing beyond them is allowed until a test proves it needed.
PROVEN_CAPABILITIES = {"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}
METRICS_PORT = 9464


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(docs, kind, name=None):
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    return None


def agent_container(docs):
    ds = find(docs, "DaemonSet", "tlsdoctor")
    return ds["spec"]["template"]["spec"]["containers"][0]


def capabilities(docs):
    return agent_container(docs)["securityContext"]["capabilities"].get("add", [])


def check_agent(docs, problems):
    ds = find(docs, "DaemonSet", "tlsdoctor")
    if ds is None:
        problems.append("no DaemonSet tlsdoctor")
        return
    spec = ds["spec"]["template"]["spec"]
    if not spec.get("hostPID"):
        problems.append("hostPID must be true (uprobes reach container libraries through /proc/PID/root)")
    if not spec.get("hostNetwork"):
        problems.append("hostNetwork must be true (listening sockets of the node)")
    if {"operator": "Exists"} not in spec.get("tolerations", []):
        problems.append("a toleration {operator: Exists} is needed to run on every node")

    # RBAC: the pods of the node, read-only, for the ServiceAccount the pod uses.
    sa_name = spec.get("serviceAccountName")
    ns = ds["metadata"]["namespace"]
    sa = find(docs, "ServiceAccount", sa_name)
    if sa_name != "tlsdoctor" or sa is None or sa["metadata"].get("namespace") != ns:
        problems.append("ServiceAccount tlsdoctor/tlsdoctor missing or not used")
    if spec.get("automountServiceAccountToken") is not True:
        problems.append("automountServiceAccountToken must be true (the agent reads pods)")
    role = find(docs, "ClusterRole", "tlsdoctor")
    rules = role.get("rules", []) if role else []
    pods = [r for r in rules if "pods" in r.get("resources", []) and "" in r.get("apiGroups", [])]
    if not pods or not {"get", "list", "watch"} <= set(pods[0].get("verbs", [])):
        problems.append("ClusterRole tlsdoctor must allow get/list/watch on pods")
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    if any(writes & set(r.get("verbs", [])) for r in rules):
        problems.append("ClusterRole tlsdoctor must be read-only")
    binding = find(docs, "ClusterRoleBinding", "tlsdoctor")
    if (
        binding is None
        or binding["roleRef"].get("name") != "tlsdoctor"
        or {"kind": "ServiceAccount", "name": "tlsdoctor", "namespace": ns} not in binding.get("subjects", [])
    ):
        problems.append("ClusterRoleBinding tlsdoctor must bind ClusterRole tlsdoctor to ServiceAccount tlsdoctor/tlsdoctor")

    agent = spec["containers"][0]
    sc = agent.get("securityContext", {})
    if sc.get("privileged"):
        problems.append("privileged must not be set: capabilities instead")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation must be false")
    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"]:
        problems.append('capabilities must drop ["ALL"] and add back only what is needed')
    added = set(caps.get("add", []))
    for cap in sorted(PROVEN_CAPABILITIES - added):
        problems.append(f"capability {cap} missing (tests/tests/deploy_caps.rs needs it)")
    for cap in sorted(added - PROVEN_CAPABILITIES):
        problems.append(f"capability {cap} not proven needed (prove it in tests/tests/deploy_caps.rs first)")

    env = {e["name"]: e for e in agent.get("env", [])}
    node = env.get("K8S_NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if node != "spec.nodeName":
        problems.append("K8S_NODE_NAME must come from spec.nodeName (k8s.node.name on spans)")
    if "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
        problems.append("OTEL_EXPORTER_OTLP_ENDPOINT missing")

    mounts = {m["mountPath"]: m for m in agent.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for path in ["/sys/kernel/tracing", "/var/lib/tlsdoctor"]:
        if path not in mounts:
            problems.append(f"volume mount {path} missing")
    for path, m in mounts.items():
        host = volumes.get(m["name"], {}).get("hostPath")
        # Only the agent's own state directory is written on the node.
        if host and path != "/var/lib/tlsdoctor" and not m.get("readOnly"):
            problems.append(f"hostPath mount {path} must be readOnly")

    if f"--metrics-addr=0.0.0.0:{METRICS_PORT}" not in agent.get("args", []):
        problems.append("metrics endpoint not enabled")
    ports = {p.get("name"): p.get("containerPort") for p in agent.get("ports", [])}
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = agent.get(probe, {}).get("httpGet", {})
        port = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or port != METRICS_PORT:
            problems.append(f"{probe} must GET {path} on port {METRICS_PORT}")

    res = agent.get("resources", {})
    for key in ["cpu", "memory"]:
        if key not in res.get("requests", {}):
            problems.append(f"resources.requests.{key} missing")
    if "memory" not in res.get("limits", {}):
        problems.append("resources.limits.memory missing")
    if "cpu" in res.get("limits", {}):
        problems.append("no CPU limit: a throttled agent loses events under load")


def check_jaeger(agent_docs, docs, problems):
    env = {e["name"]: e.get("value") for e in agent_container(agent_docs).get("env", [])}
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    svc = find(docs, "Service", "jaeger-collector")
    if svc is None:
        problems.append("jaeger.yaml: Service jaeger-collector missing")
        return
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
    service_ports = {p["port"] for p in svc["spec"]["ports"]}
    if endpoint != f"http://{host}:4317" or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") != "grpc":
        problems.append(f"the agent's OTLP endpoint must be http://{host}:4317 over grpc (is {endpoint})")
    for port in [4317, 4318, 16686]:
        if port not in service_ports:
            problems.append(f"jaeger.yaml: Service port {port} missing")
    deploy = find(docs, "Deployment", "jaeger")
    if deploy is None:
        problems.append("jaeger.yaml: Deployment jaeger missing")
        return
    pod = deploy["spec"]["template"]
    if any(pod["metadata"]["labels"].get(k) != v for k, v in svc["spec"]["selector"].items()):
        problems.append("jaeger.yaml: the Service selects no Jaeger pod")
    container = pod["spec"]["containers"][0]
    cports = {p["containerPort"] for p in container.get("ports", [])}
    for port in [4317, 4318, 16686]:
        if port not in cports:
            problems.append(f"jaeger.yaml: container port {port} missing")
    jenv = {e["name"]: e.get("value") for e in container.get("env", [])}
    image = container["image"]
    if "all-in-one" in image and jenv.get("COLLECTOR_OTLP_ENABLED") != "true":
        problems.append("jaeger.yaml: all-in-one v1 needs COLLECTOR_OTLP_ENABLED=true")
    if image.startswith("jaegertracing/jaeger:") and jenv.get("JAEGER_LISTEN_HOST") != "0.0.0.0":
        problems.append("jaeger.yaml: Jaeger v2 listens on localhost unless JAEGER_LISTEN_HOST=0.0.0.0")


def main():
    agent_docs = load(AGENT)
    if sys.argv[1:] == ["--capabilities"]:
        print("\n".join(capabilities(agent_docs)))
        return 0
    problems = []
    check_agent(agent_docs, problems)
    check_jaeger(agent_docs, load(JAEGER), problems)
    if problems:
        print("deploy manifests:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print("deploy manifests: semantic checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
