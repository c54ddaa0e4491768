#!/usr/bin/env bash
# Builds the cvrank runtime (a Debian 13 root filesystem with the TFX and Airflow envs) into the cache,
# unless a runtime for the current recipe is already there. Prints the runtime directory.
# The build happens in a temporary directory renamed into place at the end: a half-built runtime is never used.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cache="$(cvrank_cache_root)"
final="$(cvrank_runtime_dir)"
if [ -f "$final/opt/cvrank/READY" ]; then echo "$final"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9   # another clone may be building the same runtime right now
if [ -f "$final/opt/cvrank/READY" ]; then echo "$final"; exit 0; fi

cvrank_check_namespaces
if ! command -v mmdebstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || cvrank_die "mmdebstrap is missing; install it (apt-get install mmdebstrap uidmap) and retry."
  echo "cvrank runtime: installing mmdebstrap" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
fi

avail_kb=$(df -Pk "$cache" | awk 'NR==2 {print $4}')
[ "$avail_kb" -gt $((6 * 1024 * 1024)) ] || cvrank_die "no space left for the runtime: $cache has $((avail_kb / 1024)) MB free, the build needs about 6 GB. Set CVRANK_CACHE to a larger disk."

start=$(date +%s)
tmp="$cache/.building-$(basename "$final")-$$"
rm -rf "$cache"/.building-*   # leftovers of interrupted builds (we hold the lock)
trap 'rm -rf "$tmp"' EXIT
mode=root; [ "$(id -u)" = 0 ] || mode=unshare
echo "cvrank runtime: building Debian $CVRANK_SUITE root filesystem in $tmp" >&2
mmdebstrap --quiet --mode="$mode" --variant=minbase --include="$CVRANK_DEB_PACKAGES" "$CVRANK_SUITE" "$tmp" >&2

# The host's CA certificates, so pip and uv work behind TLS-inspecting proxies.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/"
fi
cp -L /etc/resolv.conf "$tmp/etc/resolv.conf"
mkdir -p "$tmp/opt/cvrank/recipe" "$cache/uv-cache"
(cd "$CVRANK_RECIPE_DIR" && cp $CVRANK_RECIPE_FILES "$tmp/opt/cvrank/recipe/")

# shellcheck disable=SC2046
unshare $(cvrank_unshare_flags) "$CVRANK_RECIPE_DIR/enter.sh" --writable "$tmp" / "$cache/uv-cache" -- \
  sh -c "update-ca-certificates >/dev/null && UV_CACHE_DIR='$cache/uv-cache' /opt/cvrank/recipe/install-envs.sh && \
         dpkg-query -W > /opt/cvrank/debian-packages.txt" >&2

echo "$(cvrank_runtime_key) built $(date -u +%FT%TZ) in $(( $(date +%s) - start )) s" > "$tmp/opt/cvrank/READY"
mv "$tmp" "$final"
trap - EXIT
echo "cvrank runtime: ready in $(( $(date +%s) - start )) s: $final" >&2
echo "$final"
