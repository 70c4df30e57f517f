#!/usr/bin/env python3
"""Semantic checks of the Kubernetes manifests (no cluster here to apply them;
deploy/check.sh validates them against the Kubernetes schemas first): the
DaemonSet has what the agent needs on a node and nothing it was not proven to
need, the Jaeger example receives what the agent sends, the monitoring
objects scrape it, and the kustomizations render.

    python3 deploy/check_manifests.py                 # check deploy/*.yaml
    python3 deploy/check_manifests.py --capabilities  # print the DaemonSet's
                                                      # capabilities, one a line
                                                      # (tests/tests/deploy_caps.rs)
    python3 deploy/check_manifests.py --render DIR OUT  # render the kustomization
                                                      # in DIR into OUT (below)
    python3 deploy/check_manifests.py --agent-config OUT  # the ConfigMap's agent.yaml

Rendering: where kubectl is missing (here), `--render` applies the part of
kustomize these kustomizations use -- `resources` (files and directories),
`images` (newName/newTag) and JSON 6902 `patches` (with the `jsonpatch`
library) -- so that check.sh can validate what `kubectl apply -k` would
apply. Where kubectl is installed, check.sh renders with it instead.
"""
import os
import sys

import yaml

DEPLOY = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(DEPLOY, "agent", "daemonset.yaml")
JAEGER = os.path.join(DEPLOY, "jaeger.yaml")
MONITORING = os.path.join(DEPLOY, "monitoring.yaml")
ALERTS = os.path.join(DEPLOY, "alerts.yaml")
# hostPath directories the agent may mount (read-only but the state
# directory): tracefs, its state, and the default config directories of
# servers that are not running. Running servers are read through /proc/PID/root.
ALLOWED_HOST_PATHS = {"/sys/kernel/tracing", "/var/lib/tlsdoctor", "/etc"}
ALLOWED_ETC_SUBPATHS = {"nginx", "apache2"}

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

    if f"--metrics-addr=$(HOST_IP):{METRICS_PORT}" not in agent.get("args", []):
        problems.append(f"the metrics endpoint must bind the node's address: --metrics-addr=$(HOST_IP):{METRICS_PORT}")
    host_ip = env.get("HOST_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if host_ip != "status.hostIP":
        problems.append("HOST_IP must come from status.hostIP (the metrics endpoint binds it)")
    if any("0.0.0.0" in a for a in agent.get("args", [])):
        problems.append("nothing may bind 0.0.0.0: the endpoint has no authentication")

    for path, m in mounts.items():
        host = volumes.get(m["name"], {}).get("hostPath")
        if not host:
            continue
        if host["path"] not in ALLOWED_HOST_PATHS:
            problems.append(f"hostPath {host['path']} mounted at {path}: not one the agent needs")
        if host["path"] == "/etc" and m.get("subPath") not in ALLOWED_ETC_SUBPATHS:
            problems.append(f"/etc is mounted only for {sorted(ALLOWED_ETC_SUBPATHS)} (is {m.get('subPath')})")
    if "/etc/ssl" in mounts:
        problems.append("/etc/ssl must stay the image's own (its CA bundle)")

    config_env = env.get("TLSDOCTOR_CONFIG", {}).get("value", "")
    cm = find(docs, "ConfigMap", "tlsdoctor")
    config_mount = next((p for p, m in mounts.items() if volumes.get(m["name"], {}).get("configMap", {}).get("name") == "tlsdoctor"), None)
    if cm is None or config_mount is None:
        problems.append("the ConfigMap tlsdoctor must exist and be mounted")
    elif os.path.dirname(config_env) != config_mount or os.path.basename(config_env) not in cm.get("data", {}):
        problems.append(f"TLSDOCTOR_CONFIG ({config_env}) must name a key of the ConfigMap mounted at {config_mount}")
    elif not isinstance(yaml.safe_load(cm["data"][os.path.basename(config_env)]), dict):
        problems.append("the ConfigMap's agent config must be a YAML table")
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
    if "cpu" not in res.get("limits", {}):
        problems.append("resources.limits.cpu missing: at system-node-critical priority the agent must be bounded")


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


def check_monitoring(agent_docs, docs, problems):
    ds = find(agent_docs, "DaemonSet", "tlsdoctor")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    svc = find(docs, "Service", "tlsdoctor-metrics")
    sm = find(docs, "ServiceMonitor", "tlsdoctor")
    if svc is None or sm is None:
        problems.append("monitoring.yaml: Service tlsdoctor-metrics and ServiceMonitor tlsdoctor needed")
        return
    if any(pod_labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        problems.append("monitoring.yaml: the Service selects no agent pod")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    if ports.get("metrics", {}).get("port") != METRICS_PORT:
        problems.append(f"monitoring.yaml: the Service needs port metrics = {METRICS_PORT}")
    want = sm["spec"]["selector"].get("matchLabels", {})
    if any(svc["metadata"]["labels"].get(k) != v for k, v in want.items()):
        problems.append("monitoring.yaml: the ServiceMonitor selects no Service")
    if not any(e.get("port") == "metrics" and e.get("path") == "/metrics" for e in sm["spec"]["endpoints"]):
        problems.append("monitoring.yaml: the ServiceMonitor must scrape port metrics at /metrics")


def check_alerts(path, problems):
    with open(path) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc.get("groups", []) for r in g.get("rules", [])]
    if not rules:
        problems.append("alerts.yaml: no rules")
    for r in rules:
        name = r.get("alert")
        if not name or not r.get("expr") or "severity" not in r.get("labels", {}) or "summary" not in r.get("annotations", {}):
            problems.append(f"alerts.yaml: rule {name!r} needs alert, expr, labels.severity, annotations.summary")
    if not any("tlsdoctor_certificate_not_after_timestamp_seconds" in r.get("expr", "") for r in rules):
        problems.append("alerts.yaml: no certificate expiry alert")


def kustomize(directory):
    """The objects `kubectl kustomize DIRECTORY` gives, for the subset of
    kustomize used here (see the module's doc)."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - {"apiVersion", "kind", "resources", "images", "patches"}
    if unknown:
        raise SystemExit(f"{directory}: kustomization fields not rendered here: {sorted(unknown)}")
    objects = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, res))
        objects.extend(kustomize(path) if os.path.isdir(path) else load(path))
    for patch in k.get("patches", []):
        import jsonpatch  # only here: --capabilities runs on the system python

        with open(os.path.join(directory, patch["path"])) as f:
            ops = jsonpatch.JsonPatch(yaml.safe_load(f))
        target = patch["target"]
        hits = [i for i, o in enumerate(objects) if o.get("kind") == target.get("kind") and o["metadata"]["name"] == target.get("name")]
        if len(hits) != 1:
            raise SystemExit(f"{directory}: patch target {target} matches {len(hits)} objects")
        objects[hits[0]] = ops.apply(objects[hits[0]])
    for image in k.get("images", []):
        for o in objects:
            pod = o.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return objects


def check_overlays(problems):
    base = kustomize(DEPLOY)
    ds = find(base, "DaemonSet", "tlsdoctor")
    with open(os.path.join(DEPLOY, "agent", "kustomization.yaml")) as f:
        images = yaml.safe_load(f).get("images", [])
    agent_image = find(load(AGENT), "DaemonSet", "tlsdoctor")["spec"]["template"]["spec"]["containers"][0]["image"]
    if not any(i["name"] == agent_image.partition(":")[0] and i.get("newTag") for i in images):
        problems.append("agent/kustomization.yaml: an images: entry for the agent's image (with newTag) is needed")
    if ds is None:
        problems.append("kustomization.yaml: no DaemonSet rendered")
    tls = find(kustomize(os.path.join(DEPLOY, "otlp-tls")), "DaemonSet", "tlsdoctor")
    env = {e["name"]: e for e in agent_container([tls]).get("env", [])}
    if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("value", "").startswith("https://"):
        problems.append("otlp-tls: the endpoint must be https://")
    if "secretKeyRef" not in env.get("OTEL_EXPORTER_OTLP_HEADERS", {}).get("valueFrom", {}):
        problems.append("otlp-tls: OTEL_EXPORTER_OTLP_HEADERS must come from a Secret")


def render(directory, out):
    with open(out, "w") as f:
        yaml.safe_dump_all(kustomize(directory), f, sort_keys=False)


def main():
    agent_docs = load(AGENT)
    if sys.argv[1:] == ["--capabilities"]:
        print("\n".join(capabilities(agent_docs)))
        return 0
    if sys.argv[1:2] == ["--render"] and len(sys.argv) == 4:
        render(sys.argv[2], sys.argv[3])
        return 0
    if sys.argv[1:2] == ["--agent-config"] and len(sys.argv) == 3:
        with open(sys.argv[2], "w") as f:
            f.write(find(agent_docs, "ConfigMap", "tlsdoctor")["data"]["agent.yaml"])
        return 0
    problems = []
    check_agent(agent_docs, problems)
    check_jaeger(agent_docs, load(JAEGER), problems)
    check_monitoring(agent_docs, load(MONITORING), problems)
    check_alerts(ALERTS, problems)
    check_overlays(problems)
    if problems:
        print("deploy manifests:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print("deploy manifests: semantic checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
