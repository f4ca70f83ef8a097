#!/usr/bin/env bash
# Build a bootable IPVS test VM: a stock Debian kernel (vmlinuz) and a busybox initramfs
# holding the ip_vs modules (and their dependencies), ipvsadm, the given test binaries,
# their shared libraries, the desired-state files and tests/vm/init.
#
#   tests/vm/build-initramfs.sh OUTDIR BINARY...
#
# Writes OUTDIR/vmlinuz and OUTDIR/initrd.gz. Installs what is missing with apt-get
# (qemu-system-x86, busybox-static, ipvsadm, cpio). Kernel packages are downloaded once
# into $HA_VM_CACHE (default /var/cache/ha-tests) and extracted there, so reruns are fast.
# $HA_VM_KERNEL_PKG picks the kernel package (default: what linux-image-amd64 depends on).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-initramfs.sh OUTDIR BINARY...}
shift
cache=${HA_VM_CACHE:-/var/cache/ha-tests}
mkdir -p "$out" "$cache/debs"
out=$(cd "$out" && pwd)

log() { echo "build-initramfs: $*" >&2; }

# --- host tools -------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v ipvsadm >/dev/null || [ -x /usr/sbin/ipvsadm ] || need+=(ipvsadm)
command -v cpio >/dev/null || need+=(cpio)
command -v file >/dev/null || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${need[@]}" >&2; }
fi
ipvsadm_bin=$(command -v ipvsadm || echo /usr/sbin/ipvsadm)

# --- kernel -----------------------------------------------------------------------------
# One builder at a time touches the cache (download, extraction).
exec 9>"$cache/.lock"
flock 9
pkg=${HA_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
  if [ -z "$pkg" ]; then
    apt-get update >&2 || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
  fi
fi
deb=""
if [ -n "$pkg" ]; then
  deb=$(ls "$cache"/debs/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$deb" ]; then
    log "downloading $pkg"
    (cd "$cache/debs" && apt-get download "$pkg" >&2)
    deb=$(ls "$cache"/debs/"${pkg}"_*.deb | sort -V | tail -n1)
  fi
else
  # No package lists: fall back on whatever kernel is cached.
  deb=$(ls "$cache"/debs/linux-image-*.deb 2>/dev/null | sort -V | tail -n1 || true)
fi
[ -n "$deb" ] || { log "no kernel package: apt-cache found no linux-image-amd64 and nothing is cached in $cache/debs"; exit 3; }
kdir="$cache/$(basename "$deb" .deb)"
if [ ! -f "$kdir/.done" ]; then
  log "extracting $(basename "$deb")"
  rm -rf "$kdir" && mkdir -p "$kdir"
  dpkg-deb -x "$deb" "$kdir"
  touch "$kdir/.done"
fi
kver=$(ls "$kdir/lib/modules" | head -n1)
moddir="$kdir/lib/modules/$kver"
cp "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz"
flock -u 9

# --- modules and their dependencies (from each .ko's .modinfo "depends=") --------------
declare -A path_of=()
while IFS= read -r ko; do
  name=$(basename "$ko" .ko); path_of[${name//-/_}]=$ko
done < <(find "$moddir/kernel" -name '*.ko')
declare -A seen=()
order=()
add_mod() {
  local m=${1//-/_} dep deps
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  [ -n "${path_of[$m]:-}" ] || { log "module $m not found in $kver"; exit 4; }
  deps=$(tr '\0' '\n' < "${path_of[$m]}" | sed -n 's/^depends=//p' | head -n1)
  for dep in ${deps//,/ }; do add_mod "$dep"; done
  order+=("$m")
}
# libcrc32c needs a crc32c implementation (a softdep, not in depends=).
for m in crc32c_generic ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh \
         ip_vs_dh ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_lblc ip_vs_lblcr; do
  add_mod "$m"
done

# --- the initramfs tree -----------------------------------------------------------------
root="$out/root"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,modules,lib64,usr/bin,usr/sbin}
cp /bin/busybox "$root/bin/busybox"
for m in "${order[@]}"; do cp "${path_of[$m]}" "$root/modules/$m.ko"; done
printf '%s\n' "${order[@]}" > "$root/modules/order"

copy_with_libs() { # SRC DEST-IN-ROOT
  local src=$1 dst=$2 lib
  mkdir -p "$root/$(dirname "$dst")"
  if command -v strip >/dev/null; then strip -o "$root/$dst" "$src" 2>/dev/null || cp "$src" "$root/$dst"; else cp "$src" "$root/$dst"; fi
  chmod 755 "$root/$dst"
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*'); do
    [ -e "$root/$lib" ] && continue
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
}
copy_with_libs "$ipvsadm_bin" /sbin/ipvsadm
for b in "$@"; do copy_with_libs "$b" "/bin/$(basename "$b")"; done
cp "$here/init" "$root/init"
chmod 755 "$root/init"
cp "$here"/*.state "$here"/*.conf "$root/"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$out/initrd.gz"
log "kernel $kver, ${#order[@]} modules, initrd $(du -h "$out/initrd.gz" | cut -f1)"
echo "$kver" > "$out/kernel-version"
