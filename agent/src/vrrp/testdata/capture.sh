#!/usr/bin/env bash
# Regenerates the keepalived advert vectors in this directory (documented, not run by CI).
#
# Runs Debian's keepalived (/usr/sbin/keepalived) as master of five VRRP instances in a
# network namespace, captures what arrives on the far end of a veth pair with tcpdump, and
# writes one `.hex` file per vector: the IP source, destination and TTL/hop limit, the whole
# IPv4 datagram as delivered to a raw socket (IPv4 only), and the VRRP message.
#
#   v2_pass.hex            v2, auth PASS "secret12", priority 150, advert_int 1, two IPv4 VIPs
#   v2_pass_prio0.hex      the same instance's priority-0 advert sent when keepalived stops
#   v3_ipv4.hex            v3 over IPv4, advert_int 0.05, one VIP
#   v3_ipv6.hex            v3 over IPv6 (source is keepalived's link-local address), two VIPs
#   v3_ipv4_unicast.hex    v3 over IPv4 to a unicast peer (pseudo-header uses the peer address)
#   v3_ipv4_old_unicast.hex  the same with `old_unicast_checksum`: pseudo-header destination
#                          is 224.0.0.18 although the packet goes to the peer. keepalived 2.2.7
#                          has no `v3_checksum_as_v2` (added in 2.2.8); this is its older
#                          checksum-compatibility knob.
#
# Needs root, iproute2, tcpdump, python3, keepalived. Usage: sudo ./capture.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tag="pktcap$$"
nsa="${tag}a"
nsb="${tag}b"
work="$(mktemp -d /tmp/${tag}.XXXXXX)"
kpid=""
tpid=""

cleanup() {
    [ -n "$kpid" ] && kill "$kpid" 2>/dev/null || true
    [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true
    ip netns del "$nsa" 2>/dev/null || true
    ip netns del "$nsb" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$nsa"
ip netns add "$nsb"
for ns in "$nsa" "$nsb"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
done
ip link add "${tag}x" netns "$nsa" type veth peer name "${tag}y" netns "$nsb"
ip -n "$nsa" link set "${tag}x" name veth0
ip -n "$nsb" link set "${tag}y" name veth0
ip -n "$nsa" addr add 192.0.2.1/24 dev veth0
ip -n "$nsa" addr add 2001:db8::1/64 dev veth0 nodad
ip -n "$nsb" addr add 192.0.2.2/24 dev veth0
ip -n "$nsb" addr add 2001:db8::2/64 dev veth0 nodad
ip -n "$nsa" link set veth0 up
ip -n "$nsb" link set veth0 up

cat >"$work/keepalived.conf" <<'CONF'
global_defs {
    router_id pkt_capture
}
vrrp_instance V2_PASS {
    state MASTER
    interface veth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret12
    }
    virtual_ipaddress {
        192.0.2.100/24
        192.0.2.101/24
    }
}
vrrp_instance V3_IPV4 {
    version 3
    state MASTER
    interface veth0
    virtual_router_id 52
    priority 150
    advert_int 0.05
    virtual_ipaddress {
        192.0.2.110/24
    }
}
vrrp_instance V3_IPV6 {
    version 3
    state MASTER
    interface veth0
    virtual_router_id 53
    priority 200
    advert_int 1
    virtual_ipaddress {
        2001:db8::100/64
        2001:db8::101/64
    }
}
vrrp_instance V3_UNICAST {
    version 3
    state MASTER
    interface veth0
    virtual_router_id 54
    priority 120
    advert_int 1
    unicast_src_ip 192.0.2.1
    unicast_peer {
        192.0.2.2
    }
    virtual_ipaddress {
        192.0.2.120/24
    }
}
vrrp_instance V3_OLD_UNICAST {
    version 3
    state MASTER
    interface veth0
    virtual_router_id 55
    priority 130
    advert_int 1
    unicast_src_ip 192.0.2.1
    unicast_peer {
        192.0.2.2
    }
    old_unicast_checksum
    virtual_ipaddress {
        192.0.2.130/24
    }
}
CONF

ip netns exec "$nsb" tcpdump -i veth0 -U -w "$work/cap.pcap" 'ip proto 112 or ip6 proto 112' \
    >"$work/tcpdump.log" 2>&1 &
tpid=$!
sleep 1
ip netns exec "$nsa" /usr/sbin/keepalived -n -l -P -f "$work/keepalived.conf" \
    -p "$work/keepalived.pid" -r "$work/vrrp.pid" -c "$work/checkers.pid" \
    >"$work/keepalived.log" 2>&1 &
kpid=$!
sleep 6
kill -TERM "$kpid"
wait "$kpid" || true
kpid=""
sleep 1
kill -INT "$tpid"
wait "$tpid" || true
tpid=""

python3 - "$work/cap.pcap" "$here" <<'PY'
import ipaddress, struct, sys

pcap, out = sys.argv[1], sys.argv[2]
data = open(pcap, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
linktype = struct.unpack(endian + "I", data[20:24])[0]
assert linktype == 1, f"expected ethernet captures, got linktype {linktype}"
pos = 24
packets = []
while pos + 16 <= len(data):
    _, _, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
    frame = data[pos + 16:pos + 16 + incl]
    pos += 16 + incl
    ethertype = struct.unpack("!H", frame[12:14])[0]
    l3 = frame[14:]
    if ethertype == 0x0800:
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        if l3[9] != 112:
            continue
        packets.append(dict(src=ipaddress.IPv4Address(l3[12:16]), dst=ipaddress.IPv4Address(l3[16:20]),
                            ttl=l3[8], ip=l3[:total], vrrp=l3[ihl:total]))
    elif ethertype == 0x86DD:
        plen = struct.unpack("!H", l3[4:6])[0]
        if l3[6] != 112:
            continue
        packets.append(dict(src=ipaddress.IPv6Address(l3[8:24]), dst=ipaddress.IPv6Address(l3[24:40]),
                            ttl=l3[7], ip=None, vrrp=l3[40:40 + plen]))

def pick(name, vrid, priority, last=False, note=""):
    found = [p for p in packets if p["vrrp"][1] == vrid and p["vrrp"][2] == priority]
    if not found:
        sys.exit(f"no advert for vrid {vrid} priority {priority}")
    p = found[-1] if last else found[0]
    with open(f"{out}/{name}.hex", "w") as f:
        f.write(f"# captured from Debian keepalived 2.2.7 by capture.sh{note}\n")
        f.write(f"src {p['src']}\ndst {p['dst']}\nttl {p['ttl']}\n")
        if p["ip"] is not None:
            f.write(f"ip {p['ip'].hex()}\n")
        f.write(f"vrrp {p['vrrp'].hex()}\n")
    print(f"{name}: {p['src']} -> {p['dst']} {p['vrrp'].hex()}")

pick("v2_pass", 51, 150)
pick("v2_pass_prio0", 51, 0, last=True, note=" (sent on SIGTERM)")
pick("v3_ipv4", 52, 150)
pick("v3_ipv6", 53, 200)
pick("v3_ipv4_unicast", 54, 120)
pick("v3_ipv4_old_unicast", 55, 130, note=" (old_unicast_checksum)")
PY
