#!/usr/bin/env bash
# The 3-node demo on loopback: daemons on HTTP 11001-11003 and raft 12001-12003, each with its
# nginx on 8100, 8200, 8300, as the seed README's walkthrough uses them. Runs in the foreground;
# Ctrl-C stops every process it started and exits 0. Data is kept in $DEMO_DATA (default
# demo-data/), so a second run resumes; `make demo-clean` wipes it. DEMO_OFFSET moves every
# port by that much (the tests run the demo beside other clusters). DEMO_SECURE=1 (make
# demo-secure) runs the same cluster with mutual TLS between nodes, TLS for clients through
# nginx, and auth, from certificates `raft-nginx certs` makes in $DEMO_DATA/pki once.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RAFTNGINX_BIN:-build/src/raft-nginx}
data=${DEMO_DATA:-demo-data}
offset=${DEMO_OFFSET:-0}
mkdir -p "$data"
secure=${DEMO_SECURE:-0}
pki="$data/pki"
http_port() { echo $((11000 + $1 + offset)); }
raft_port() { echo $((12000 + $1 + offset)); }
nginx_port() { echo $((8000 + 100 * $1 + offset)); }

for i in 1 2 3; do
  for port in "$(http_port "$i")" "$(raft_port "$i")" "$(nginx_port "$i")"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "demo: port $port is in use (another demo still running?); stop it first" >&2
      exit 1
    fi
  done
done

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping the nodes (each hands leadership over and stops its nginx)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: the cluster stopped; the data stays in $data/ (make demo-clean wipes it)"
}
# Ctrl-C (or SIGTERM) is how the demo is meant to end: a clean stop, exit 0.
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

scheme=http
curl_opts=()
if [ "$secure" = 1 ]; then
  [ -f "$pki/ca.pem" ] || "$bin" certs "$pki" --nodes node1,node2,node3 \
    --hosts 127.0.0.1,localhost >/dev/null
  scheme=https
  curl_opts=(--cacert "$pki/ca.pem" -H "Authorization: Bearer $(cat "$pki/admin.token")")
fi
trust() {
  [ "$secure" = 1 ] || return 0
  echo --node-cert "$pki/node$1.pem" --node-key "$pki/node$1-key.pem" --node-ca "$pki/ca.pem" \
    --http-cert "$pki/node$1.pem" --http-key "$pki/node$1-key.pem" --http-ca "$pki/ca.pem" \
    --auth "$pki/auth.json" --token-file "$pki/admin.token"
}

# node1 bootstraps the cluster on its first start; node2 and node3 join it (again, harmlessly,
# on later starts).
for i in 1 2 3; do
  join=()
  [ "$i" != 1 ] && join=(-join "127.0.0.1:$(http_port 1)")
  # shellcheck disable=SC2046 # the trust flags are words on purpose
  "$bin" -id "node$i" -haddr "127.0.0.1:$(http_port "$i")" -raddr "127.0.0.1:$(raft_port "$i")" \
    --nginx-listen "127.0.0.1:$(nginx_port "$i")" $(trust "$i") "${join[@]}" "$data/node$i" \
    >>"$data/node$i.log" 2>&1 &
  pids+=($!)
done

echo "demo: starting 3 nodes (logs in $data/node*.log)"
ready() {
  for i in 1 2 3; do
    port=$(nginx_port "$i")
    curl -sf "${curl_opts[@]}" "$scheme://localhost:$port/readyz" >/dev/null || return 1
    [ "$(curl -sf "${curl_opts[@]}" "$scheme://localhost:$port/status" | grep -o '"voter"' |
      wc -l)" = 3 ] || return 1
  done
}
for _ in $(seq 1 150); do
  ready && break
  sleep 0.2
done
if ! ready; then
  echo "demo: the cluster did not become ready in 30 s; the end of each log:" >&2
  tail -n 5 "$data"/node*.log >&2
  exit 1
fi

if [ "$secure" = 1 ]; then
  cat <<WALK
demo: ready, secured: mutual TLS between the nodes, TLS and auth for clients (docs/security.md).
nginx on 8100, 8200, 8300 over HTTPS; certificates and the admin token in $pki/. Try:

  export TOKEN=\$(cat $pki/admin.token)
  curl --cacert $pki/ca.pem -H "Authorization: Bearer \$TOKEN" -XPOST https://localhost:8100/key -d '{"user1": "batman"}'
  curl --cacert $pki/ca.pem -H "Authorization: Bearer \$TOKEN" https://localhost:8200/key/user1
  curl --cacert $pki/ca.pem -H "Authorization: Bearer \$TOKEN" https://localhost:8300/status
  curl --cacert $pki/ca.pem https://localhost:8100/key/user1      # no token: 401

Ctrl-C stops the cluster.
WALK
else
  cat <<'WALK'
demo: ready. nginx on 8100, 8200, 8300 (daemons on 11001-11003). Try the seed's walkthrough:

  curl -XPOST localhost:8100/key -d '{"user1": "batman"}'
  curl -XGET localhost:8100/key/user1
  curl -XGET localhost:8200/key/user1
  curl -XGET localhost:8300/key/user1
  curl -XPOST localhost:8100/key -d '{"user2": "robin"}'
  curl -XGET localhost:8300/key/user2

A write to a follower's nginx reaches the leader too:  curl -XPOST localhost:8300/key -d '{"k": "v"}'
Who leads, and the members:                          curl localhost:8200/status
Ctrl-C stops the cluster.
WALK
fi

# Foreground until Ctrl-C, or until a node dies on its own.
if wait -n "${pids[@]}"; then code=0; else code=$?; fi
echo "demo: a node exited on its own (status $code); see $data/node*.log" >&2
exit 1
