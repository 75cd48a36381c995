#!/usr/bin/env bash
# The gpu-check: runs `clipsieve bench` on cpu (the reference), webgpu and cuda from the bundle that
# pack.sh made, on a machine without Node.js and without network (docs/operations.md, "GPU").
#
#   scripts/gpu-check/run.sh [BUNDLE.tar.xz] [--runs cpu,webgpu,cuda,cuda-tf32] [--results DIR] [--timeout S]
#                            [--cpu-reference SCORES.npz]
#
# From a checkout it unpacks BUNDLE (default scripts/gpu-check/out/clipsieve-gpu-check.tar.xz) into a
# new temporary folder and runs everything from there; inside an unpacked bundle it runs in place.
# Runs: cpu = the reference scores; webgpu; cuda = the CUDA provider with TF32 off
# (NVIDIA_TF32_OVERRIDE=0, float32 throughout); cuda-tf32 = the CUDA provider as it runs by default.
# Prints for each run the placement of the engine's nodes, the bench's report with the largest
# difference from the cpu run's scores, then one summary table. Results (JSON, scores .npz, logs) go
# to --results DIR (default: $OUT/gpu-check when $OUT is set, else ./gpu-check-results).
# --cpu-reference compares the cpu run itself with scores made elsewhere (`clipsieve bench --scores`
# on the machine that packed the bundle, say).
#
# The CUDA provider is not in the bundle (about 270 MB). It is taken from CLIPSIEVE_ORT_CUDA_DIR (a
# folder holding libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so) or else
# from the Python onnxruntime-gpu package found by python3; its version must be onnxruntime-node's
# (1.30.0): another version is tried too, in its own process, and flagged. CUDA's own libraries are
# looked for in Python's nvidia-* packages, torch/lib and /usr/local/cuda.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bundle_tar=""
runs="cpu,webgpu,cuda,cuda-tf32"
results=""
timeout_s=300
cpu_reference=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --cpu-reference) cpu_reference=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) bundle_tar=$1; shift ;;
  esac
done
[[ ",$runs," == *",cpu,"* ]] || runs="cpu,$runs" # every comparison needs the cpu reference

if [[ -x "$here/../../runtime/node" && -z "$bundle_tar" ]]; then
  root=$(cd "$here/../.." && pwd)
  echo "gpu-check: running in the unpacked bundle $root"
else
  bundle_tar=${bundle_tar:-$here/out/clipsieve-gpu-check.tar.xz}
  [[ -f "$bundle_tar" ]] || { echo "run.sh: no bundle at $bundle_tar (make it with scripts/gpu-check/pack.sh)" >&2; exit 2; }
  bundle_tar=$(cd "$(dirname "$bundle_tar")" && pwd)/$(basename "$bundle_tar")
  unpack=$(mktemp -d "${TMPDIR:-/tmp}/clipsieve-gpu-check.XXXXXX")
  echo "gpu-check: unpacking $bundle_tar ($(du -h "$bundle_tar" | cut -f1)) into $unpack"
  if command -v xz >/dev/null; then
    tar -xJf "$bundle_tar" -C "$unpack" || exit 1
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle_tar" "$unpack" || exit 1
  fi
  root="$unpack/clipsieve-gpu-check"
fi
if [[ -z "$results" ]]; then
  if [[ -n "${OUT:-}" ]]; then results="$OUT/gpu-check"; else results="$PWD/gpu-check-results"; fi
fi
mkdir -p "$results"
results=$(cd "$results" && pwd)
node="$root/runtime/node"
ort_dir="$root/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
cd "$root" || exit 1
export NODE_COMPILE_CACHE="$root/.node-compile-cache"
log() { echo "$*" | tee -a "$results/environment.txt"; }
: >"$results/environment.txt"

log "== environment ($(date -u +%Y-%m-%dT%H:%M:%SZ)) =="
log "$(sed -n '2,6p' "$root/BUNDLE.txt")"
if (cd "$root" && sha256sum --quiet -c MANIFEST.sha256 >/dev/null 2>&1); then
  log "bundle: all $(wc -l <MANIFEST.sha256) files match MANIFEST.sha256"
else
  log "bundle: WARNING: files differ from MANIFEST.sha256"
fi
log "machine: $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
log "node: $("$node" -p 'process.version + " (" + process.execPath + ")"')"
if command -v nvidia-smi >/dev/null; then
  log "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4 | tr '\n' ';')"
else
  log "nvidia-smi: not found"
fi

# --- Vulkan, for the WebGPU provider: the machine's loader when it has one, else the bundle's. ---
system_vulkan=$(/sbin/ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')
vulkan_path=""
if [[ -n "$system_vulkan" ]]; then
  log "vulkan loader: the machine's $system_vulkan"
elif [[ -f "$root/lib/vulkan/libvulkan.so.1" ]]; then
  vulkan_path="$root/lib/vulkan"
  log "vulkan loader: the bundle's lib/vulkan/libvulkan.so.1 (the machine has none)"
else
  log "vulkan loader: none (the machine has none and the bundle carries none): webgpu cannot load"
fi
icds=$(ls /etc/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
log "vulkan drivers (ICD files): ${icds:-none found (in containers the NVIDIA runtime adds them with NVIDIA_DRIVER_CAPABILITIES=graphics or all)}"

# --- The CUDA provider: from CLIPSIEVE_ORT_CUDA_DIR or Python's onnxruntime-gpu. ---
ort_version=$("$node" -p 'require("./node_modules/onnxruntime-node/package.json").version')
python_info=""
if command -v python3 >/dev/null; then
  # Finds the packages without importing them (importing onnxruntime needs numpy, torch takes seconds).
  python_info=$(python3 - <<'EOF' 2>/dev/null
import glob, importlib.metadata as md, importlib.util, os, re, shlex, sys
def q(k, v): print(f"{k}={shlex.quote(str(v))}")
spec = importlib.util.find_spec("onnxruntime")
if spec and spec.submodule_search_locations:
    capi = os.path.join(list(spec.submodule_search_locations)[0], "capi")
    q("PY_ORT_CAPI", capi)
    for dist in ("onnxruntime-gpu", "onnxruntime", "ort-nightly-gpu"):
        try:
            q("PY_ORT_VERSION", md.version(dist)); q("PY_ORT_DIST", dist); break
        except md.PackageNotFoundError:
            pass
    try:
        text = open(os.path.join(capi, "build_and_package_info.py")).read()
        m = re.search(r"cuda_version\s*=\s*'([^']*)'", text)
        q("PY_ORT_CUDA", m.group(1) if m else "")
    except OSError:
        pass
try:
    q("PY_TORCH", md.version("torch"))
except md.PackageNotFoundError:
    pass
dirs = []
for base in sys.path:
    for pattern in ("nvidia/*/lib", "nvidia/*/*/lib", "torch/lib"):
        dirs += [d for d in glob.glob(os.path.join(base, pattern)) if os.path.isdir(d)]
q("PY_LIB_DIRS", ":".join(dict.fromkeys(os.path.realpath(d) for d in dirs)))
EOF
  )
fi
PY_ORT_CAPI="" PY_ORT_VERSION="" PY_ORT_DIST="" PY_ORT_CUDA="" PY_TORCH="" PY_LIB_DIRS=""
eval "$python_info"
log "python: $(python3 --version 2>&1 || echo none); onnxruntime: ${PY_ORT_DIST:-none} ${PY_ORT_VERSION} ${PY_ORT_CUDA:+(built for CUDA $PY_ORT_CUDA)}; torch: ${PY_TORCH:-none}"

cuda_dir="${CLIPSIEVE_ORT_CUDA_DIR:-}"
if [[ -z "$cuda_dir" && -n "$PY_ORT_CAPI" && -f "$PY_ORT_CAPI/libonnxruntime_providers_cuda.so" ]]; then
  cuda_dir="$PY_ORT_CAPI"
fi
cuda_lib_path=""
if [[ -n "$cuda_dir" && -f "$cuda_dir/libonnxruntime_providers_cuda.so" && -f "$cuda_dir/libonnxruntime_providers_shared.so" ]]; then
  # onnxruntime loads its providers from the folder of libonnxruntime.so.1.
  ln -sf "$cuda_dir/libonnxruntime_providers_shared.so" "$ort_dir/libonnxruntime_providers_shared.so"
  ln -sf "$cuda_dir/libonnxruntime_providers_cuda.so" "$ort_dir/libonnxruntime_providers_cuda.so"
  provider_version=${CLIPSIEVE_ORT_CUDA_DIR:+unknown (CLIPSIEVE_ORT_CUDA_DIR)}
  provider_version=${provider_version:-$PY_ORT_VERSION}
  log "cuda provider: $cuda_dir/libonnxruntime_providers_cuda.so, onnxruntime $provider_version"
  if [[ "$provider_version" != "$ort_version" ]]; then
    log "cuda provider: WARNING: onnxruntime-node is $ort_version; a provider of another version may refuse to load or crash (each run is its own process)"
  fi
  for d in ${PY_LIB_DIRS//:/ } /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$d" ]] && cuda_lib_path="$cuda_lib_path${cuda_lib_path:+:}$d"
  done
  missing=$(LD_LIBRARY_PATH="$cuda_lib_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$cuda_dir/libonnxruntime_providers_cuda.so" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')
  log "cuda libraries: ${missing:+MISSING $missing; }searched ${cuda_lib_path:-only the system paths}"
else
  log "cuda provider: none found (no CLIPSIEVE_ORT_CUDA_DIR, no Python onnxruntime-gpu): cuda runs will fall back to cpu"
fi

# --- The runs. ---
lib_path="${vulkan_path}${vulkan_path:+:}${cuda_lib_path}"
run_status=0
IFS=, read -ra run_list <<<"$runs"
for run in "${run_list[@]}"; do
  device=${run%%-*}
  envs=("LD_LIBRARY_PATH=${lib_path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  [[ "$run" == "cuda" ]] && envs+=("NVIDIA_TF32_OVERRIDE=0")
  echo
  echo "== $run: node placement (--device $device) =="
  env "${envs[@]}" timeout 300 "$node" scripts/gpu-check/placement.ts --device "$device" --json "$results/$run.placement.json"
  compare=()
  if [[ "$run" != "cpu" ]]; then
    compare=(--compare-scores "$results/cpu.npz")
  elif [[ -n "$cpu_reference" ]]; then
    compare=(--compare-scores "$cpu_reference")
  fi
  echo "== $run: clipsieve bench --device $device ${envs[*]:1} (at most ${timeout_s} s) =="
  start=$(date +%s)
  env "${envs[@]}" timeout "$timeout_s" "$node" bin/clipsieve.js bench --device "$device" --json \
    --scores "$results/$run.npz" "${compare[@]}" >"$results/$run.json" 2>"$results/$run.stderr"
  rc=$?
  echo "$rc" >"$results/$run.rc"
  echo "exit status $rc after $(($(date +%s) - start)) s"
  if [[ $rc -ne 0 ]]; then
    tail -5 "$results/$run.stderr"
    rm -f "$results/$run.json"
    [[ "$run" == "cpu" ]] && { echo "gpu-check: the cpu reference failed; nothing to compare against" >&2; run_status=1; break; }
  fi
done

echo
"$node" scripts/gpu-check/summary.ts --results "$results" --runs "$runs" | tee "$results/summary.txt"
summary_status=${PIPESTATUS[0]}
echo
echo "gpu-check: results in $results"
exit $((run_status | summary_status))
