#!/bin/sh
# Starts one raft-nginx node with its nginx, configured from the environment. The daemon runs
# nginx as its child: SIGTERM to this process (it execs the daemon) hands leadership over and
# stops both; if nginx dies, the daemon stops too, so the container exits when either dies.
#
#   RAFT_NGINX_ID         node id                          (default: the host name)
#   RAFT_NGINX_HOST       host name the others reach it by (default: the host name)
#   RAFT_NGINX_BIND_HOST  address the daemon binds         (default: 0.0.0.0)
#   RAFT_NGINX_HTTP_PORT  daemon HTTP port                 (default: 11000)
#   RAFT_NGINX_RAFT_PORT  raft port                        (default: 12000)
#   RAFT_NGINX_LISTEN     nginx's address                  (default: 0.0.0.0:80)
#   RAFT_NGINX_JOIN       HTTP address of a member to join (default: none; bootstrap)
#   RAFT_NGINX_DATA       data directory                   (default: /var/lib/raft-nginx)
#   RAFT_NGINX_BIN        the daemon                       (default: raft-nginx)
#   RAFT_NGINX_TLS_DIR    what `raft-nginx certs` wrote (ca.pem, <id>.pem, <id>-key.pem,
#                         auth.json, admin.token): mutual TLS, client TLS and auth
#                         (default: none; then a node bound beyond loopback runs --insecure)
# Arguments are passed on to the daemon, e.g. --write-policy reject.
set -eu
host_name=$(hostname)
id=${RAFT_NGINX_ID:-$host_name}
host=${RAFT_NGINX_HOST:-$host_name}
bind=${RAFT_NGINX_BIND_HOST:-0.0.0.0}
http_port=${RAFT_NGINX_HTTP_PORT:-11000}
raft_port=${RAFT_NGINX_RAFT_PORT:-12000}
if [ -n "${RAFT_NGINX_JOIN:-}" ]; then
  set -- -join "$RAFT_NGINX_JOIN" "$@"
fi
if [ -n "${RAFT_NGINX_TLS_DIR:-}" ]; then
  t=$RAFT_NGINX_TLS_DIR
  set -- --node-cert "$t/$id.pem" --node-key "$t/$id-key.pem" --node-ca "$t/ca.pem" \
    --http-cert "$t/$id.pem" --http-key "$t/$id-key.pem" --http-ca "$t/ca.pem" \
    --auth "$t/auth.json" --token-file "$t/admin.token" "$@"
else
  case "$bind" in
    127.*|localhost|::1) ;;
    *) echo "raft-nginx-entrypoint: no RAFT_NGINX_TLS_DIR: serving $bind without TLS and auth" >&2
       set -- --insecure "$@" ;;
  esac
fi
exec "${RAFT_NGINX_BIN:-raft-nginx}" -id "$id" \
  -haddr "$bind:$http_port" --http-advertise "$host:$http_port" \
  -raddr "$bind:$raft_port" --raft-advertise "$host:$raft_port" \
  --nginx-listen "${RAFT_NGINX_LISTEN:-0.0.0.0:80}" \
  "$@" "${RAFT_NGINX_DATA:-/var/lib/raft-nginx}"
