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
#  5. --lpips with the files of tests/bad/lpips/ (made by tools/make_lpips_checkpoints.py): every
#     good set (torchvision VGG16 + lin weights, or one LPIPS state_dict; torch zip, legacy
#     torch.save, safetensors; F32/F16/BF16) converts to the same bytes, which load with
#     textok_lpips_load and give the PyTorch reference's LPIPS distance (a small C program built
#     here); every bad one is refused, naming the file and tensor, writing nothing.
#  6. --t5 with the files of tests/golden/t5/ (made by tools/gen_golden_t5.py): the BF16 seq2seq
#     safetensors and the F32 .bin (tied alias, decoder and lm_head dropped) convert to the same
#     bytes, as does a sharded copy (model.safetensors.index.json, written here); t5_v10 with its
#     config.json (max_distance 40, eps 1e-5, relu); the old flan-t5-xxl config (exact GELU). The
#     outputs load with textok_t5_load and give the reference's last_hidden_state (a small C
#     program built here, which also writes the broken variants); decoder-only, truncated,
#     incomplete, umT5-like and inconsistent inputs, and bad config.json files, are refused by name.
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
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_convert.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
}
refuses() {
  local what=$1 want=$2 patterns=$3 rc p; shift 3
  rm -f "$OUT" "$OUT.tmp"
  "$CONV" "$@" >"$TMP/stdout" 2>"$TMP/stderr"; rc=$?
  note_refusal "$what" $rc "$TMP/stderr"
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
bare_pickle.pt               legacy|truncated|offset 27
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
refuses "usage: --lpips with one file" 2 "usage:|--lpips expects" --lpips "$OUT"
refuses "usage: --lpips with four files" 2 "usage:|too many" --lpips a b c "$OUT"
refuses "usage: --lpips with --l2-norm" 2 "usage:|--l2-norm applies to TiTok" --lpips a b "$OUT" --l2-norm 1

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

# 5. LPIPS
L=tests/bad/lpips
if [ ! -f "$L/ok_full.pth" ]; then
  fail "lpips test files" "$L/ok_full.pth is missing (run /usr/bin/python3 tools/make_lpips_checkpoints.py)"; exit 0
fi
# lpips WHAT OUT ARGS...: convert --lpips ARGS OUT must succeed and write OUT
lpips() {
  local what=$1 out=$2; shift 2
  rm -f "$out"
  if ! "$CONV" --lpips "$@" "$out" >"$TMP/stdout" 2>"$TMP/stderr"; then
    fail "$what" "exit $? ($(last_line "$TMP/stderr"))"; return 1
  fi
  if [ ! -s "$out" ]; then fail "$what" "no output file"; return 1; fi
  pass "$what"
}
LREF=$TMP/lpips.safetensors
if lpips "--lpips VGG16 LIN (torch zip, F32)" "$LREF" "$L/ok_vgg16.pth" "$L/ok_lin.pth"; then
  says "--lpips: channels" "$TMP/stdout" "channels 2,3,4,5,6"
  says "--lpips: classifier ignored" "$TMP/stdout" "ignoring the 6 classifier.* tensors"
  says "--lpips: parameter total" "$TMP/stdout" "2,244"
  if head -c 4096 "$LREF" | grep -qaF '"textok.model":"lpips"' &&
     head -c 4096 "$LREF" | grep -qaF '"channels":"2,3,4,5,6"'; then
    pass "--lpips: metadata textok.model and channels"
  else
    fail "--lpips: metadata" "no textok.model=lpips / channels=2,3,4,5,6 in the header"
  fi
  # every other good input: the same bytes
  n=0
  while read -r what args; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    if lpips "--lpips $what" "$TMP/lpips$n.safetensors" $args; then
      same "--lpips $what: the same bytes" "$LREF" "$TMP/lpips$n.safetensors"
    fi
  done <<EOF
F16+BF16_safetensors               $L/ok_vgg16_f16.safetensors $L/ok_lin_bf16.safetensors
legacy_torch.save_(torch<0.4,py2)  $L/ok_vgg16_legacy.pth $L/ok_lin_legacy_py2.pth
full_LPIPS_state_dict              $L/ok_full.pth
full_LPIPS_BF16                    $L/ok_full_bf16.pth
full_LPIPS_legacy_torch.save       $L/ok_full_legacy.pth
converted_file_again               $LREF
EOF
  if lpips "--lpips full LPIPS: the notes" "$TMP/full.safetensors" "$L/ok_full.pth"; then
    says "--lpips full LPIPS: aliases checked and dropped" "$TMP/stdout" "dropping 5 lins.{k}.model.1.weight tensors"
    says "--lpips full LPIPS: scaling constants checked and dropped" "$TMP/stdout" "dropping scaling_layer.shift/scale"
  fi
  rm -f "$TMP/quiet.safetensors"
  if "$CONV" --quiet --lpips "$L/ok_full.pth" "$TMP/quiet.safetensors" >"$TMP/stdout" 2>&1 && [ ! -s "$TMP/stdout" ]; then
    same "--lpips --quiet prints nothing and writes the same file" "$LREF" "$TMP/quiet.safetensors"
  else
    fail "--lpips --quiet" "exit status or output: $(last_line "$TMP/stdout")"
  fi

  # the output loads in the library and gives the PyTorch reference's distance
  if grep -q 'TEXTOKDEF int textok_lpips_load(' textok.h; then
    cat >"$TMP/lpips_check.c" <<'EOF'
/* lpips_check FILE REF: FILE loads with textok_lpips_load and gives REF's d for REF's x, y */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    textok_lpips *lp = NULL;
    textok_safetensors st;
    const textok_st_tensor *tx, *ty, *td;
    float *x, *y, d[2], got[2];
    int b, bad = 0;
    if (argc != 3) return 2;
    if (textok_lpips_load(&lp, argv[1], NULL) != TEXTOK_OK) {
        printf("textok_lpips_load: %s\n", textok_last_error());
        return 1;
    }
    if (textok_st_open(&st, argv[2]) != TEXTOK_OK || !(tx = textok_st_find(&st, "x")) ||
        !(ty = textok_st_find(&st, "y")) || !(td = textok_st_find(&st, "d")) || td->numel != 2 ||
        tx->numel != 2 * 3 * 16 * 16 || ty->numel != tx->numel) {
        printf("%s: not the reference file\n", argv[2]);
        return 1;
    }
    x = (float *)malloc(tx->numel * sizeof *x);
    y = (float *)malloc(ty->numel * sizeof *y);
    if (!x || !y || textok_st_read_f32(&st, tx, x, tx->numel) || textok_st_read_f32(&st, ty, y, ty->numel) ||
        textok_st_read_f32(&st, td, d, 2) || textok_lpips_distance(lp, x, y, 2, 16, 16, got) != TEXTOK_OK) {
        printf("textok_lpips_distance: %s\n", textok_last_error());
        return 1;
    }
    /* float32 against the float64 reference: ~1e-6 relative in practice. 1e-4 leaves room for
       any summation order and is far below what a misplaced tensor does (swapping two
       same-shaped convs, or reversing a lin layer, moves d by 1% or more). */
    for (b = 0; b < 2; b++) {
        printf("d[%d] %.9g vs %.9g, rel. error %.2g\n", b, got[b], d[b], fabs(got[b] - d[b]) / d[b]);
        if (!(fabs(got[b] - d[b]) <= 1e-4 * fabs(d[b]))) bad = 1;
    }
    free(x);
    free(y);
    textok_st_close(&st);
    textok_lpips_free(lp);
    return bad;
}
EOF
    if ! ${CC:-cc} -std=c99 -O1 -I. "$TMP/lpips_check.c" -o "$TMP/lpips_check" -lm 2>"$TMP/cc.log"; then
      fail "--lpips output loads" "cannot build the check program: $(head -n 3 "$TMP/cc.log" | tr '\n' ' ')"
    elif "$TMP/lpips_check" "$LREF" "$L/ok_ref.safetensors" >"$TMP/check.log" 2>&1; then
      pass "--lpips output loads (textok_lpips_load) and gives the reference LPIPS: $(tr '\n' ' ' <"$TMP/check.log")"
    else
      fail "--lpips output loads and gives the reference LPIPS" "$(tr '\n' ' ' <"$TMP/check.log")"
    fi
  else
    echo "note: textok.h has no textok_lpips_load yet; the load check of the LPIPS output is skipped"
  fi
fi

# refused LPIPS inputs: what; the files; what stderr must mention
while IFS=';' read -r what files patterns; do
  [ -n "$what" ] || continue
  # shellcheck disable=SC2086
  refuses "--lpips refuses $what" 1 "$patterns" --lpips $files "$OUT"
done <<EOF
a missing conv bias;$L/bad_vgg16_missing.pth $L/ok_lin.pth;bad_vgg16_missing.pth: missing tensor 'features.12.bias' [4]|1 problem|nothing written
a 5x5 kernel;$L/bad_vgg16_kernel.pth $L/ok_lin.pth;tensor 'features.14.weight' has shape [4, 4, 5, 5], expected [4, 4, 3, 3]|5x5 kernel
in-channels unlike the conv before;$L/bad_vgg16_in_channels.pth $L/ok_lin.pth;'features.10.weight'|4 input channels, but the conv before it (features.7.weight) has 3 outputs
out-channels unlike the slice;$L/bad_vgg16_out_channels.pth $L/ok_lin.pth;'features.19.weight' has shape [7, 5, 3, 3]|slice 4 is 5 wide|'features.19.bias'|2 problems
several problems at once;$L/bad_vgg16_several.pth $L/ok_lin.pth;missing tensor 'features.12.bias'|'features.14.weight'|'features.26.bias' has dtype int64|unexpected tensor 'features.31.weight'|4 problems
vgg16_bn;$L/bad_vgg16_bn.pth $L/ok_lin.pth;bad_vgg16_bn.pth|BatchNorm|vgg16_bn
a truncated VGG16 file;$L/bad_vgg16_truncated.pth $L/ok_lin.pth;bad_vgg16_truncated.pth|truncated
a lin width unlike its tap;$L/ok_vgg16.pth $L/bad_lin_width.pth;bad_lin_width.pth: tensor 'lin2.model.1.weight' has shape [1, 6, 1, 1], expected [1, 4, 1, 1]|tap 2
an extra lin tensor;$L/ok_vgg16.pth $L/bad_lin_extra.pth;bad_lin_extra.pth: unexpected tensor 'lin5.model.1.weight'
a transposed lin weight;$L/ok_vgg16.pth $L/bad_lin_shape.pth;'lin0.model.1.weight' has shape [2, 1, 1, 1]|(1, C, 1, 1)
wrong scaling constants;$L/bad_full_scaling.pth;bad_full_scaling.pth: tensor 'scaling_layer.shift'|-0.188
a lins alias unlike its lin;$L/bad_full_alias.pth;bad_full_alias.pth: tensor 'lins.3.model.1.weight' differs from 'lin3.model.1.weight'
a truncated legacy file;$L/bad_full_legacy_truncated.pth;bad_full_legacy_truncated.pth|truncated|runs past the end
a plain pickle;$L/bad_not_torch.pth;bad_not_torch.pth|not a torch.save file
the files swapped;$L/ok_lin.pth $L/ok_vgg16.pth;the order is|VGG16 LIN OUT
a VGG16 trunk alone;$L/ok_vgg16.pth;ok_vgg16.pth|also needs its lin weights
lin weights alone;$L/ok_lin.pth;ok_lin.pth|only the LPIPS lin weights
a full LPIPS file with a lin file;$L/ok_full.pth $L/ok_lin.pth;ok_full.pth|convert it alone
a TiTok checkpoint;$D/ok_views.bin;ok_views.bin|not an LPIPS|no net.slice
EOF
refuses "LPIPS files without --lpips: a hint" 1 "unknown architecture|use --lpips" "$L/ok_full.pth" "$OUT"

# the LPIPS golden of the loss-network tests (tests/golden/nets), when there: a textok LPIPS file
if [ -f tests/golden/nets/lpips_tiny.safetensors ] &&
   lpips "--lpips golden lpips_tiny.safetensors" "$TMP/golden.safetensors" tests/golden/nets/lpips_tiny.safetensors; then
  says "--lpips golden lpips_tiny.safetensors: channels" "$TMP/stdout" "channels 4,8,8,16,16"
fi

# 6. T5 (--t5)
T=tests/golden/t5
if [ ! -f "$T/t5_gated.safetensors" ]; then
  fail "t5 test files" "$T/t5_gated.safetensors is missing (run /usr/bin/python3 tools/gen_golden_t5.py)"; exit 0
fi
cat >"$TMP/t5_tool.c" <<'EOF'
/* t5_tool check FILE REF [exact]  FILE loads with textok_t5_load and gives REF's out_pad (ids_pad,
                                   mask_pad) and out (ids; out_gelu_exact with "exact")
   t5_tool shard IN DIR            IN's tensors as two shards + model.safetensors.index.json in DIR
   t5_tool edit IN OUT WHAT        a broken copy of IN (F32): WHAT = decoder-only, no-final-norm,
                                   umt5 (a position table in block 1), embed-differs (an alias that
                                   differs from shared.weight) */
#define TEXTOK_IMPLEMENTATION
#include "textok.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static float *rd(const textok_safetensors *st, const char *name, size_t *n)
{
    const textok_st_tensor *t = textok_st_find(st, name);
    float *x = t ? (float *)malloc(t->numel * sizeof *x + 4) : NULL;
    if (!x || textok_st_read_f32(st, t, x, t->numel)) { printf("%s: no tensor %s\n", st->path, name); exit(1); }
    if (n) *n = t->numel;
    return x;
}
static double rel_l2(const float *a, const float *b, size_t n)
{
    double e = 0, r = 0;
    size_t i;
    for (i = 0; i < n; i++) { e += (double)(a[i] - b[i]) * (a[i] - b[i]); r += (double)b[i] * b[i]; }
    return sqrt(e / r);
}
static int check(const char *file, const char *ref, int exact)
{
    textok_t5 *t5 = NULL;
    textok_safetensors st;
    const char *names[2][3] = { { "ids_pad", "mask_pad", "out_pad" }, { "ids", NULL, "out" } };
    int v, bad = 0;
    if (textok_t5_load(&t5, file, NULL) != TEXTOK_OK) { printf("textok_t5_load: %s\n", textok_last_error()); return 1; }
    if (textok_st_open(&st, ref) != TEXTOK_OK) { printf("%s\n", textok_last_error()); return 1; }
    if (exact) names[1][2] = "out_gelu_exact";
    for (v = exact ? 1 : 0; v < 2; v++) {   /* the exact-GELU reference has the unpadded batch only */
        const textok_st_tensor *ti = textok_st_find(&st, names[v][0]);
        const size_t d = (size_t)textok_t5_get_config(t5)->d_model;
        size_t n, i;
        float *fi = rd(&st, names[v][0], &n), *fm = names[v][1] ? rd(&st, names[v][1], NULL) : NULL;
        float *want = rd(&st, names[v][2], NULL), *got = (float *)malloc(n * d * sizeof *got);
        int32_t *ids = (int32_t *)malloc(n * sizeof *ids);
        unsigned char *mask = (unsigned char *)malloc(n);
        double e;
        for (i = 0; i < n; i++) { ids[i] = (int32_t)fi[i]; mask[i] = fm ? fm[i] != 0.0f : 1; }
        if (textok_t5_encode(t5, ids, fm ? mask : NULL, (int)ti->shape[0], (int)ti->shape[1], got) != TEXTOK_OK) {
            printf("textok_t5_encode: %s\n", textok_last_error());
            return 1;
        }
        /* float32 against the float64 reference: ~1e-7 measured; 1e-4 is the issue's bound */
        e = rel_l2(got, want, n * d);
        printf("%s rel. L2 error %.2g; ", names[v][2], e);
        if (!(e <= 1e-4)) bad = 1;
        free(fi); free(fm); free(want); free(ids); free(mask); free(got);
    }
    textok_st_close(&st);
    textok_t5_free(t5);
    return bad;
}
static int write_subset(const textok_safetensors *st, const char *out, int from, int to, const char *what)
{
    textok_st_entry e[512];
    float *data[512];
    int i, n = 0, rc;
    for (i = from; i < to && n < 510; i++) {
        const textok_st_tensor *t = &st->tensors[i];
        int d;
        if (what && !strcmp(what, "decoder-only") && strncmp(t->name, "decoder.", 8) && strncmp(t->name, "lm_head.", 8)) continue;
        if (what && !strcmp(what, "no-final-norm") && !strcmp(t->name, "encoder.final_layer_norm.weight")) continue;
        memset(&e[n], 0, sizeof e[n]);
        e[n].name = t->name;
        e[n].data = data[n] = rd(st, t->name, NULL);
        e[n].ndim = t->ndim;
        for (d = 0; d < t->ndim; d++) e[n].shape[d] = t->shape[d];
        if (what && !strcmp(what, "embed-differs") && !strcmp(t->name, "shared.weight")) {
            e[n + 1] = e[n];
            e[n + 1].name = "encoder.embed_tokens.weight";
            e[n + 1].data = data[n + 1] = rd(st, t->name, NULL);
            data[n + 1][7] += 1.0f;
            n++;
        }
        if (what && !strcmp(what, "umt5") && !strcmp(t->name, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")) {
            e[n + 1] = e[n];
            e[n + 1].name = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight";
            e[n + 1].data = data[n + 1] = rd(st, t->name, NULL);
            n++;
        }
        n++;
    }
    rc = textok_st_save(out, e, n, NULL, 0, TEXTOK_DTYPE_F32);
    if (rc) printf("%s\n", textok_last_error());
    for (i = 0; i < n; i++) free(data[i]);
    return rc != TEXTOK_OK;
}
int main(int argc, char **argv)
{
    textok_safetensors st;
    int rc = 2;
    if (argc >= 4 && !strcmp(argv[1], "check")) return check(argv[2], argv[3], argc > 4);
    if (argc < 4 || textok_st_open(&st, argv[2]) != TEXTOK_OK) return 2;
    if (!strcmp(argv[1], "shard")) {
        char path[4096];
        int half = st.n_tensors / 2, i;
        FILE *f;
        snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", argv[3]);
        rc = 1;
        if (write_subset(&st, path, 0, half, NULL)) goto done;
        snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", argv[3]);
        if (write_subset(&st, path, half, st.n_tensors, NULL)) goto done;
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", argv[3]);
        if (!(f = fopen(path, "w"))) goto done;
        /* metadata with nesting and a brace inside a string: the reader must skip it whole */
        fprintf(f, "{\n  \"metadata\": {\"total_size\": 1234, \"note\": [1, {\"x\": \"}\"}]},\n  \"weight_map\": {\n");
        for (i = 0; i < st.n_tensors; i++)
            fprintf(f, "    \"%s\": \"model-0000%d-of-00002.safetensors\"%s\n", st.tensors[i].name, i < half ? 1 : 2,
                    i + 1 < st.n_tensors ? "," : "");
        fprintf(f, "  }\n}\n");
        rc = fclose(f) != 0;
    } else if (!strcmp(argv[1], "edit") && argc == 5) {
        rc = write_subset(&st, argv[3], 0, st.n_tensors, argv[4]);
    }
done:
    textok_st_close(&st);
    return rc;
}
EOF
T5TOOL=$TMP/t5_tool
if ! ${CC:-cc} -std=c99 -O1 -I. "$TMP/t5_tool.c" -o "$T5TOOL" -lm 2>"$TMP/cc.log"; then
  fail "t5: the check program" "cannot build it: $(head -n 3 "$TMP/cc.log" | tr '\n' ' ')"; exit 0
fi
# t5 WHAT OUT ARGS...: convert --t5 ARGS OUT must succeed and write OUT
t5() {
  local what=$1 out=$2; shift 2
  rm -f "$out"
  if ! "$CONV" --t5 "$@" "$out" >"$TMP/stdout" 2>"$TMP/stderr"; then
    fail "$what" "exit $? ($(last_line "$TMP/stderr"))"; return 1
  fi
  if [ ! -s "$out" ]; then fail "$what" "no output file"; return 1; fi
  pass "$what"
}
# t5_loads WHAT FILE REF [exact]: the output gives the reference's last_hidden_state
t5_loads() {
  if "$T5TOOL" check "$2" "$3" ${4:-} >"$TMP/check.log" 2>&1; then
    pass "$1: $(tr '\n' ' ' <"$TMP/check.log")"
  else
    fail "$1" "$(tr '\n' ' ' <"$TMP/check.log")"
  fi
}
GREF=$TMP/t5_gated.safetensors
if t5 "--t5 t5_gated.safetensors (BF16, seq2seq)" "$GREF" "$T/t5_gated.safetensors"; then
  says "--t5: the model" "$TMP/stdout" "T5 encoder, gated tanh-GELU (v1.1/flan): d_model 40, 3 heads x d_kv 16, d_ff 56, 3 layers, vocab 100, 32 buckets, max_distance 128, eps 1e-06"
  says "--t5: decoder and lm_head dropped" "$TMP/stdout" "dropping 15 decoder.*/lm_head.* tensors"
  says "--t5: defaults announced" "$TMP/stdout" "no --t5-config"
  says "--t5: parameter total" "$TMP/stdout" "47,576"
  if head -c 4096 "$GREF" | grep -qaF '"textok.model":"t5"' && head -c 4096 "$GREF" | grep -qaF '"eps":"9.99999997e-07"'; then
    pass "--t5: metadata textok.model = t5, eps as %.9g"
  else
    fail "--t5: metadata" "no textok.model=t5 / eps=9.99999997e-07 in the header"
  fi
  t5_loads "--t5 t5_gated output loads and matches the reference" "$GREF" "$T/t5_gated_ref.safetensors"
  if t5 "--t5 t5_gated.bin (F32, tied alias)" "$TMP/t5_gated_bin.safetensors" "$T/t5_gated.bin"; then
    says "--t5 .bin: the alias checked and dropped" "$TMP/stdout" "'encoder.embed_tokens.weight' is the tied alias of 'shared.weight' (equal): dropped"
    same "--t5 t5_gated: .bin and .safetensors convert to the same bytes" "$GREF" "$TMP/t5_gated_bin.safetensors"
  fi
  if t5 "--t5 t5_gated with its config.json" "$TMP/t5_gated_cfg.safetensors" "$T/t5_gated.safetensors" --t5-config "$T/t5_gated_config.json"; then
    same "--t5 t5_gated: config.json agrees with the defaults (same bytes)" "$GREF" "$TMP/t5_gated_cfg.safetensors"
  fi
  if t5 "--t5 t5_gated with an old flan-t5-xxl config (exact GELU)" "$TMP/t5_gelu.safetensors" "$T/t5_gated.bin" --t5-config "$T/t5_gated_gelu_config.json"; then
    says "--t5 exact GELU: the model" "$TMP/stdout" "gated exact GELU"
    t5_loads "--t5 exact-GELU output matches the reference" "$TMP/t5_gelu.safetensors" "$T/t5_gated_ref.safetensors" exact
  fi
  mkdir -p "$TMP/shards"
  if "$T5TOOL" shard "$T/t5_gated.safetensors" "$TMP/shards" >"$TMP/check.log" 2>&1 &&
     t5 "--t5 a sharded checkpoint (model.safetensors.index.json)" "$TMP/t5_sharded.safetensors" "$TMP/shards/model.safetensors.index.json"; then
    says "--t5 sharded: both shards read" "$TMP/stdout" "model-00002-of-00002.safetensors"
    same "--t5 sharded: the same bytes" "$GREF" "$TMP/t5_sharded.safetensors"
  fi
fi
if t5 "--t5 t5_v10.bin (F16, v1.0) with its config.json" "$TMP/t5_v10.safetensors" "$T/t5_v10.bin" --t5-config "$T/t5_v10_config.json"; then
  says "--t5 v1.0: the model" "$TMP/stdout" "T5 encoder, ReLU (v1.0): d_model 32, 2 heads x d_kv 12, d_ff 48, 2 layers, vocab 64, 16 buckets, max_distance 40, eps 1e-05"
  t5_loads "--t5 t5_v10 output loads and matches the reference" "$TMP/t5_v10.safetensors" "$T/t5_v10_ref.safetensors"
  if t5 "--t5 t5_v10.safetensors (only encoder.embed_tokens.weight)" "$TMP/t5_v10_st.safetensors" "$T/t5_v10.safetensors" --t5-config "$T/t5_v10_config.json"; then
    same "--t5 t5_v10: .bin and .safetensors convert to the same bytes" "$TMP/t5_v10.safetensors" "$TMP/t5_v10_st.safetensors"
  fi
fi
if t5 "--t5 t5_v10 without its config.json" "$TMP/t5_v10_nocfg.safetensors" "$T/t5_v10.safetensors"; then
  says "--t5 v1.0 without config: the defaults" "$TMP/stdout" "max_distance 128, eps 1e-06"
fi

# refused T5 inputs: what; the arguments (OUT appended); what stderr must mention
"$T5TOOL" edit "$T/t5_gated.safetensors" "$TMP/decoder_only.safetensors" decoder-only >/dev/null 2>&1
"$T5TOOL" edit "$T/t5_gated.safetensors" "$TMP/no_final_norm.safetensors" no-final-norm >/dev/null 2>&1
"$T5TOOL" edit "$T/t5_gated.safetensors" "$TMP/umt5.safetensors" umt5 >/dev/null 2>&1
"$T5TOOL" edit "$T/t5_gated.safetensors" "$TMP/embed_differs.safetensors" embed-differs >/dev/null 2>&1
head -c 50000 "$T/t5_gated.safetensors" >"$TMP/truncated.safetensors"
head -c 60000 "$T/t5_gated.bin" >"$TMP/truncated.bin"
printf '{"d_model": 40, "num_heads": 3,, }' >"$TMP/broken_config.json"
sed 's/"gated-gelu"/"gated-silu"/' "$T/t5_gated_config.json" >"$TMP/silu_config.json"
sed 's/"feed_forward_proj": "gated-gelu"/"feed_forward_proj": "relu"/' "$T/t5_gated_config.json" >"$TMP/relu_config.json"
sed 's/"model_type": "t5"/"model_type": "umt5"/' "$T/t5_gated_config.json" >"$TMP/umt5_config.json"
mkdir -p "$TMP/badshards"
cp "$TMP/shards/model-00001-of-00002.safetensors" "$TMP/shards/model.safetensors.index.json" "$TMP/badshards/" 2>/dev/null
while IFS=';' read -r what args patterns; do
  [ -n "$what" ] || continue
  # shellcheck disable=SC2086
  refuses "--t5 refuses $what" 1 "$patterns" --t5 $args "$OUT"
done <<EOF
a decoder-only file;$TMP/decoder_only.safetensors;not a T5 encoder|encoder.block.0.layer.0.SelfAttention.q.weight|a T5 decoder but no encoder
a file without the final norm;$TMP/no_final_norm.safetensors;missing tensor 'encoder.final_layer_norm.weight' [40]|1 problem|nothing written
a position table in block 1 (umT5);$TMP/umt5.safetensors;unexpected tensor 'encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight'|umT5
two embeddings that differ;$TMP/embed_differs.safetensors;'shared.weight' and 'encoder.embed_tokens.weight' are both present and differ
a truncated safetensors;$TMP/truncated.safetensors;truncated.safetensors|truncated
a truncated .bin;$TMP/truncated.bin;truncated.bin
a TiTok checkpoint;$D/ok_views.bin;not a T5 encoder|shared.weight
another model's config.json;$T/t5_gated.safetensors --t5-config $T/t5_v10_config.json;t5_v10_config.json: "d_model" is 32, but the tensors say 40
a broken config.json;$T/t5_gated.safetensors --t5-config $TMP/broken_config.json;broken_config.json: not valid JSON at byte
an unsupported activation;$T/t5_gated.safetensors --t5-config $TMP/silu_config.json;activation "silu"|not supported
a config that says non-gated;$T/t5_gated.safetensors --t5-config $TMP/relu_config.json;non-gated FFN|wi_0/wi_1 (gated)
a umT5 config;$T/t5_gated.safetensors --t5-config $TMP/umt5_config.json;"model_type" is "umt5"|position table in every block
a missing config.json;$T/t5_gated.safetensors --t5-config $TMP/nope.json;nope.json
an index whose shard is missing;$TMP/badshards/model.safetensors.index.json;model-00002-of-00002.safetensors
EOF
refuses "usage: --t5 with one file" 2 "usage:|--t5 expects IN and OUT" --t5 "$T/t5_gated.safetensors"
refuses "usage: --t5-config without --t5" 2 "usage:|--t5-config goes with --t5" "$T/t5_gated.safetensors" "$OUT" --t5-config "$T/t5_gated_config.json"
refuses "usage: --t5 with --lpips" 2 "usage:|--lpips does not apply" --t5 --lpips "$T/t5_gated.safetensors" "$OUT"
refuses "usage: --t5-config without a file" 2 "usage:|--t5-config takes" --t5 "$T/t5_gated.safetensors" "$OUT" --t5-config
refuses "T5 files without --t5: a hint" 1 "unknown architecture|use --t5" "$T/t5_gated.safetensors" "$OUT"
exit 0
