#!/usr/bin/env bash
# Boot the IPVS VM (same kernel, modules and image as tests/vm/ipvs-vm.sh, built by
# build-initramfs.sh) for the load-balancer benchmark: the image also holds the given
# binaries (lb-bench, the program under test, keepalived, with their shared libraries)
# and tests/vm/bench-init, which the kernel runs instead of /init. Prints the serial
# console. Run by `lb-bench` (tests/src/bin/lb-bench.rs), which passes:
#
#   tests/vm/bench-vm.sh WORKDIR "lbb.n=400 lbb.bin=ha-agent ..." LB_BENCH PROGRAM KEEPALIVED
#
# $HA_VM_TIMEOUT bounds the run (seconds, default 300), $HA_VM_MEM the guest memory (MiB,
# default 1024), $HA_VM_ACCEL the accelerator (default tcg).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: bench-vm.sh WORKDIR PARAMS BINARY...}
params=${2:-}
shift 2
t0=$(date +%s.%N)
"$here/build-initramfs.sh" "$work" "$@" "$here/bench-init" >&2
t1=$(date +%s.%N)
echo "bench-vm: initramfs built in $(echo "$t1 - $t0" | bc 2>/dev/null || echo "?")s" >&2
timeout --kill-after=5 "${HA_VM_TIMEOUT:-300}" qemu-system-x86_64 \
  -accel "${HA_VM_ACCEL:-tcg}" -m "${HA_VM_MEM:-1024}" -smp 1 -nographic -no-reboot -nodefaults \
  -serial stdio -kernel "$work/vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 rdinit=/bin/bench-init $params" </dev/null
t2=$(date +%s.%N)
echo "bench-vm: vm ran for $(echo "$t2 - $t1" | bc 2>/dev/null || echo "?")s" >&2
