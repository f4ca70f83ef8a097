#!/usr/bin/env bash
# Build the IPVS test VM and boot it once with qemu (TCG; no KVM needed), printing the
# serial console. Used by tests/tests/ipvs_vm.rs; runnable by hand:
#
#   tests/vm/ipvs-vm.sh [IPVS_APPLY_BINARY [WORKDIR]]
#
# Without a binary it builds ipvs-apply with cargo. WORKDIR defaults to a fresh temp dir.
# $HA_VM_TIMEOUT bounds the boot (seconds, default 120). HA_VM_BENCH=N also applies one
# service with N real servers and prints the timings (ipvs-apply's own clock, in the VM).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-}
if [ -z "$bin" ]; then
  (cd "$here/../.." && cargo build -q -p ha-tests --bin ipvs-apply >&2)
  bin="${CARGO_TARGET_DIR:-$here/../../target}/debug/ipvs-apply"
fi
work=${2:-}
if [ -z "$work" ]; then
  work=$(mktemp -d /tmp/ha-ipvs-vm.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
t0=$(date +%s.%N)
# $HA_VM_AGENT: an ha-agent binary to put in the image too (its --cleanup is checked).
"$here/build-initramfs.sh" "$work" "$bin" ${HA_VM_AGENT:+"$HA_VM_AGENT"}
t1=$(date +%s.%N)
echo "ipvs-vm: initramfs built in $(echo "$t1 - $t0" | bc 2>/dev/null || echo "?")s" >&2
# TCG by default (KVM fails on the machines this runs on); HA_VM_ACCEL=kvm to try it.
accel=${HA_VM_ACCEL:-tcg}
timeout --kill-after=5 "${HA_VM_TIMEOUT:-120}" qemu-system-x86_64 \
  -accel "$accel" -m 512 -smp 1 -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$work/vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1${HA_VM_BENCH:+ ha_bench=$HA_VM_BENCH}" </dev/null
t2=$(date +%s.%N)
echo "ipvs-vm: vm ran for $(echo "$t2 - $t1" | bc 2>/dev/null || echo "?")s" >&2
