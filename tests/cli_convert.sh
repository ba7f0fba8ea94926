#!/usr/bin/env bash
# Command-line checks of build/convert (tools/convert.c).
#  1. Every bad checkpoint of tests/bad/convert/ (made by tools/make_bad_checkpoints.py) must be
#     refused: exit status 1, a message on stderr naming the culprit (tensor, opcode, entry, ...),
#     and no OUT nor OUT.tmp left behind.
#  2. Bad command lines: exit status 2 and the usage on stderr.
#  3. The ok_*.bin files (tiny_vq as views into one storage; protocol 2, protocol 4 + ZIP64 +
#     nn.Parameter, wrapped in {"state_dict": ...}) must convert, all to byte-identical files, and
#     converting a converted file again must give the same bytes.
#  4. When tests/golden/titok/<name>.safetensors and <name>.bin exist, both must convert to
#     byte-identical files (same values, names, order and metadata) and name the right family.
# Run from the repository root: tests/cli_convert.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
CONV=$B/convert
D=tests/bad/convert
G=tests/golden/titok
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_convert.XXXXXX") || { echo "FAIL cli_convert: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/out.safetensors

pass() { echo "PASS convert $1"; }
fail() { echo "FAIL convert $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }

if [ ! -x "$CONV" ]; then fail "build" "$CONV is not built (run make)"; exit 0; fi
if [ ! -f "$D/ok_views.bin" ]; then
  fail "test files" "$D/ok_views.bin is missing (run /usr/bin/python3 tools/make_bad_checkpoints.py)"; exit 0
fi

# refuses WHAT STATUS "PATTERN..." ARGS...: convert ARGS must exit with STATUS, its stderr must
# contain every |-separated fixed string of PATTERN, and neither $OUT nor $OUT.tmp may exist.
refuses() {
  local what=$1 want=$2 patterns=$3 rc p; shift 3
  rm -f "$OUT" "$OUT.tmp"
  "$CONV" "$@" >"$TMP/stdout" 2>"$TMP/stderr"; rc=$?
  if [ $rc -ne "$want" ]; then fail "$what" "exit $rc, expected $want ($(last_line "$TMP/stderr"))"; return; fi
  local IFS='|'
  for p in $patterns; do
    if ! grep -qF -- "$p" "$TMP/stderr"; then
      fail "$what" "stderr does not mention '$p': $(last_line "$TMP/stderr")"; return
    fi
  done
  if [ -e "$OUT" ] || [ -e "$OUT.tmp" ]; then fail "$what" "left an output file behind"; return; fi
  pass "$what"
}

# 1. bad checkpoints: file, then what stderr must mention
while read -r file patterns; do
  [ -n "$file" ] || continue
  if [ ! -f "$D/$file" ]; then fail "refuses $file" "$D/$file is missing"; continue; fi
  refuses "refuses $file" 1 "$patterns" "$D/$file" "$OUT"
done <<'EOF'
empty.bin                    empty file
not_a_checkpoint.bin         not a checkpoint|89 50 4e 47
bare_pickle.pt               bare pickle
truncated.bin                truncated
truncated.safetensors        truncated|encoder.positional_embedding
compressed.bin               archive/data/0|compressed
opcode_ext1.bin              opcode 0x82 EXT1|offset 2
opcode_inst.bin              opcode 0x69 INST|offset 1
opcode_bad_byte.bin          opcode 0xff|offset 5
global_numpy.bin             unsupported global|numpy.core.multiarray
pickle_truncated.bin         truncated
pickle_memo_huge.bin         LONG_BINPUT|memo index 4294967295
pickle_string_huge.bin       BINUNICODE|truncated
pickle_underflow.bin         SETITEM|stack underflow
pickle_not_dict.bin          holds a list
storage_past_end.bin         encoder.class_embedding|reaches element 71|64 elements
storage_size_mismatch.bin    archive/data/0|does not match
storage_missing.bin          storage '7'|archive/data/7
storage_negative_stride.bin  latent_tokens|negative
missing_tensor.bin           missing tensor 'decoder.ln_post.bias'|nothing written
extra_tensor.bin             unexpected tensor 'decoder.extra_head.weight'|nothing written
misshaped_tensor.bin         encoder.transformer.0.attn.out_proj.weight|[128, 64]|[128, 128]
int64_tensor.bin             decoder.mask_token|int64
several_problems.bin         missing tensor 'decoder.ln_post.bias'|unexpected tensor 'decoder.extra_head.weight'|attn.out_proj.weight' has shape [128, 64]|3 problems
width_not_64.bin             width 96 is not a multiple of 64
unknown_arch.bin             unknown architecture|latent_tokens|fc1.weight
EOF
refuses "refuses a missing input" 1 "does_not_exist.bin|cannot open" "$TMP/does_not_exist.bin" "$OUT"
refuses "refuses a directory as input" 1 "convert:" "$D" "$OUT"

# 2. bad command lines
refuses "usage: no arguments" 2 "usage:"
refuses "usage: one argument" 2 "usage:" "$D/ok_views.bin"
refuses "usage: three files" 2 "usage:|too many" "$D/ok_views.bin" "$OUT" "$TMP/third"
refuses "usage: unknown flag" 2 "usage:|--bogus" "$D/ok_views.bin" "$OUT" --bogus
refuses "usage: --l2-norm 2" 2 "usage:|--l2-norm" "$D/ok_views.bin" "$OUT" --l2-norm 2
refuses "usage: --l2-norm without a value" 2 "usage:|--l2-norm" "$D/ok_views.bin" "$OUT" --l2-norm

# 3. the ok files
# converts WHAT IN OUT [FLAGS]: must succeed and write OUT
converts() {
  local what=$1 in=$2 out=$3; shift 3
  rm -f "$out"
  if ! "$CONV" "$in" "$out" "$@" >"$TMP/stdout" 2>"$TMP/stderr"; then
    fail "$what" "exit $? ($(last_line "$TMP/stderr"))"; return 1
  fi
  if [ ! -s "$out" ]; then fail "$what" "no output file"; return 1; fi
  pass "$what"
}
# same WHAT A B: byte-identical files
same() {
  if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ"; fi
}
# says WHAT FILE TEXT: FILE contains the fixed string TEXT
says() {
  if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "no '$3' in the output"; fi
}

REF=$TMP/ok_views.safetensors
if converts "ok_views.bin" "$D/ok_views.bin" "$REF"; then
  says "ok_views.bin: family" "$TMP/stdout" "TiTok VQ, encoder 128x1 (2 heads), decoder 64x2 (1 head), K=5, token_size 8, codebook 32, pixel head"
  says "ok_views.bin: parameter total" "$TMP/stdout" "343,260"
  says "ok_views.bin: input format" "$TMP/stdout" "PyTorch zip (torch.save)"
  if converts "ok_p4_zip64.bin (protocol 4, ZIP64, Parameters)" "$D/ok_p4_zip64.bin" "$TMP/p4.safetensors"; then
    same "ok_p4_zip64.bin converts to the same bytes" "$REF" "$TMP/p4.safetensors"
  fi
  if converts "ok_wrapped.bin ({\"state_dict\": ...} with a position_ids buffer)" "$D/ok_wrapped.bin" "$TMP/wrapped.safetensors"; then
    says "ok_wrapped.bin: skips the buffer" "$TMP/stdout" "skipping 'encoder.position_ids'"
    same "ok_wrapped.bin converts to the same bytes" "$REF" "$TMP/wrapped.safetensors"
  fi
  if converts "a converted file converts again" "$REF" "$TMP/again.safetensors"; then
    says "textok layout read as safetensors" "$TMP/stdout" "safetensors, 63 tensors"
    same "converting twice gives the same bytes" "$REF" "$TMP/again.safetensors"
  fi
  rm -f "$TMP/quiet.safetensors"
  if "$CONV" "$D/ok_views.bin" "$TMP/quiet.safetensors" --quiet >"$TMP/stdout" 2>&1 && [ ! -s "$TMP/stdout" ]; then
    same "--quiet prints nothing and writes the same file" "$REF" "$TMP/quiet.safetensors"
  else
    fail "--quiet" "exit status or output: $(last_line "$TMP/stdout")"
  fi
  if converts "--l2-norm 1" "$D/ok_views.bin" "$TMP/l2.safetensors" --l2-norm 1; then
    says "--l2-norm 1: family" "$TMP/stdout" "codebook 32 l2-normalised"
    if head -c 4096 "$TMP/l2.safetensors" | grep -qaF '"use_l2_norm":"1"' &&
       head -c 4096 "$REF" | grep -qaF '"use_l2_norm":"0"'; then
      pass "--l2-norm 1 sets use_l2_norm in the metadata"
    else
      fail "--l2-norm 1" "use_l2_norm is not 1 in the metadata (or 0 without the flag)"
    fi
  fi
fi

# 4. the golden TiTok models, when the golden generator has written them
family_of() {
  case $1 in
    tiny_legacy) echo "TiTok legacy VQ, encoder 64x2 (1 head), decoder 64x2 (1 head), K=8, token_size 12, codebook 64 l2-normalised, MaskGIT-VQGAN pixel decoder" ;;
    tiny_vq)     echo "TiTok VQ, encoder 128x1 (2 heads), decoder 64x2 (1 head), K=5, token_size 8, codebook 32, pixel head" ;;
    tiny_vae)    echo "TiTok VAE, encoder 64x1 (1 head), decoder 128x1 (2 heads), K=6, token_size 16" ;;
  esac
}
for name in tiny_legacy tiny_vq tiny_vae; do
  st=$G/$name.safetensors bin=$G/$name.bin
  if [ ! -f "$st" ] || [ ! -f "$bin" ]; then
    echo "note: $st or $bin is absent; golden conversion checks for $name skipped"
    continue
  fi
  if converts "$name.safetensors" "$st" "$TMP/$name.st.safetensors"; then
    says "$name.safetensors: family" "$TMP/stdout" "$(family_of $name)"
  fi
  if converts "$name.bin" "$bin" "$TMP/$name.bin.safetensors"; then
    says "$name.bin: family" "$TMP/stdout" "$(family_of $name)"
    same "$name: .bin and .safetensors convert to the same bytes" "$TMP/$name.st.safetensors" "$TMP/$name.bin.safetensors"
  fi
done
exit 0
