#!/usr/bin/env bash
# Command-line checks of build/evaluate (examples/evaluate.c). No shipped tokenizer is needed: two
# tiny 64x64 models are trained for 2 steps on weights/emoji/val_sample.safetensors (16 images
# with captions): a VQ TiTok without text, and a TexTok (VAE) reading the captions through the
# tiny T5 of tests/golden/t5 (converted with build/convert --t5) and tests/golden/spm/tokenizer.json.
# Checks: the table has its header, a row per model with its label, the token and text columns
# and the image count, and the footer that says the outputs are clamped; --csv has a row per model
# and image; --grid is written; --lpips adds the column; the first image's PSNR equals what
# build/reconstruct prints for it. Then bad input: a 32x32 model on 64x64 images, a text model
# without --text-encoder, missing files, a file that is not a tokenizer, bad flags - each with the
# documented status, a message on stderr and no output file left behind.
# Run from the repository root: tests/cli_evaluate.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
DATA=weights/emoji/val_sample.safetensors
TOK=tests/golden/spm/tokenizer.json
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_cli_evaluate.XXXXXX") || { echo "FAIL cli_evaluate: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }

# refuses WHAT STATUS MENTION "FILES THAT MUST NOT EXIST" CMD...: as in tests/cli_examples.sh
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_evaluate.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
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

# has WHAT FILE TEXT: FILE must hold the line fragment TEXT (fixed string)
has() {
  if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "no '$3' in $(basename "$2"): $(head -c 600 "$2" | tr '\n' '~')"; fi
}

for t in evaluate train_tokenizer convert reconstruct; do
  [ -x "$B/$t" ] || { fail "cli_evaluate" "$B/$t is not built (run make)"; exit 0; }
done
[ -f "$DATA" ] || { fail "cli_evaluate" "$DATA is missing"; exit 0; }

# ---- two tiny 64x64 tokenizers, 2 training steps each ------------------------------------------
T5=$TMP/t5.st
if ! "$B/convert" --t5 tests/golden/t5/t5_caption.safetensors "$T5" --t5-config tests/golden/t5/t5_caption_config.json \
     >"$TMP/out" 2>"$TMP/err"; then
  fail "convert --t5 t5_caption" "$(last_line "$TMP/err")"; exit 0
fi
TR=(--data "$DATA" --split val --steps 2 --batch 2 --grid-every 0 --ckpt-every 0 --threads 1)
if ! "$B/train_tokenizer" "${TR[@]}" --model tiny_vq,image_size=64,patch_size=16 --out "$TMP/vq" >"$TMP/out" 2>"$TMP/err"; then
  fail "train a 64x64 tiny VQ tokenizer" "$(last_line "$TMP/err")"; exit 0
fi
if ! "$B/train_tokenizer" "${TR[@]}" --model textok_tiny,image_size=64,patch_size=16,text_len=12 \
     --text-encoder "$T5" --spm "$TOK" --out "$TMP/tt" >"$TMP/out" 2>"$TMP/err"; then
  fail "train a 64x64 tiny TexTok" "$(last_line "$TMP/err")"; exit 0
fi
if ! "$B/train_tokenizer" "${TR[@]}" --model textok_tiny,image_size=64,patch_size=16,text_len=12,text=decoder \
     --text-encoder "$T5" --spm "$TOK" --text-dropout 0.5 --out "$TMP/opt" >"$TMP/out" 2>"$TMP/err"; then
  fail "train a 64x64 tiny TexTok with text dropout (text_optional)" "$(last_line "$TMP/err")"; exit 0
fi
VQ=$TMP/vq/model.safetensors TT=$TMP/tt/model.safetensors OPT=$TMP/opt/model.safetensors

# ---- the table, the CSV and the grid ------------------------------------------------------------
EV=("$B/evaluate" --data "$DATA" --limit 6 --batch 4 --threads 1)
if "${EV[@]}" --weights "$VQ=vq" --weights "$TT=tt" --text-encoder "$T5" --spm "$TOK" \
     --csv "$TMP/e.csv" --grid "$TMP/e.png" >"$TMP/table" 2>"$TMP/err"; then
  pass "evaluate two models (VQ; TexTok with captions), 6 images in batches of 4"
  has "table header" "$TMP/table" "| model | tokens (N x d) | text | images | PSNR dB (mean ± std) | SSIM | MSE |"
  has "VQ row: label, tokens, no text, 6 images" "$TMP/table" "| vq | 5 x 8 (VQ, 32 codes) | - | 6 | "
  has "TexTok row: label, tokens, text in both stacks" "$TMP/table" "| tt | 8 x 8 (VAE) | enc+dec | 6 | "
  has "footer: split, images, clamping" "$TMP/table" "val split of $DATA: 6 images of 64x64. Reconstructions clamped to [0,1]"
  rows=$(grep -c '^|' "$TMP/table")
  if [ "$rows" -eq 4 ]; then pass "table: header, rule and 2 rows"; else fail "table rows" "$rows lines start with '|'"; fi
  if ! grep -q 'LPIPS' "$TMP/table"; then pass "no LPIPS column without --lpips"; else fail "no LPIPS column without --lpips" "found one"; fi
  lines=$(wc -l <"$TMP/e.csv")
  if [ "$(head -n 1 "$TMP/e.csv")" = "model,index,name,psnr,ssim,mse" ] && [ "$lines" -eq 13 ] &&
     grep -q '^tt,5,' "$TMP/e.csv"; then
    pass "--csv: header and one row per model and image (12)"
  else
    fail "--csv" "$lines lines: $(head -n 2 "$TMP/e.csv" | tr '\n' '~')"
  fi
  if [ "$(head -c 8 "$TMP/e.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then pass "--grid writes a PNG"
  else fail "--grid" "$TMP/e.png is not a PNG"; fi
else
  fail "evaluate two models" "exit $? ($(last_line "$TMP/err"))"
fi

# the same first image through build/reconstruct: the same PSNR (both clamp to [0,1])
if command -v python3 >/dev/null && [ -s "$TMP/e.csv" ]; then
  python3 - "$DATA" "$TMP/img0.png" <<'PYEOF'
import json, struct, sys, zlib
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
def tensor(name):
    b, e = head[name]["data_offsets"]
    return data[b:e], head[name]["shape"]
img, shape = tensor("images")
split, _ = tensor("split")
i = split.index(1)                       # the first val image
S = shape[1]
pix = img[i * S * S * 3:(i + 1) * S * S * 3]
rows = b"".join(b"\0" + pix[y * S * 3:(y + 1) * S * 3] for y in range(S))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
with open(sys.argv[2], "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", S, S, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PYEOF
  if "$B/reconstruct" --weights "$VQ" --image "$TMP/img0.png" --out "$TMP/rec0.png" --threads 1 >"$TMP/out" 2>"$TMP/err"; then
    want=$(sed -n 's/^PSNR \([0-9.]*\) dB.*/\1/p' "$TMP/out")
    got=$(awk -F, '$1 == "vq" && $2 == 0 { printf "%.2f", $4 }' "$TMP/e.csv")
    if [ -n "$want" ] && [ "$want" = "$got" ]; then pass "image 0: evaluate's PSNR $got dB = build/reconstruct's"
    else fail "image 0 PSNR vs build/reconstruct" "evaluate '$got', reconstruct '$want'"; fi
  else
    fail "reconstruct image 0" "$(last_line "$TMP/err")"
  fi
fi

# a text_optional model runs without text when no --text-encoder is given, and says so
if "${EV[@]}" --weights "$OPT=opt" >"$TMP/table" 2>"$TMP/err"; then
  has "a text_optional model without --text-encoder runs without text" "$TMP/table" "| opt | 8 x 8 (VAE) | none (optional) | 6 | "
else
  fail "evaluate a text_optional model without text" "exit $? ($(last_line "$TMP/err"))"
fi
if "${EV[@]}" --weights "$OPT=opt" --text-encoder "$T5" --spm "$TOK" >"$TMP/table" 2>"$TMP/err"; then
  has "... and with text when --text-encoder is given" "$TMP/table" "| opt | 8 x 8 (VAE) | decoder | 6 | "
else
  fail "evaluate a text_optional model with text" "exit $? ($(last_line "$TMP/err"))"
fi

# --lpips: the tiny LPIPS of tests/golden/nets (random weights: the column, not its values)
if "${EV[@]}" --weights "$VQ" --lpips tests/golden/nets/lpips_tiny.safetensors --csv "$TMP/l.csv" >"$TMP/table" 2>"$TMP/err"; then
  has "--lpips adds the LPIPS column" "$TMP/table" "| MSE | LPIPS |"
  has "default label: the file name" "$TMP/table" "| model | 5 x 8 (VQ, 32 codes) |"
  has "--lpips adds a csv column" "$TMP/l.csv" "model,index,name,psnr,ssim,mse,lpips"
else
  fail "evaluate --lpips" "exit $? ($(last_line "$TMP/err"))"
fi

# ---- bad input ---------------------------------------------------------------------------------
outs="$TMP/bad.csv $TMP/bad.png"
O=(--csv "$TMP/bad.csv" --grid "$TMP/bad.png")
if "$B/convert" tests/golden/titok/tiny_vq.safetensors "$TMP/tiny32.st" >/dev/null 2>&1; then
  refuses "evaluate: a 32x32 model on 64x64 images" 1 "takes 32x32 images, but the images of '$DATA' are 64x64" "$outs" \
    "${EV[@]}" --weights "$TMP/tiny32.st" "${O[@]}"
  refuses "evaluate: models of two sizes" 1 "32x32" "$outs" "${EV[@]}" --weights "$VQ" --weights "$TMP/tiny32.st" "${O[@]}"
else
  fail "convert tiny_vq (32x32)" "failed"
fi
refuses "evaluate: a TexTok model without --text-encoder" 2 "--text-encoder" "$outs" "${EV[@]}" --weights "$TT" "${O[@]}"
refuses "evaluate: --text-encoder without --spm" 2 "--spm" "$outs" "${EV[@]}" --weights "$TT" --text-encoder "$T5" "${O[@]}"
if "$B/convert" --t5 tests/golden/t5/t5_gated.safetensors "$TMP/t5_40.st" --t5-config tests/golden/t5/t5_gated_config.json \
     >/dev/null 2>&1; then
  refuses "evaluate: a T5 of another width (40) than the model's text_dim (32)" 1 "width 40" "$outs" \
    "${EV[@]}" --weights "$TT" --text-encoder "$TMP/t5_40.st" --spm "$TOK" "${O[@]}"
else
  fail "convert --t5 t5_gated" "failed"
fi
refuses "evaluate: a missing --weights file" 1 "$TMP/nothere.safetensors" "$outs" \
  "${EV[@]}" --weights "$TMP/nothere.safetensors" "${O[@]}"
refuses "evaluate: --weights is a dataset, not a tokenizer" 1 "not a textok-layout TiTok file" "$outs" \
  "${EV[@]}" --weights "$DATA" "${O[@]}"
refuses "evaluate: a missing --data file" 1 "$TMP/nothere.data" "$outs" \
  "$B/evaluate" --data "$TMP/nothere.data" --weights "$VQ" "${O[@]}"
refuses "evaluate: no --weights" 2 "--weights" "$outs" "$B/evaluate" --data "$DATA" "${O[@]}"
refuses "evaluate: --weights without a value" 2 "--weights" "$outs" "$B/evaluate" --data "$DATA" "${O[@]}" --weights
refuses "evaluate: no --data" 2 "--data" "$outs" "$B/evaluate" --weights "$VQ" "${O[@]}"
refuses "evaluate: --split test" 2 "--split" "$outs" "${EV[@]}" --weights "$VQ" --split test "${O[@]}"
refuses "evaluate: --limit 0" 2 "--limit" "$outs" "${EV[@]}" --weights "$VQ" --limit 0 "${O[@]}"
refuses "evaluate: --batch x" 2 "--batch" "$outs" "${EV[@]}" --weights "$VQ" --batch x "${O[@]}"
refuses "evaluate: an unknown flag" 2 "--bogus" "$outs" "${EV[@]}" --weights "$VQ" --bogus 1 "${O[@]}"
refuses "evaluate: --grid and --csv the same file" 2 "same file" "$TMP/bad.csv" \
  "${EV[@]}" --weights "$VQ" --csv "$TMP/bad.csv" --grid "$TMP/bad.csv"
if "$B/evaluate" --help >"$TMP/out" 2>&1 && grep -q "CLAMPED" "$TMP/out"; then pass "evaluate --help says the outputs are clamped"
else fail "evaluate --help" "$(last_line "$TMP/out")"; fi
exit 0
