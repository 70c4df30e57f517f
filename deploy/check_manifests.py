#!/usr/bin/env python3
"""Checks the shape of the Kubernetes manifests (no cluster here to apply
them): they parse, and the DaemonSet has what the agent needs on a node."""
import sys
import yaml

docs = list(yaml.safe_load_all(open(sys.argv[1] if len(sys.argv) > 1 else "deploy/daemonset.yaml")))
ds = next(d for d in docs if d and d.get("kind") == "DaemonSet")
spec = ds["spec"]["template"]["spec"]
problems = []
if not spec.get("hostPID"):
    problems.append("hostPID must be true (uprobes reach container libraries through /proc/PID/root)")
if not spec.get("hostNetwork"):
    problems.append("hostNetwork must be true (listening sockets of the node)")
agent = spec["containers"][0]
caps = set(agent["securityContext"]["capabilities"]["add"])
for cap in ["BPF", "PERFMON", "SYS_PTRACE"]:
    if cap not in caps:
        problems.append(f"capability {cap} missing")
env = {e["name"]: e for e in agent.get("env", [])}
node = env.get("K8S_NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
if node != "spec.nodeName":
    problems.append("K8S_NODE_NAME must come from spec.nodeName (k8s.node.name on spans)")
if "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
    problems.append("OTEL_EXPORTER_OTLP_ENDPOINT missing")
mounts = {m["mountPath"] for m in agent["volumeMounts"]}
for path in ["/sys/kernel/tracing", "/var/lib/tlsdoctor"]:
    if path not in mounts:
        problems.append(f"volume mount {path} missing")
if "--metrics-addr=0.0.0.0:9464" not in agent.get("args", []):
    problems.append("metrics endpoint not enabled")
if problems:
    print("deploy/daemonset.yaml:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("deploy manifests: ok")
