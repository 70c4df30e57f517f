#!/bin/bash
# Inside the kernel-matrix guest (run by init.sh, root, loopback only): the
# agent's start and status.json check, then the capture end-to-end test.
# Everything lands in the results share; guest.env (written by xtask) names
# the binaries.
set -u
OUT=/mnt/tlsdoctor-results
# shellcheck source=/dev/null
. "$OUT/guest.env"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
cd /tmp || exit 1
uname -r > "$OUT/uname"

# 0. How fast this guest is (TCG emulation is many times slower than the
# host): the time programs the capture test drives take to start.
for cmd in "openssl version" "python3 -c 'import ssl'" "java -version"; do
    start=$(date +%s%N)
    bash -c "$cmd" > /dev/null 2>&1
    end=$(date +%s%N)
    echo "$cmd: $(( (end - start) / 1000000 )) ms"
done > "$OUT/timings"

# 1. The agent alone: does it load and attach, and what does status.json say?
mkdir -p /tmp/agent-check
TLSDOCTOR_LOG=info "$AGENT_BIN" run --journal /tmp/agent-check/journal.jsonl \
    > /dev/null 2> "$OUT/agent-start.log" &
pid=$!
state=timeout
for _ in $(seq 1 "$START_TIMEOUT_S"); do
    if ! kill -0 "$pid" 2>/dev/null; then
        state=exited
        break
    fi
    if grep -q "capturing TLS handshakes" "$OUT/agent-start.log" \
        && [ -s /tmp/agent-check/status.json ]; then
        state=capturing
        break
    fi
    sleep 1
done
if [ "$state" = capturing ]; then
    # status.json is rewritten every 5 s: take one written after start.
    sleep 6
    cp /tmp/agent-check/status.json "$OUT/status.json"
fi
kill -TERM "$pid" 2>/dev/null
wait "$pid"
echo "$?" > "$OUT/agent-start.rc"
echo "$state" > "$OUT/agent-start.state"

# 2. The capture end-to-end test (only when the agent can start at all).
if [ "$state" = capturing ]; then
    TLSDOCTOR_AGENT_BIN="$AGENT_BIN" "$CAPTURE_BIN" $CAPTURE_ARGS \
        > "$OUT/capture.log" 2>&1
    echo "$?" > "$OUT/capture.rc"
fi
dmesg > "$OUT/dmesg.log"
