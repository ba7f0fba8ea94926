#!/usr/bin/env bash
# Command-line checks of build/encode_text (caption -> T5 token states) against the reference.
# tests/golden/t5/t5_caption.safetensors (a tiny gated T5 whose 384 embedding rows cover the ids
# of tests/golden/spm/tokenizer.json) is converted with build/convert --t5; each caption of
# t5_caption_ref.safetensors (its metadata holds them as UTF-8 hex, and max_len) is encoded with
# that tokenizer at that max_len: the ids (--ids) must equal ids_<k> exactly (the plain-Python
# HF pipeline of tools/gen_golden_spm.py, cross-checked there with python3-sentencepiece), the
# states must match out_<k> (float64 PyTorch reference tools/t5_ref.py) within a relative L2 error
# of 1e-4; the last caption is truncated to max_len with EOS kept. Then bad inputs must fail with
# the documented status, a message on stderr and no output file left behind.
# Run from the repository root: tests/cli_text.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
T=tests/golden/t5
TOK=tests/golden/spm/tokenizer.json
REF=$T/t5_caption_ref.safetensors
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_cli_text.XXXXXX") || { echo "FAIL cli_text: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }

# ok WHAT CMD...: the command must succeed
ok() {
  local what=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$what"; return 0; fi
  fail "$what" "exit $? ($(last_line "$TMP/err"))"; return 1
}

# same WHAT A B [npycmp flags]: npycmp must accept A against the reference B
same() {
  local what=$1 a=$2 b=$3; shift 3
  if "$B/npycmp" "$a" "$b" "$@" >"$TMP/cmp" 2>&1; then pass "$what ($(grep -o 'max_abs [^ ]*  rel_l2 [^ ]*' "$TMP/cmp"))"
  else fail "$what" "$(last_line "$TMP/cmp")"; fi
}

# refuses WHAT STATUS MENTION "FILES THAT MUST NOT EXIST" CMD...: as in tests/cli_examples.sh
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_text.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
}
refuses() {
  local what=$1 want=$2 mention=$3 files=$4 rc f; shift 4
  for f in $files; do rm -f "$f" "$f.tmp"; done
  "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?
  note_refusal "$what" $rc "$TMP/err"
  if [ $rc -eq 0 ]; then fail "$what" "exit 0, expected a failure"; return; fi
  if [ "$want" != nz ] && [ $rc -ne "$want" ]; then fail "$what" "exit $rc, expected $want ($(last_line "$TMP/err"))"; return; fi
  if [ ! -s "$TMP/err" ]; then fail "$what" "nothing on stderr"; return; fi
  if ! grep -qF -- "$mention" "$TMP/err"; then
    fail "$what" "stderr does not mention '$mention': $(last_line "$TMP/err")"; return
  fi
  for f in $files; do
    if [ -e "$f" ] || [ -e "$f.tmp" ]; then fail "$what" "left $f behind"; return; fi
  done
  pass "$what"
}

# meta KEY: a string value of the reference's safetensors metadata (hex / digits only)
meta() { head -c 4096 "$REF" | grep -ao "\"$1\":\"[0-9a-f]*\"" | head -n 1 | cut -d'"' -f4; }

for t in convert encode_text npycmp; do
  [ -x "$B/$t" ] || { fail "cli_text" "$B/$t is not built (run make)"; exit 0; }
done
if [ ! -f "$T/t5_caption.safetensors" ] || [ ! -f "$REF" ] || [ ! -f "$TOK" ]; then
  fail "t5_caption golden files" "missing (run /usr/bin/python3 tools/gen_golden_t5.py)"; exit 0
fi

W=$TMP/t5_caption.st
ok "convert --t5 t5_caption.safetensors with its config.json" \
  "$B/convert" --t5 "$T/t5_caption.safetensors" "$W" --t5-config "$T/t5_caption_config.json" || exit 0

# ---- the captions of the reference -------------------------------------------------------------
max_len=$(meta max_len) n=$(meta n_captions)
if [ -z "$max_len" ] || [ -z "$n" ]; then fail "t5_caption_ref metadata" "no max_len / n_captions"; exit 0; fi
for ((k = 0; k < n; k++)); do
  hex=$(meta "caption_$k")
  [ -n "$hex" ] || { fail "caption $k" "no caption_$k in the metadata"; continue; }
  caption=$(printf '%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')")
  o="$TMP/cap$k" what="encode_text caption $k (max_len $max_len)"
  ok "$what" "$B/encode_text" --text-encoder "$W" --spm "$TOK" --caption "$caption" \
    --out "$o.npy" --ids "$o.json" --max-len "$max_len" --threads 1 || continue
  same "ids of caption $k" "$o.json" "$REF:ids_$k" --exact
  same "states of caption $k" "$o.npy" "$REF:out_$k" --tol 1e-4
  if [ $k -eq $((n - 1)) ]; then   # the long one: truncated, EOS kept, and said so
    if grep -q "truncated to --max-len $max_len (EOS kept)" "$TMP/err"; then pass "caption $k: the truncation is announced"
    else fail "caption $k: the truncation is announced" "stderr: $(last_line "$TMP/err")"; fi
  fi
done
left=$(find "$TMP" -name '*.tmp' | head -n 1)
if [ -z "$left" ]; then pass "encode_text: no .tmp files left"; else fail "encode_text: no .tmp files left" "$left"; fi

# ---- bad inputs --------------------------------------------------------------------------------
O="$TMP/bad" outs="$TMP/bad.npy $TMP/bad.json"
E=(--out "$O.npy" --ids "$O.json" --max-len 12)
refuses "encode_text with an empty caption" 2 "--caption" "$outs" \
  "$B/encode_text" --text-encoder "$W" --spm "$TOK" --caption "" "${E[@]}"
refuses "encode_text with an invalid UTF-8 caption" 1 "UTF-8" "$outs" \
  "$B/encode_text" --text-encoder "$W" --spm "$TOK" --caption $'a \xff dog' "${E[@]}"
cat >"$TMP/bpe.json" <<'EOF'
{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
 "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
 "post_processor": null, "decoder": null,
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
           "end_of_word_suffix": null, "fuse_unk": false,
           "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
EOF
refuses "encode_text with a BPE tokenizer.json" 1 "BPE" "$outs" \
  "$B/encode_text" --text-encoder "$W" --spm "$TMP/bpe.json" --caption "a photo" "${E[@]}"
refuses "encode_text with a missing --text-encoder" 1 "$TMP/nothere.st" "$outs" \
  "$B/encode_text" --text-encoder "$TMP/nothere.st" --spm "$TOK" --caption "a photo" "${E[@]}"
refuses "encode_text with a missing --spm" 1 "$TMP/nothere.json" "$outs" \
  "$B/encode_text" --text-encoder "$W" --spm "$TMP/nothere.json" --caption "a photo" "${E[@]}"
# an encoder whose vocabulary (100 rows) lacks the tokenizer's ids
if "$B/convert" --t5 "$T/t5_gated.safetensors" "$TMP/t5_gated.st" >/dev/null 2>&1; then
  refuses "encode_text with another model's encoder (vocab 100)" 1 "tokenizer" "$outs" \
    "$B/encode_text" --text-encoder "$TMP/t5_gated.st" --spm "$TOK" --caption "a photo of a cat on a mat" "${E[@]}"
else
  fail "convert --t5 t5_gated.safetensors" "failed"
fi

# ---- training TexTok from images + captions (a smoke test: the training math is tested in the
# runner against PyTorch): 3 steps of textok_tiny with the converted t5_caption encoder
if [ -x "$B/train_tokenizer" ] && [ -f "$W" ] && command -v python3 >/dev/null; then
  mkdir -p "$TMP/imgs"
  python3 - "$TMP/imgs" <<'PYEOF'
import struct, sys, zlib
def png(path, seed):
    rows = bytearray()
    for y in range(32):
        rows.append(0)
        for x in range(32):
            rows += bytes(((x * 8 + seed * 40) % 256, (y * 8 + seed * 70) % 256, (x * y + seed * 13) % 256))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))
for i in range(4):
    png("%s/img%d.png" % (sys.argv[1], i), i)
PYEOF
  printf 'img0.png\ta photo of a cat on a mat\nimg1.png\ta red dog\nimg2.png\ttwo cats\nimg3.png\ta mat\n' >"$TMP/caps.tsv"
  TR=(--images "$TMP/imgs" --steps 3 --batch 2 --model textok_tiny,text_len=12 --captions "$TMP/caps.tsv"
      --text-encoder "$W" --spm "$TOK" --grid-every 0 --log-every 1 --threads 1)
  if "$B/train_tokenizer" "${TR[@]}" --out "$TMP/run" >"$TMP/out" 2>"$TMP/err" && [ -s "$TMP/run/model.safetensors" ]; then
    pass "train_tokenizer trains TexTok from images + captions (3 steps)"
    if head -c 8192 "$TMP/run/model.safetensors" | grep -qaF '"arch":"textok"' &&
       head -c 8192 "$TMP/run/model.safetensors" | grep -qaF '"text_dim":"32"'; then
      pass "the TexTok model file records arch textok and text_dim 32 (the encoder's width)"
    else
      fail "TexTok model metadata" "no arch=textok / text_dim=32 in the header"
    fi
    if "$B/encode_text" --text-encoder "$W" --spm "$TOK" --caption "a red dog" --out "$TMP/dog.npy" >/dev/null 2>&1 &&
       "$B/reconstruct" --weights "$TMP/run/model.safetensors" --image "$TMP/imgs/img1.png" --text-emb "$TMP/dog.npy" \
         --out "$TMP/rec.png" >"$TMP/out" 2>"$TMP/err"; then
      pass "reconstruct runs the trained TexTok with encode_text's embeddings"
    else
      fail "reconstruct with the trained TexTok" "$(tail -n 1 "$TMP/err")"
    fi
    refuses "reconstruct: the trained TexTok without text" 2 "--text-emb" "$TMP/rec2.png" \
      "$B/reconstruct" --weights "$TMP/run/model.safetensors" --image "$TMP/imgs/img1.png" --out "$TMP/rec2.png"
  else
    fail "train_tokenizer TexTok" "$(tail -n 1 "$TMP/err")"
  fi
  head -n 2 "$TMP/caps.tsv" >"$TMP/caps2.tsv"
  refuses "train_tokenizer: images without captions need --text-dropout" 1 "--text-dropout" "" \
    "$B/train_tokenizer" --images "$TMP/imgs" --steps 1 --batch 2 --model textok_tiny,text_len=12 --captions "$TMP/caps2.tsv" \
    --text-encoder "$W" --spm "$TOK" --out "$TMP/run2"
  if "$B/train_tokenizer" --images "$TMP/imgs" --steps 2 --batch 2 --model textok_tiny,text_len=12 --captions "$TMP/caps2.tsv" \
       --text-encoder "$W" --spm "$TOK" --text-dropout 0.5 --grid-every 0 --out "$TMP/run3" >"$TMP/out" 2>"$TMP/err" &&
     head -c 8192 "$TMP/run3/model.safetensors" | grep -qaF '"text_optional":"1"'; then
    pass "train_tokenizer --text-dropout trains with uncaptioned images and records text_optional"
  else
    fail "train_tokenizer --text-dropout" "$(tail -n 1 "$TMP/err")"
  fi
  refuses "train_tokenizer: a TexTok model without --text-encoder" 2 "--text-encoder" "" \
    "$B/train_tokenizer" --images "$TMP/imgs" --steps 1 --model textok_tiny --captions "$TMP/caps.tsv" --out "$TMP/run4"
fi
exit 0
