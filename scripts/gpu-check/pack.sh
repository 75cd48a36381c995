#!/usr/bin/env bash
# Packs what a GPU machine without Node.js and without network needs to run `clipsieve bench` on its
# GPU providers (docs/operations.md, "GPU"): Node 24's binary, onnxruntime-node's Linux x64 library
# and binding, the JavaScript packages the bench loads (found by tracing it, not by a list), the
# project's src/, bin/ and package.json, scripts/bench_numpy.py, this folder's run.sh and probes, and
# the Vulkan loader for the WebGPU provider. Writes one .tar.xz, which must stay under 60 MiB.
#
#   scripts/gpu-check/pack.sh                 # -> scripts/gpu-check/out/clipsieve-gpu-check.tar.xz
#   scripts/gpu-check/pack.sh --out DIR       # the tarball in DIR instead
#
# Needs: a checkout with node_modules installed (npm ci), tar, xz; for the Vulkan loader either
# libvulkan.so.1 on this machine or apt-get (it downloads Debian's libvulkan1 package, installs nothing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/out"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "pack.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
name=clipsieve-gpu-check
limit_bytes=$((60 * 1024 * 1024))

node="$repo/node_modules/node/bin/node"
ort_bin="$repo/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
[[ -x "$node" ]] || { echo "pack.sh: no $node; run npm ci first" >&2; exit 1; }
[[ -f "$ort_bin/libonnxruntime.so.1" && -f "$ort_bin/onnxruntime_binding.node" ]] ||
  { echo "pack.sh: onnxruntime-node's Linux x64 library is missing under $ort_bin" >&2; exit 1; }
node_version=$("$node" -p process.version)
[[ "$node_version" == v24.* ]] || { echo "pack.sh: $node is $node_version, not Node 24" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/clipsieve-gpu-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT
bundle="$work/$name"
mkdir -p "$bundle/runtime" "$bundle/scripts/gpu-check" "$bundle/lib"

echo "pack: project files"
cp "$repo/package.json" "$bundle/"
cp -R "$repo/bin" "$repo/src" "$bundle/"
cp "$repo/scripts/bench_numpy.py" "$bundle/scripts/"
cp "$here/run.sh" "$here/placement.ts" "$here/summary.ts" "$bundle/scripts/gpu-check/"

echo "pack: Node.js $node_version"
cp "$node" "$bundle/runtime/node"

echo "pack: tracing the modules the bench and the probes load"
trace="$work/trace.txt"
: >"$trace"
(
  cd "$repo"
  export CLIPSIEVE_TRACE_OUT="$trace"
  "$node" --import "$here/trace-deps.mjs" src/cli/main.ts bench --help >/dev/null
  "$node" --import "$here/trace-deps.mjs" "$here/placement.ts" --child --device cpu --graph rowDotGraph >/dev/null 2>&1
  "$node" --import "$here/trace-deps.mjs" "$here/summary.ts" --help >/dev/null
)
# The package folder of each traced file under node_modules: the path up to the last
# node_modules/<name> (or node_modules/@scope/<name>).
mapfile -t packages < <(
  sed -n "s#^file://$repo/##p" "$trace" | grep '^node_modules/' |
    sed -E 's#^(.*node_modules/(@[^/]+/)?[^/]+)/.*#\1#' | sort -u
)
echo "pack: ${#packages[@]} packages: $(printf '%s ' "${packages[@]#node_modules/}")"
for pkg in "${packages[@]}"; do
  if [[ "$pkg" == node_modules/onnxruntime-node ]]; then
    # Only Linux x64 of its prebuilt binaries (the package holds every platform's, 290 MB).
    mkdir -p "$bundle/$pkg/bin/napi-v6/linux/x64"
    (cd "$repo/$pkg" && tar -cf - --exclude=./bin --exclude=./node_modules .) | (cd "$bundle/$pkg" && tar -xf -)
    cp "$ort_bin/libonnxruntime.so.1" "$ort_bin/onnxruntime_binding.node" "$bundle/$pkg/bin/napi-v6/linux/x64/"
  else
    # Nested node_modules are packages of their own: copied when traced, not wholesale.
    mkdir -p "$bundle/$pkg"
    (cd "$repo/$pkg" && tar -cf - --exclude=node_modules .) | (cd "$bundle/$pkg" && tar -xf -)
  fi
done
ort_version=$(cd "$repo" && "$node" -p 'require("onnxruntime-node/package.json").version')

echo "pack: the Vulkan loader (libvulkan.so.1) for the WebGPU provider"
vulkan_source="not bundled"
system_vulkan=$(/sbin/ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}' || true)
if [[ -n "$system_vulkan" && -e "$system_vulkan" ]]; then
  mkdir -p "$bundle/lib/vulkan"
  cp -L "$system_vulkan" "$bundle/lib/vulkan/libvulkan.so.1"
  vulkan_source="this machine's $system_vulkan ($(dpkg-query -W -f '${Package} ${Version}' libvulkan1 2>/dev/null || echo 'package unknown'))"
elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  mkdir -p "$work/deb"
  if (cd "$work/deb" && apt-get download libvulkan1 >/dev/null 2>&1); then
    deb=$(ls "$work/deb"/libvulkan1_*.deb)
    dpkg-deb -x "$deb" "$work/deb/x"
    mkdir -p "$bundle/lib/vulkan"
    cp -L "$work/deb/x/usr/lib/x86_64-linux-gnu/libvulkan.so.1" "$bundle/lib/vulkan/libvulkan.so.1"
    vulkan_source="Debian package $(basename "$deb")"
  fi
fi
if [[ "$vulkan_source" == "not bundled" ]]; then
  echo "pack: WARNING: no libvulkan.so.1 here and apt-get download libvulkan1 failed; the bundle's" \
    "WebGPU run will need the GPU machine's own Vulkan loader" >&2
fi

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$repo" status --porcelain -- src bin package.json scripts/gpu-check 2>/dev/null)" ]]; then
  commit="$commit + uncommitted changes"
fi
cat >"$bundle/BUNDLE.txt" <<EOF
clipsieve gpu-check bundle
packed: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)
project: clipsieve $(cd "$repo" && "$node" -p 'require("./package.json").version'), commit $commit
node: $node_version (runtime/node)
onnxruntime-node: $ort_version (cpu and webgpu providers bundled; no cuda provider)
vulkan loader: $vulkan_source
packages: ${packages[*]#node_modules/}
run: scripts/gpu-check/run.sh (from this folder), or scripts/gpu-check/run.sh BUNDLE.tar.xz from a checkout
EOF
(cd "$bundle" && find . -type f ! -name MANIFEST.sha256 -print0 | sort -z | xargs -0 sha256sum >MANIFEST.sha256)

mkdir -p "$out"
tarball="$out/$name.tar.xz"
echo "pack: compressing (xz -6; about a minute or two on 2 cores)"
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$name" | xz -T0 -6 >"$tarball.partial"
mv "$tarball.partial" "$tarball"
size=$(stat -c %s "$tarball")
unpacked=$(du -sb "$bundle" | cut -f1)
files=$(wc -l <"$bundle/MANIFEST.sha256")
awk -v t="$tarball" -v s="$size" -v u="$unpacked" -v f="$files" \
  'BEGIN { printf "pack: %s: %.1f MiB (%d bytes; %.0f MiB unpacked, %d files)\n", t, s / 1048576, s, u / 1048576, f }'
if ((size >= limit_bytes)); then
  echo "pack: FAILED: the bundle is over the 60 MiB limit" >&2
  exit 1
fi
