# textok - build, test, install.
#   make                  build everything into build/
#   make demo             the shipped emoji models: reconstruct 16 emoji, generate 8 (PNGs in demo/)
#   make test             compile checks (C99, C11, C++, TEXTOK_STATIC, two-TU link, gcc/clang
#                         -Werror), then the test runner, also built with BLAS and OpenMP off
#   make check-full       full-size TiTok-S-128 through convert/tokenize/reconstruct, and the
#                         full-size DiT-XL/2 (256, 512), ImageBert-L32, UViT-S128 generators
#                         through convert/generate --forward, vs PyTorch
#   make asan             the test runner under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz             the libFuzzer targets of tests/fuzz/ (clang), FUZZ_SECONDS (default 60)
#                         each, seeded from tests/fuzz/corpus/; a crash stops it (build/fuzz/crash-*)
#   make error-table      rewrites tests/README.md's table of bad inputs and their messages from the
#                         real programs (tests/error_table.sh; runs the CLI scripts, a few minutes)
#   make valgrind         the test runner and the fuzz replays under valgrind memcheck (leaks are
#                         errors); VALGRIND_GROUPS picks test_runner groups (default: all)
#   make bench            build/bench: GFLOP/s table
#   make bench-compare    build/bench --compare: ours vs PyTorch default and tuned, side by side
#                         (~10 min; BENCH_FLAGS=--quick for ~3 min, --full adds batch 8)
#   make cuda             build/test_cuda and build/bench_cuda with textok_cuda.cu (nvcc; skipped
#                         with a message when there is none). CUDA_ARCH (default "80 90"),
#                         NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc). Never
#                         probes a GPU: build/test_cuda prints "skipped: no CUDA device" without one
#   make install / uninstall   PREFIX (default /usr/local) and DESTDIR honoured
#   make clean
# Options: BLAS=openblas|none (default openblas), OPENMP=1|0 (default 1), CC, CFLAGS, LDFLAGS.

CC      ?= cc
CXX     ?= g++
CFLAGS  ?= -O2 -g
PREFIX  ?= /usr/local
BLAS    ?= openblas
OPENMP  ?= 1
BUILD   ?= build

WARN          := -Wall -Wextra -Wpedantic
TEXTOK_CFLAGS := -std=c99 $(WARN) -I. -Itests
TEXTOK_LIBS   := -lm

ifeq ($(OPENMP),1)
  TEXTOK_CFLAGS += -fopenmp
  TEXTOK_LIBS   += -fopenmp
  $(info textok: OpenMP on (OPENMP=0 to turn off))
else ifeq ($(OPENMP),0)
  $(info textok: OpenMP off)
else
  $(error OPENMP must be 1 or 0, not '$(OPENMP)')
endif

ifeq ($(BLAS),openblas)
  OPENBLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  OPENBLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null)
  ifeq ($(OPENBLAS_LIBS),)
    $(error BLAS=openblas but pkg-config cannot find openblas: apt-get install libopenblas-dev pkg-config, or build with BLAS=none)
  endif
  TEXTOK_CFLAGS += -DTEXTOK_USE_BLAS $(OPENBLAS_CFLAGS)
  TEXTOK_LIBS   += $(OPENBLAS_LIBS)
  $(info textok: BLAS = OpenBLAS (BLAS=none for the portable blocked GEMM))
else ifeq ($(BLAS),none)
  $(info textok: BLAS off, portable blocked GEMM)
else
  $(error BLAS must be openblas or none, not '$(BLAS)')
endif

# For the PyTorch reference scripts that check-full and the golden tools run (textok itself needs
# neither: its GEMM is its own, chosen at run time, and it has one thread pool). Debian's OpenBLAS
# 0.3.21 misdetects some AVX-512 CPUs and falls back to an SSE3 kernel (5x slower); it reads the
# core when it loads, so it must be in the environment.
ifeq ($(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo y),y)
  export OPENBLAS_CORETYPE ?= SkylakeX
endif
# libgomp's idle threads spin after each parallel loop and take the cores from OpenBLAS's own
# thread pool (PyTorch runs both). Read when the program starts.
export OMP_WAIT_POLICY ?= passive

HDR        := textok.h
FUZZ_TARGETS := safetensors torch npy tokenizer dataset captions image
FUZZ_SRC   := tests/fuzz/fuzz.h $(addprefix tests/fuzz/fuzz_,$(addsuffix .c,$(FUZZ_TARGETS))) tools/convert.c examples/common.h
TEST_SRC   := tests/test_main.c tests/check.c tests/test_kernels.c tests/test_io.c tests/test_titok.c tests/test_t5.c \
              tests/test_spm.c tests/test_nets.c tests/test_train.c tests/test_textok.c tests/test_dit.c tests/test_maskgit.c \
              tests/test_gen_train.c tests/test_metrics.c tests/test_shipped.c tests/test_hostile.c tests/test_determinism.c tests/textok_impl.c
TEST_HDR   := tests/check.h
TOOLS      := $(BUILD)/convert $(BUILD)/emoji_dataset $(BUILD)/word_t5 $(BUILD)/tokenize $(BUILD)/reconstruct $(BUILD)/npycmp $(BUILD)/train_tokenizer \
              $(BUILD)/encode_text $(BUILD)/generate $(BUILD)/train_generator $(BUILD)/evaluate $(BUILD)/demo
PROGRAMS   := $(BUILD)/selfcheck $(BUILD)/bench $(BUILD)/test_runner $(BUILD)/fuzz_replay $(TOOLS)
# stb_image / stb_image_write (Debian libstb-dev): examples only, never the library. -isystem
# keeps stb's own code out of our warning flags.
STB_CFLAGS := -isystem /usr/include/stb
CLANG      := $(shell command -v clang 2>/dev/null)

.PHONY: all demo test check check-full asan fuzz valgrind error-table bench bench-compare compile-checks cuda cuda-emu install uninstall clean
all: $(PROGRAMS)

# The shipped emoji models (weights/emoji/) end to end: reconstructions and generated samples in demo/
demo: $(BUILD)/demo
	$(BUILD)/demo

$(BUILD)/selfcheck: examples/selfcheck.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/bench: examples/bench.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/convert: tools/convert.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/word_t5: tools/word_t5.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/emoji_dataset: tools/emoji_dataset.c $(HDR)
	@mkdir -p $(@D)
	@test -f /usr/include/stb/stb_image.h || { echo "textok: tools need stb_image: apt-get install libstb-dev"; exit 1; }
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $(STB_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/npycmp: tools/npycmp.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/tokenize $(BUILD)/reconstruct $(BUILD)/train_tokenizer $(BUILD)/encode_text $(BUILD)/generate \
$(BUILD)/train_generator $(BUILD)/evaluate $(BUILD)/demo: $(BUILD)/%: examples/%.c examples/common.h $(HDR)
	@mkdir -p $(@D)
	@test -f /usr/include/stb/stb_image.h || { echo "textok: examples need stb_image: apt-get install libstb-dev"; exit 1; }
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $(STB_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

$(BUILD)/test_runner: $(TEST_SRC) $(TEST_HDR) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $(TEST_SRC) -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

# The fuzz targets' inputs (tests/fuzz/corpus/, tests/fuzz/regressions/) replayed without libFuzzer
$(BUILD)/fuzz_replay: tests/fuzz/replay.c $(FUZZ_SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) $(STB_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

# The header must compile warning-free in every configuration a user may pick.
CHECK := tests/compile_check.c
compile-checks: $(HDR) $(CHECK) tests/link_b.c
	@mkdir -p $(BUILD)/cc
	$(CC)  -std=c99   $(WARN) -Werror -I. -c $(CHECK) -o $(BUILD)/cc/c99.o
	$(CC)  -std=c11   $(WARN) -Werror -I. -c $(CHECK) -o $(BUILD)/cc/c11.o
	$(CC)  -std=c99   $(WARN) -Werror -I. -DTEXTOK_STATIC -c $(CHECK) -o $(BUILD)/cc/static.o
	$(CC)  -std=c99   $(WARN) -Werror -I. -DTEXTOK_NO_STDIO -c $(CHECK) -o $(BUILD)/cc/nostdio.o
	$(CC)  -std=c99   $(WARN) -Werror -I. -DTEXTOK_NO_MMAP -c $(CHECK) -o $(BUILD)/cc/nommap.o
	$(CC)  -std=c99   $(WARN) -Werror -I. -fopenmp -DTEXTOK_USE_BLAS $(OPENBLAS_CFLAGS) -c $(CHECK) -o $(BUILD)/cc/blas_omp.o
	$(CXX) -x c++ -std=c++11 $(WARN) -Werror -I. -c $(CHECK) -o $(BUILD)/cc/cxx.o
	$(CXX) -x c++ -std=c++11 $(WARN) -Werror -I. -DTEXTOK_STATIC -c $(CHECK) -o $(BUILD)/cc/cxx_static.o
	$(CXX) -x c++ -std=c++11 $(WARN) -Werror -I. -fopenmp -DTEXTOK_USE_BLAS $(OPENBLAS_CFLAGS) -c $(CHECK) -o $(BUILD)/cc/cxx_blas_omp.o
	$(CC)  -std=c99   $(WARN) -Werror -I. $(CHECK) tests/link_b.c -o $(BUILD)/cc/link -lm && $(BUILD)/cc/link
ifneq ($(CLANG),)
	clang -std=c99 $(WARN) -Werror -I. -c $(CHECK) -o $(BUILD)/cc/clang.o
	clang -std=c99 $(WARN) -Werror -I. -fopenmp -DTEXTOK_USE_BLAS $(OPENBLAS_CFLAGS) -c $(CHECK) -o $(BUILD)/cc/clang_omp.o
else
	@echo "textok: clang not found, skipping the clang compile checks"
endif
	@echo "compile checks: ok"

# BLAS and OpenMP off: the portable path must pass the same tests.
$(BUILD)/plain/test_runner: $(TEST_SRC) $(TEST_HDR) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -std=c99 $(WARN) -I. -Itests $(TEST_SRC) -o $@ $(LDFLAGS) -lm

test check: compile-checks $(BUILD)/test_runner $(BUILD)/plain/test_runner $(BUILD)/selfcheck $(BUILD)/fuzz_replay $(TOOLS)
	$(BUILD)/selfcheck
	@echo "== fuzz corpora and regressions, replayed =="
	$(BUILD)/fuzz_replay
	@echo "== command-line tools: convert, tokenize, reconstruct, train_tokenizer, generate, train_generator, evaluate, demo =="
	tests/test_cli.sh $(BUILD)
	@echo "== portable build (BLAS=none OPENMP=0) =="
	$(BUILD)/plain/test_runner
	@echo "== default build =="
	$(BUILD)/test_runner

# Full-size acceptance check (TiTok-S-128, official names, .safetensors and .bin, against the
# PyTorch reference; then the official-named generators: DiT-XL/2 256 and 512 (.pt),
# ImageBert-L32 and UViT-S128 (.bin); needs python3-torch, a few minutes, ~8 GB in a temp dir).
check-full: $(TOOLS)
	tests/check_full.sh $(BUILD)

SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
$(BUILD)/asan/test_runner: $(TEST_SRC) $(TEST_HDR) $(HDR)
	@mkdir -p $(@D)
	$(CC) -O1 -g $(SAN) $(TEXTOK_CFLAGS) $(TEST_SRC) -o $@ $(LDFLAGS) $(TEXTOK_LIBS)
asan: $(BUILD)/asan/test_runner $(BUILD)/asan/fuzz_replay
	ASAN_OPTIONS=detect_leaks=1 $(BUILD)/asan/fuzz_replay
	ASAN_OPTIONS=detect_leaks=1 $(BUILD)/asan/test_runner
	@echo "== command-line tools under ASan + UBSan =="
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CFLAGS="-O1 -g $(SAN) -DTEXTOK_NO_MMAP" LDFLAGS="$(SAN)" \
	    $(addprefix $(BUILD)/asan/,convert emoji_dataset word_t5 tokenize reconstruct npycmp train_tokenizer encode_text generate train_generator evaluate demo)
	ASAN_OPTIONS=detect_leaks=1 tests/test_cli.sh $(BUILD)/asan

$(BUILD)/asan/fuzz_replay: tests/fuzz/replay.c $(FUZZ_SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) -O1 -g $(SAN) -DTEXTOK_NO_MMAP $(TEXTOK_CFLAGS) $(STB_CFLAGS) $< -o $@ $(LDFLAGS) $(TEXTOK_LIBS)

# valgrind memcheck over the portable build (no OpenMP, no BLAS: no thread pools for it to
# misread); definite and indirect leaks are errors. The whole runner takes hours under valgrind:
# VALGRIND_GROUPS="io spm hostile" picks groups (default: every group).
VALGRIND_GROUPS ?=
VALGRIND := valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1
$(BUILD)/plain/fuzz_replay: tests/fuzz/replay.c $(FUZZ_SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -std=c99 $(WARN) -I. $(STB_CFLAGS) $< -o $@ $(LDFLAGS) -lm
valgrind: $(BUILD)/plain/test_runner $(BUILD)/plain/fuzz_replay
	@command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)"; exit 1; }
	$(VALGRIND) $(BUILD)/plain/fuzz_replay
	$(VALGRIND) $(BUILD)/plain/test_runner $(VALGRIND_GROUPS)

error-table: $(BUILD)/fuzz_replay $(TOOLS)
	tests/error_table.sh $(BUILD) >tests/README.md.tmp && mv tests/README.md.tmp tests/README.md

# libFuzzer (clang -fsanitize=fuzzer): each target FUZZ_SECONDS, its working corpus in
# build/fuzz/corpus-<t>/ seeded from tests/fuzz/corpus/<t>/; a crash stops make, its input is
# build/fuzz/crash-<t>-*: copy it to tests/fuzz/regressions/<t>/ once fixed. No clang or no
# libFuzzer: a message, not a failure.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fsanitize-ignorelist=tests/fuzz/ubsan_ignore.txt -DTEXTOK_NO_MMAP
$(BUILD)/fuzz/%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(HDR) tests/fuzz/ubsan_ignore.txt
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -std=c99 $(WARN) -I. $(STB_CFLAGS) $< -o $@ -lm
FUZZ_PROBE   := int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n
fuzz:
	@printf '$(FUZZ_PROBE)' | clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null || \
	    { echo "fuzz: skipped: clang with libFuzzer (-fsanitize=fuzzer) is not available"; exit 0; }; \
	$(MAKE) --no-print-directory $(addprefix $(BUILD)/fuzz/,$(FUZZ_TARGETS)) && \
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/corpus-$$t; \
	    echo "== fuzz $$t: $(FUZZ_SECONDS) s =="; \
	    $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
	        -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crash-$$t- \
	        $(BUILD)/fuzz/corpus-$$t tests/fuzz/corpus/$$t 2>$(BUILD)/fuzz/$$t.log \
	        || { tail -n 60 $(BUILD)/fuzz/$$t.log; echo "fuzz: $$t found a crash: $(BUILD)/fuzz/crash-$$t-*"; exit 1; }; \
	    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $(BUILD)/fuzz/$$t.log | tr '\n' ' '; echo; \
	done && echo "fuzz: every target ran $(FUZZ_SECONDS) s without a crash"

bench: $(BUILD)/bench
	$(BUILD)/bench
	$(BUILD)/bench --titok --torch
	$(BUILD)/bench --train --torch

# Issue 7's table. bench --compare runs every side in a child process with OPENBLAS_CORETYPE and
# OMP_WAIT_POLICY removed (ours, PyTorch default) or set to the tuned values (PyTorch tuned), so
# the exports above do not reach the numbers.
BENCH_FLAGS ?=
bench-compare: $(BUILD)/bench
	$(BUILD)/bench --compare $(BENCH_FLAGS)

# CUDA (issue 9): textok_cuda.cu is compiled by nvcc for explicit architectures (no GPU query at
# build time), with --fmad=false (no multiply-add contraction, so pointwise kernels round as the
# C code does) and the host compiler's warnings as errors. The C side (test/bench + the library
# implementation) is compiled by $(CC) as everywhere else, and nvcc links the two with cuBLAS.
NVCC      ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_ARCH ?= 80 90
NVCCFLAGS ?= -O2
CUDA_GENCODE := $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a))
CUDA_FLAGS   := -std=c++14 --fmad=false $(CUDA_GENCODE) -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror -I.
CUDA_LIBS    := -lcublas $(patsubst -fopenmp,-Xcompiler -fopenmp,$(TEXTOK_LIBS))
ifeq ($(NVCC),)
cuda:
	@echo "textok: nvcc not found (set NVCC=/path/to/nvcc): skipping the CUDA build"
else
cuda: $(BUILD)/test_cuda $(BUILD)/bench_cuda
	@echo "textok: CUDA build ok ($(BUILD)/test_cuda, $(BUILD)/bench_cuda; CUDA_ARCH=$(CUDA_ARCH))"
endif

$(BUILD)/cuda/textok_cuda.o: textok_cuda.cu textok_cuda.h $(HDR)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) $(CUDA_FLAGS) -c $< -o $@

$(BUILD)/cuda/test_cuda.o: tests/test_cuda.c textok_cuda.h $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) -Werror -c $< -o $@

$(BUILD)/cuda/bench_cuda.o: examples/bench.c textok_cuda.h $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEXTOK_CFLAGS) -DTEXTOK_CUDA -c $< -o $@

$(BUILD)/test_cuda: $(BUILD)/cuda/test_cuda.o $(BUILD)/cuda/textok_cuda.o
	$(NVCC) $(CUDA_GENCODE) $^ -o $@ $(CUDA_LIBS)

$(BUILD)/bench_cuda: $(BUILD)/cuda/bench_cuda.o $(BUILD)/cuda/textok_cuda.o
	$(NVCC) $(CUDA_GENCODE) $^ -o $@ $(CUDA_LIBS)

# No GPU needed: textok_cuda.cu's kernels RUN on the CPU under tests/cuda_emu (every CUDA thread a
# fiber, __syncthreads and warp shuffles real barriers, cuBLAS a checked column-major GEMM), with
# the <<<grid, block>>> launches rewritten to emu_launcher(grid, block, kernel)(...). x86-64 + g++.
# build/test_cuda_emu --small: every check of build/test_cuda, the model checks on tiny models.
EMU_DIR := tests/cuda_emu
$(BUILD)/emu/textok_cuda_emu.cpp: textok_cuda.cu
	@mkdir -p $(@D)
	sed -E 's/([A-Za-z0-9_]+)<<<(.*)>>>\(/emu_launcher(\2, \1)(/' $< > $@
	@! grep -nE '<<<.*>>>\(' $@ || { echo "textok: a launch that cuda-emu's rewrite missed (one line per <<<...>>>( please)"; exit 1; }

$(BUILD)/test_cuda_emu: $(BUILD)/emu/textok_cuda_emu.cpp $(BUILD)/cuda/test_cuda.o $(EMU_DIR)/cuda_runtime.h $(EMU_DIR)/cublas_v2.h textok_cuda.h $(HDR)
	$(CXX) -O2 -g -std=c++14 -fcf-protection=none -Wall -Wextra -Wno-unknown-pragmas -Werror -I$(EMU_DIR) -I. \
	    -x c++ $(BUILD)/emu/textok_cuda_emu.cpp -x none $(BUILD)/cuda/test_cuda.o -o $@ $(TEXTOK_LIBS)

cuda-emu: $(BUILD)/test_cuda_emu
	$(BUILD)/test_cuda_emu --small
	TEXTOK_CUDA_SMALL_TILES=1 $(BUILD)/test_cuda_emu --quick

textok.pc: textok.pc.in $(HDR)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^#define TEXTOK_VERSION_STRING "\(.*\)"/\1/p' $(HDR))|' $< > $@

install: textok.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(HDR) $(DESTDIR)$(PREFIX)/include/textok.h
	install -m 644 textok.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/textok.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/textok.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/textok.pc

clean:
	rm -rf $(BUILD) textok.pc
