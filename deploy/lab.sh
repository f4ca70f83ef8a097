#!/usr/bin/env bash
# The lab: the classic keepalived topology in network namespaces on this machine.
#
#   ha-client 192.0.2.100 ---+        (hactl runs here)
#   ha-mgr    192.0.2.50  ---+        (ha-manager :7400, mTLS)
#   ha-lb1    192.0.2.1   ---+--- bridge br0 (namespace ha-sw)
#   ha-lb2    192.0.2.2   ---+
#   ha-rs1    192.0.2.11  ---+        (busybox httpd :80, VIP on lo: LVS-DR real server)
#   ha-rs2    192.0.2.12  ---+
#   VIP 192.0.2.10 (VRRP VI_1, VRID 51): lb1 master (priority 150), lb2 backup (100);
#   virtual_server 192.0.2.10:80 (LVS-DR, rr, TCP_CHECK) on both directors: the master
#   forwards HTTP to the VIP to rs1 / rs2, which answer the client directly.
#
# The agents and the manager serve Prometheus text on :9464 (--metrics-listen). When the
# `prometheus` binary is installed (Debian package prometheus), `up` also starts it in
# ha-client (192.0.2.100:9090), scraping them with deploy/prometheus/prometheus.yml, its
# data in /tmp/ha-lab/prometheus, and shows it on this host at 127.0.0.1:9090 (or the
# next free port up to 9099) through deploy/netns-forward.py.
#
# Usage: deploy/lab.sh up [--prometheus|--no-prometheus] | status | failover | restore | hactl ARGS... | down
#        `up` installs what it uses (iproute2, nftables, iputils-ping, curl, busybox-static;
#        prometheus with --prometheus) and builds the binaries.
#        (as root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
run=/tmp/ha-lab
VIP=192.0.2.10
bindir="${CARGO_TARGET_DIR:-$top/target}/debug"
METRICS_PORT=9464
PROM_ADDR=192.0.2.100

ns_exists() { ip netns list | awk '{print $1}' | grep -x "$1" >/dev/null; }

# Install what the lab uses (a fresh machine has no nft, ping, curl or busybox): each
# argument is COMMAND:DEBIAN-PACKAGE.
need() {
  local p cmd pkgs=()
  for p in "$@"; do
    cmd=${p%%:*}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || pkgs+=("${p#*:}")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  echo "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    { echo "cannot install ${pkgs[*]} (apt-get failed)" >&2; exit 1; }
}

down() {
  for n in lb1 lb2 mgr rs1 rs2 prometheus forward; do
    if [ -f "$run/$n.pid" ]; then kill "$(cat "$run/$n.pid")" 2>/dev/null || true; fi
  done
  sleep 0.5
  for ns in ha-client ha-mgr ha-lb1 ha-lb2 ha-rs1 ha-rs2 ha-sw; do
    if ns_exists "$ns"; then
      ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns"
    fi
  done
  rm -rf "$run"
  echo "lab removed"
}

host() { # name addr port
  ip netns add "ha-$1"
  ip -n "ha-$1" link set lo up
  ip link add eth0 netns "ha-$1" type veth peer name "$3" netns ha-sw
  ip -n ha-sw link set "$3" master br0 up
  ip -n "ha-$1" addr add "$2/24" dev eth0
  ip -n "ha-$1" link set eth0 up
}

state_of() { # node
  grep -o "(VI_1) Entering [A-Z]* STATE" "$run/$1.log" 2>/dev/null | tail -1 | awk '{print $3}'
}

status() {
  for n in lb1 lb2; do
    local holds=""
    ip -n "ha-$n" -o addr show | grep " $VIP/" >/dev/null && holds="  holds $VIP"
    printf '%-4s pid %-7s VI_1 %-7s%s\n' "$n" "$(cat "$run/$n.pid" 2>/dev/null)" "$(state_of "$n")" "$holds"
  done
  if ! command -v ping >/dev/null; then
    echo "client: cannot check $VIP (no ping: apt-get install iputils-ping)"
  elif ip netns exec ha-client ping -c1 -W1 "$VIP" >/dev/null 2>&1; then
    echo "client: $VIP answers ping"
  else
    echo "client: $VIP does not answer ping"
  fi
  local answers
  command -v curl >/dev/null || { echo "client: cannot check http://$VIP/ (no curl)"; return 0; }
  answers=$(for _ in 1 2 3 4; do ip netns exec ha-client curl -s --max-time 2 "http://$VIP/" || echo "(no answer)"; done | tr '\n' ' ')
  echo "client: http://$VIP/ x4 -> $answers"
}

# hactl in the client namespace with the lab's operator certificate.
hactl() {
  ip netns exec ha-client "$bindir/hactl" --manager "https://192.0.2.50:7400" \
    --ca "$run/pki/ca.pem" --cert "$run/pki/operator.pem" --key "$run/pki/operator.key" "$@"
}

wait_connected() {
  for _ in $(seq 1 100); do
    if hactl status --json 2>/dev/null | grep -Eo '"connected": ?true' | wc -l | grep -qx 2; then
      return 0
    fi
    sleep 0.1
  done
  echo "warning: agents not connected to the manager (see $run/*.log)" >&2
}

port_free() { # port
  ! ss -Hltn "sport = :$1" 2>/dev/null | grep . >/dev/null
}

# Prometheus inside the lab (the client namespace reaches every --metrics-listen), shown
# on this host's 127.0.0.1 by deploy/netns-forward.py: the lab's 192.0.2.0/24 is never
# routed on this host, whose own network may use that range.
start_prometheus() {
  mkdir -p "$run/prometheus"
  # The fleet's jobs of the shipped config (the OTel Collector job needs a collector)
  # and its alert rules.
  sed '/OpenTelemetry Collector over OTLP/,$d' "$here/prometheus/prometheus.yml" \
    >"$run/prometheus/prometheus.yml"
  cp "$here/prometheus/ha-alerts.yml" "$run/prometheus/ha-alerts.yml"
  ip netns exec ha-client setsid prometheus --config.file="$run/prometheus/prometheus.yml" \
    --storage.tsdb.path="$run/prometheus/data" --web.listen-address="$PROM_ADDR:9090" \
    >"$run/prometheus.log" 2>&1 < /dev/null &
  echo $! > "$run/prometheus.pid"
  local ready=0
  for _ in $(seq 1 100); do
    if ip netns exec ha-client curl -sf "http://$PROM_ADDR:9090/-/ready" >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [ "$ready" = 1 ] || echo "warning: Prometheus not ready yet (see $run/prometheus.log)" >&2
  command -v python3 >/dev/null || return 0
  for p in $(seq 9090 9099); do
    if port_free "$p"; then
      setsid python3 "$here/netns-forward.py" "$p" ha-client "$PROM_ADDR" 9090 \
        >"$run/forward.log" 2>&1 < /dev/null &
      echo $! > "$run/forward.pid"
      echo "$p" > "$run/prometheus.port"
      return 0
    fi
  done
  echo "warning: no free port in 9090-9099 on 127.0.0.1 for Prometheus" >&2
}

wait_unreachable() { # node: until the manager shows it unreachable (bounded)
  for _ in $(seq 1 100); do
    hactl status 2>/dev/null | grep -E "^$1 " | grep unreachable >/dev/null && return 0
    sleep 0.1
  done
  echo "warning: the manager still shows $1 reachable" >&2
}

wait_master() { # node
  for _ in $(seq 1 100); do
    [ "$(state_of "$1")" = MASTER ] && return 0
    sleep 0.1
  done
  echo "warning: $1 did not become MASTER (see $run/$1.log)" >&2
}

up() {
  local prom=1
  for a in "$@"; do
    case "$a" in
      --no-prometheus) prom=0 ;;
      --prometheus) prom=2 ;;
      *) echo "usage: $0 up [--prometheus|--no-prometheus]" >&2; exit 2 ;;
    esac
  done
  need ip:iproute2 nft:nftables ping:iputils-ping curl:curl
  [ -x /bin/busybox ] || need busybox:busybox-static
  if [ "$prom" = 2 ]; then need prometheus:prometheus; prom=1; fi
  command -v prometheus >/dev/null || prom=0
  down >/dev/null
  command -v cargo >/dev/null || { echo "cargo is needed to build ha-agent" >&2; exit 1; }
  echo "building ha-agent, ha-manager and hactl (the first build takes a few minutes)"
  (cd "$top" && cargo build -p ha-agent -p ha-manager -p hactl --bins)
  local bin="$bindir/ha-agent"
  mkdir -p "$run"
  ip netns add ha-sw
  ip -n ha-sw link add br0 type bridge
  ip -n ha-sw link set br0 up
  host client 192.0.2.100 pc
  host mgr 192.0.2.50 pm
  host lb1 192.0.2.1 p1
  host lb2 192.0.2.2 p2
  # Two LVS-DR real servers: the VIP on lo (no ARP for it), a web page naming them.
  local i=3
  for n in rs1 rs2; do
    host "$n" "192.0.2.1${n#rs}" "p$i"; i=$((i + 1))
    ip netns exec "ha-$n" env STATE_DIR="$run/dr-$n" "$here/lvs-dr-realserver.sh" up "$VIP" >/dev/null
    mkdir -p "$run/www-$n"; echo "$n" > "$run/www-$n/index.html"
    ip netns exec "ha-$n" setsid busybox httpd -f -p 80 -h "$run/www-$n" >"$run/$n.log" 2>&1 < /dev/null &
    echo $! > "$run/$n.pid"
  done
  # A CA, the manager's certificate, one per agent (CN = node name) and an operator's.
  "$bindir/ha-manager" pki init --dir "$run/pki" >/dev/null
  "$bindir/ha-manager" pki issue --dir "$run/pki" --name manager --role manager --san 192.0.2.50 >/dev/null
  for c in lb1:agent lb2:agent operator:operator; do
    "$bindir/ha-manager" pki issue --dir "$run/pki" --name "${c%%:*}" --role "${c#*:}" >/dev/null
  done
  ip netns exec ha-mgr setsid "$bindir/ha-manager" --listen 192.0.2.50:7400 --data "$run/mgr-data" \
    --tls-dir "$run/pki" --metrics-listen "192.0.2.50:$METRICS_PORT" >"$run/mgr.log" 2>&1 < /dev/null &
  echo $! > "$run/mgr.pid"
  for n in lb1 lb2; do
    "$bin" --check --config "$here/lab/$n.conf" >/dev/null
    ip netns exec "ha-$n" env RUST_LOG=${RUST_LOG:-info} setsid "$bin" --config "$here/lab/$n.conf" \
      --state-dir "$run/$n" --runtime-dir "$run/$n" --node "$n" --manager https://192.0.2.50:7400 \
      --tls-ca "$run/pki/ca.pem" --tls-cert "$run/pki/$n.pem" --tls-key "$run/pki/$n.key" \
      --metrics-listen "192.0.2.${n#lb}:$METRICS_PORT" \
      >"$run/$n.log" 2>&1 < /dev/null &
    echo $! > "$run/$n.pid"
  done
  if [ "$prom" = 1 ]; then start_prometheus; fi
  wait_master lb1
  wait_connected
  cat <<EOT
lab is up:
  ha-lb1    192.0.2.1    ha-agent, $here/lab/lb1.conf   log $run/lb1.log
  ha-lb2    192.0.2.2    ha-agent, $here/lab/lb2.conf   log $run/lb2.log
  ha-mgr    192.0.2.50   ha-manager (mTLS, certificates in $run/pki)   log $run/mgr.log
  ha-rs1/2  192.0.2.11/12  LVS-DR real servers (httpd :80)
  ha-client 192.0.2.100  ping the VIP: ip netns exec ha-client ping $VIP; HTTP: ip netns exec ha-client curl http://$VIP/
  metrics   http://192.0.2.{1,2,50}:$METRICS_PORT/metrics (e.g. ip netns exec ha-client curl -s http://192.0.2.1:$METRICS_PORT/metrics)
EOT
  if [ -f "$run/prometheus.port" ]; then
    echo "  prometheus http://127.0.0.1:$(cat "$run/prometheus.port")/  (runs in ha-client at $PROM_ADDR:9090, scrapes lb1, lb2, mgr every 5 s; log $run/prometheus.log)"
  elif [ -f "$run/prometheus.pid" ]; then
    echo "  prometheus http://$PROM_ADDR:9090/ inside ha-client (ip netns exec ha-client curl ...); log $run/prometheus.log"
  elif command -v prometheus >/dev/null; then
    echo "  prometheus not started (--no-prometheus)"
  else
    echo "  prometheus not installed (deploy/lab.sh up --prometheus installs it), not started"
  fi
  status
  cat <<EOT
fail the master over:   $0 failover   (cuts lb1's link at the switch)
bring it back:          $0 restore    (lb1 preempts, priority 150 > 100)
or stop lb1 cleanly:    kill \$(cat $run/lb1.pid)   (sends priority 0, lb2 takes over at once)
operate the fleet:      $0 hactl status | history | watch | set-priority lb2 VI_1 200
drain a real server:    $0 hactl rs drain lb1 192.0.2.10:80/TCP 192.0.2.12:80   (rs reset ... to undo)
remove everything:      $0 down

\$ hactl status
EOT
  hactl status
}

case "${1:-up}" in
  up) shift || true; up "$@" ;;
  down) down ;;
  status) status ;;
  failover) ip -n ha-sw link set p1 down; wait_master lb2; wait_unreachable lb1; status; hactl status ;;
  restore) ip -n ha-sw link set p1 up; sleep 0.2; wait_master lb1; status ;;
  hactl) shift; hactl "$@" ;;
  *) echo "usage: $0 up [--prometheus|--no-prometheus]|status|failover|restore|hactl ARGS...|down" >&2; exit 2 ;;
esac
