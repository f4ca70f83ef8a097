#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each one briefly (CI smoke fuzzing).
#
#   fuzz/run.sh            # 30 s per target
#   FUZZ_SECONDS=300 fuzz/run.sh packet_decode
#
# cargo-fuzz needs nightly compiler flags; on the stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them. cargo-fuzz itself is installed if missing. Seeds come from the captured
# keepalived adverts (agent/src/vrrp/testdata) and deploy/*.conf when present; the corpus
# and any crash artifacts stay under fuzz/corpus and fuzz/artifacts (git-ignored).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(packet_decode config_parse http_reply)
fi

seed_packet() {
    local dir="$here/corpus/packet_decode" f hex
    mkdir -p "$dir"
    for f in "$root"/agent/src/vrrp/testdata/*.hex; do
        # Selector 0x80: a whole IPv4 datagram; 0x00: VRRP message, IPv4 multicast metadata.
        hex="$(sed -n 's/^ip //p' "$f")"
        if [ -n "$hex" ]; then
            printf '\x80%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')" \
                >"$dir/seed-ip-$(basename "$f" .hex)"
        fi
        hex="$(sed -n 's/^vrrp //p' "$f")"
        printf '\x00%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')" \
            >"$dir/seed-vrrp-$(basename "$f" .hex)"
    done
}

seed_config() {
    local dir="$here/corpus/config_parse" f
    mkdir -p "$dir"
    for f in "$root"/deploy/*.conf "$root"/deploy/*/*.conf; do
        if [ -f "$f" ]; then
            cp "$f" "$dir/seed-$(basename "$f")"
        fi
    done
    cat >"$dir/seed-inline.conf" <<'CONF'
global_defs {
    router_id lb1
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret12
    }
    virtual_ipaddress {
        192.0.2.100/24 dev eth0 label eth0:1
    }
}
CONF
}

seed_http() {
    local dir="$here/corpus/http_reply"
    mkdir -p "$dir"
    # First byte: the split size for the incremental decoder and the DNS id.
    printf '\x03HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello' >"$dir/seed-length"
    printf '\x00HTTP/1.0 503 Busy\nServer: x\n\nbody until close' >"$dir/seed-close"
    printf '\x07HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n' \
        >"$dir/seed-chunked"
}

cd "$here"
for t in "${targets[@]}"; do
    case "$t" in
        packet_decode) seed_packet ;;
        config_parse) seed_config ;;
        http_reply) seed_http ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    echo "== fuzz $t for ${seconds}s"
    cargo fuzz build "$t"
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=4096
done
