#!/bin/sh
# LVS-DR real-server helper: the real server must accept packets for the VIP (the
# director only rewrites the destination MAC) without ever answering ARP for it, or it
# would steal the VIP from the director.
#
#   lvs-dr-realserver.sh up VIP...     add each VIP to lo as /32; arp_ignore=1 and
#                                      arp_announce=2 on "all" and "lo" (the previous
#                                      values are saved to be restored by undo)
#   lvs-dr-realserver.sh undo VIP...   remove the VIPs from lo; restore the saved sysctl
#                                      values (kernel defaults 0 when nothing was saved)
#   lvs-dr-realserver.sh status        show the VIPs on lo and the four sysctls
#
# arp_ignore=1: answer ARP only for addresses configured on the receiving interface
# (the VIP lives on lo, so no ARP answer for it). arp_announce=2: always use the best
# local address of the outgoing interface as ARP source, never the VIP.
# IPv4 only: IPv6 has no arp_ignore equivalent (a VIP on lo would answer neighbour
# solicitations), so an IPv6 VIP is refused.
# State lives in $STATE_DIR (default /run/ha-lvs-dr, mode 0700), one file per network
# namespace, so several namespaces on one host do not mix their saved values.
set -eu

STATE_DIR=${STATE_DIR:-/run/ha-lvs-dr}
KEYS="net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce net.ipv4.conf.lo.arp_ignore net.ipv4.conf.lo.arp_announce"

die() { echo "lvs-dr-realserver: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 up VIP... | undo VIP... | status" >&2
  exit 2
}

netns_id() { stat -L -c %i /proc/self/ns/net; }

state_file() { echo "$STATE_DIR/sysctl.$(netns_id)"; }

check_vip() {
  case "$1" in
    *:*) die "$1: IPv6 VIPs are not supported (no arp_ignore for neighbour discovery)" ;;
    */*) die "$1: give the address without a prefix" ;;
  esac
  echo "$1" | grep -Eq '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' || die "$1: not an IPv4 address"
}

has_vip() { ip -4 -o addr show dev lo | awk '{print $4}' | grep -qx "$1/32"; }

up() {
  [ $# -gt 0 ] || usage
  for v in "$@"; do check_vip "$v"; done
  mkdir -p -m 0700 "$STATE_DIR"
  f=$(state_file)
  if [ ! -e "$f" ]; then
    tmp=$(mktemp "$STATE_DIR/.sysctl.XXXXXX")
    for k in $KEYS; do echo "$k=$(sysctl -n "$k")"; done > "$tmp"
    mv -f "$tmp" "$f"
  fi
  sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.lo.arp_ignore=1
  sysctl -qw net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.lo.arp_announce=2
  for v in "$@"; do
    has_vip "$v" || ip addr add "$v/32" dev lo
    echo "up: $v on lo"
  done
}

undo() {
  [ $# -gt 0 ] || usage
  for v in "$@"; do check_vip "$v"; done
  for v in "$@"; do
    if has_vip "$v"; then ip addr del "$v/32" dev lo; fi
    echo "undone: $v"
  done
  f=$(state_file)
  if [ -f "$f" ]; then
    while IFS='=' read -r k val; do
      case "$k" in net.ipv4.conf.*) sysctl -qw "$k=$val" ;; esac
    done < "$f"
    rm -f "$f"
  else
    for k in $KEYS; do sysctl -qw "$k=0"; done
  fi
}

status() {
  ip -4 -o addr show dev lo | awk '$4 != "127.0.0.1/8" {print "vip " $4}'
  for k in $KEYS; do echo "$k=$(sysctl -n "$k")"; done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  undo) undo "$@" ;;
  status) status ;;
  *) usage ;;
esac
