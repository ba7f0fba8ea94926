#!/usr/bin/env bash
# Command-line checks of the shipped models' data tools: build/word_t5 (tools/word_t5.c) and
# build/emoji_dataset (tools/emoji_dataset.c), and --data in build/train_tokenizer.
#   word_t5 on weights/emoji/val_sample.safetensors writes a T5 file and a tokenizer.json that
#   build/encode_text reads; the same seed gives the same bytes; a file that is not a dataset is
#   refused. emoji_dataset refuses a missing package, a malformed emoji.json (naming the byte) and
#   a bad command line, and leaves nothing behind. (The full pipeline needs the npm package: its
#   output's sha256 is recorded in tools/get_emoji.sh and weights/README.md.)
# Run from the repository root: tests/cli_data.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
DATA=weights/emoji/val_sample.safetensors
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_cli_data.XXXXXX") || { echo "FAIL cli_data: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

# refuses WHAT STATUS MENTION OUTFILE CMD...: non-zero exit (STATUS), MENTION on stderr, OUTFILE absent
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_data.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
}
refuses() {
  local what=$1 want=$2 mention=$3 outf=$4 rc; shift 4
  "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?
  note_refusal "$what" $rc "$TMP/err"
  if [ $rc -ne "$want" ]; then fail "$what" "exit $rc, expected $want ($(tail -n 1 "$TMP/err"))"; return; fi
  if ! grep -qF -- "$mention" "$TMP/err"; then fail "$what" "stderr does not mention '$mention': $(tail -n 1 "$TMP/err")"; return; fi
  if [ -e "$outf" ] || [ -e "$outf.tmp" ]; then fail "$what" "left $outf behind"; return; fi
  pass "$what"
}

# word_t5: vocabulary and encoder from the 16 captions
if "$B/word_t5" --data "$DATA" --out-t5 "$TMP/t5.safetensors" --out-spm "$TMP/tok.json" --seed 7 >"$TMP/log" 2>&1 &&
   grep -q "16 captions" "$TMP/log" && [ -s "$TMP/t5.safetensors" ] && [ -s "$TMP/tok.json" ]; then
  pass "cli_data: word_t5 writes a T5 file and a tokenizer.json from 16 captions"
else
  fail "cli_data: word_t5 on $DATA" "$(tail -n 1 "$TMP/log")"
fi
"$B/word_t5" --data "$DATA" --out-t5 "$TMP/t5b.safetensors" --out-spm "$TMP/tokb.json" --seed 7 >/dev/null 2>&1
if cmp -s "$TMP/t5.safetensors" "$TMP/t5b.safetensors" && cmp -s "$TMP/tok.json" "$TMP/tokb.json"; then
  pass "cli_data: word_t5 with the same seed gives byte-identical files"
else
  fail "cli_data: word_t5 determinism" "two runs with seed 7 differ"
fi
# a caption word is one piece; an unknown word falls back to characters, never <unk>
if "$B/encode_text" --text-encoder "$TMP/t5.safetensors" --spm "$TMP/tok.json" --caption "water polo, people & body" \
     --out "$TMP/e.npy" >"$TMP/log" 2>&1 && grep -q "▁water ▁polo , ▁people ▁& ▁body </s>" "$TMP/log"; then
  pass "cli_data: encode_text reads word_t5's files; known words are one piece each"
else
  fail "cli_data: encode_text with word_t5" "$(head -n 2 "$TMP/log" | tr '\n' ' ')"
fi
if "$B/encode_text" --text-encoder "$TMP/t5.safetensors" --spm "$TMP/tok.json" --caption "eeee" --out "$TMP/e2.npy" \
     --ids "$TMP/ids.json" >/dev/null 2>&1 && ! grep -q '\b2\b' "$TMP/ids.json"; then
  pass "cli_data: an unknown word falls back to characters, not <unk>"
else
  fail "cli_data: unknown word" "$(cat "$TMP/ids.json" 2>/dev/null)"
fi
refuses "cli_data: word_t5 refuses a model file as --data" 1 "not a dataset file" "$TMP/x.json" \
  "$B/word_t5" --data "$TMP/t5.safetensors" --out-t5 "$TMP/x.safetensors" --out-spm "$TMP/x.json"

# emoji_dataset: bad input
refuses "cli_data: emoji_dataset refuses a missing package" 1 "cannot open" "$TMP/d.safetensors" \
  "$B/emoji_dataset" --package "$TMP/nowhere" --out "$TMP/d.safetensors"
mkdir -p "$TMP/pkg/img/twitter/64"
printf '[{"name": "X", "category": "c", "subcategory": "s", "unified": "1F600", "image": "1f600.png", "has_img_twitter": tru}]' \
  >"$TMP/pkg/emoji.json"
refuses "cli_data: emoji_dataset names the byte of malformed JSON" 1 "malformed JSON at byte" "$TMP/d.safetensors" \
  "$B/emoji_dataset" --package "$TMP/pkg" --out "$TMP/d.safetensors"
printf '[{"name": "X", "category": "c", "subcategory": "s", "unified": "1F600", "image": "1f600.png", "has_img_twitter": true}]' \
  >"$TMP/pkg/emoji.json"
refuses "cli_data: emoji_dataset refuses a missing image" 1 "1f600.png" "$TMP/d.safetensors" \
  "$B/emoji_dataset" --package "$TMP/pkg" --out "$TMP/d.safetensors"
refuses "cli_data: emoji_dataset refuses an unknown flag" 2 "unknown or incomplete argument" "$TMP/d.safetensors" \
  "$B/emoji_dataset" --package "$TMP/pkg" --out "$TMP/d.safetensors" --bogus

# train_tokenizer --data: the split names and a file that is not a dataset
refuses "cli_data: train_tokenizer --data refuses a model file" 1 "is not a dataset file" "$TMP/run/ckpt.safetensors" \
  "$B/train_tokenizer" --data "$TMP/t5.safetensors" --out "$TMP/run" --steps 1 --model tiny_vq,image_size=64,patch_size=16
refuses "cli_data: train_tokenizer --split must be train, val or all" 1 "--split must be train, val or all" \
  "$TMP/run/ckpt.safetensors" "$B/train_tokenizer" --data "$DATA" --split test --out "$TMP/run" --steps 1 \
  --model tiny_vq,image_size=64,patch_size=16
refuses "cli_data: train_tokenizer refuses --data with --images" 2 "one of them" "$TMP/run/ckpt.safetensors" \
  "$B/train_tokenizer" --data "$DATA" --images tests/data --out "$TMP/run" --steps 1
