#!/usr/bin/env python3
"""Checks deploy/Dockerfile without Docker (none here): its builder stage runs
exactly the build commands developers and CI run, which deploy/README.md
documents, and the runtime stage takes the binary that build produces."""
import os
import re
import sys

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEPLOY)

# What `cargo xtask test` (CI) and a developer run to build the agent:
# xtask's setup (its build half) and the release build of the agent.
BUILD_COMMANDS = ["cargo xtask setup --build-only", "cargo build --release -p agent"]
BINARY = "/src/target/release/agent"


def instructions(text):
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    return out


def main():
    problems = []
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        steps = instructions(f.read())
    stages, current = {}, None
    for word, rest in steps:
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.IGNORECASE)
            current = m.group(2) or f"stage{len(stages)}"
            stages[current] = {"image": m.group(1), "steps": []}
        elif current is None:
            problems.append(f"{word} before FROM")
        else:
            stages[current]["steps"].append((word, rest))
    builder = stages.get("builder")
    if builder is None:
        problems.append("no builder stage (FROM ... AS builder)")
    else:
        runs = [rest for word, rest in builder["steps"] if word == "RUN"]
        if runs != BUILD_COMMANDS:
            problems.append(f"builder RUN steps {runs} are not the build commands {BUILD_COMMANDS}")
        if not builder["image"].startswith("rust:1.95-bookworm"):
            problems.append(f"builder image {builder['image']}: Rust 1.95 on Debian 12, as the development machines")
    runtime = list(stages.values())[-1] if stages else None
    if runtime is None or runtime is builder:
        problems.append("no runtime stage after the builder")
    else:
        copies = [rest for word, rest in runtime["steps"] if word == "COPY"]
        if not any(c.startswith(f"--from=builder {BINARY} ") for c in copies):
            problems.append(f"the runtime stage must COPY --from=builder {BINARY}")
        if not runtime["image"].startswith("debian:bookworm-slim"):
            problems.append(f"runtime image {runtime['image']}: debian:bookworm-slim expected")
    # The commands are the documented ones, and xtask has the flag.
    with open(os.path.join(DEPLOY, "README.md")) as f:
        readme = f.read()
    for cmd in BUILD_COMMANDS:
        if cmd not in readme:
            problems.append(f"deploy/README.md does not document `{cmd}`")
    with open(os.path.join(ROOT, "xtask", "src", "main.rs")) as f:
        if "build_only" not in f.read():
            problems.append("xtask has no `setup --build-only`")
    if problems:
        print("deploy/Dockerfile:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print("deploy/Dockerfile: builder runs", " && ".join(BUILD_COMMANDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
