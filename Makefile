# luahub -- the four doors: make, make test, make run, make bench.
# Sources are discovered: every .c under core/ (in its layer folders, see
# core/README.md) is part of the hub, every tests/unit/test_*.c is a unit
# test linked against the core (minus main.c); tests/unit/ mirrors core/'s folders.

CC      ?= cc
PORT    ?= 7400
HANDLERS ?= handlers

PKGS     := lua5.4 libev
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CSTD     := -std=c11 -D_GNU_SOURCE
INCS     := -Icore $(shell pkg-config --cflags lua5.4 2>/dev/null)
OPT      ?= -O2 -g
CFLAGS   := $(CSTD) $(OPT) $(WARN) $(INCS) $(EXTRA_CFLAGS)
LDLIBS   := -lev $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) -llua5.4-cjson -lm -lsqlite3 -lxxhash -lpthread
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CORE_SRC := $(shell find core -name '*.c' | sort)
LIB_SRC  := $(filter-out core/main.c,$(CORE_SRC))
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' | sort)
HDRS     := $(shell find core -name '*.h') tests/unit/unit.h

OBJ      := $(patsubst core/%.c,build/obj/%.o,$(CORE_SRC))
LIB_OBJ  := $(patsubst core/%.c,build/obj/%.o,$(LIB_SRC))
AOBJ     := $(patsubst core/%.c,build/asan/obj/%.o,$(CORE_SRC))
ALIB_OBJ := $(patsubst core/%.c,build/asan/obj/%.o,$(LIB_SRC))
UNITS    := $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRC))

.PHONY: all deps asan units test crash run bench bench-tools fuzz fuzz-tools lint format clean

all: build/luahub

deps:
	@scripts/install-deps.sh

build/obj/%.o: core/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

build/luahub: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS)

# The same hub with AddressSanitizer + UndefinedBehaviorSanitizer: the test
# suite runs its integration tests against this binary too.
build/asan/obj/%.o: core/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -O1 -c $< -o $@

build/asan/luahub: $(AOBJ)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $(AOBJ) $(LDLIBS)

# Unit tests always build with the sanitizers.
build/asan/tests/%: tests/unit/%.c $(ALIB_OBJ) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -Itests/unit -o $@ $< $(ALIB_OBJ) $(LDLIBS)

asan: build/asan/luahub
units: $(UNITS)

# libFuzzer targets (tests/fuzz/fuzz_<name>.c), built with clang and ASan +
# UBSan, each linked with just the core files it exercises. `make fuzz` runs
# each for FUZZ_SECONDS, growing a corpus under build/fuzz/ from the committed
# seeds in tests/fuzz/corpus/<name>/; `make test` replays the seeds once.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := glob resp config
FUZZ_FLAGS   := $(CSTD) -g -O1 -Icore -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC_glob   := core/route/glob.c
FUZZ_SRC_resp   := core/net/resp.c
FUZZ_SRC_config := core/base/config.c core/base/log.c
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRC) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRC_$*)

fuzz-tools: $(FUZZ_BINS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-tools
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/corpus-$$t build/fuzz/crashes; \
	    echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
	    build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/crashes/$$t- build/fuzz/corpus-$$t tests/fuzz/corpus/$$t \
	        >build/fuzz/$$t.log 2>&1 || { tail -40 build/fuzz/$$t.log; exit 1; }; \
	    grep -E '^stat::number_of_executed_units|^stat::new_units_added' build/fuzz/$$t.log; \
	done

build/obj:
	@mkdir -p $@

test: deps
	@$(MAKE) --no-print-directory all asan units bench-tools fuzz-tools
	@tests/run.sh

# The kill -9 crash test of `make test` (tests/integration/test_crash.py)
# with more kills, on the release build; CRASH_SEED=n replays a run.
CRASH_KILLS ?= 200
crash: deps
	@$(MAKE) --no-print-directory all
	CRASH_KILLS=$(CRASH_KILLS) LUAHUB_BIN=build/luahub /usr/bin/python3 -m pytest -q -s -p no:cacheprovider \
	  tests/integration/test_crash.py -k kill9

run: deps
	@$(MAKE) --no-print-directory all
	build/luahub --port $(PORT) --handlers $(HANDLERS) --dir build/data

bench-tools: build/loadgen

build/loadgen: $(wildcard bench/*.c) | build/obj
	$(CC) $(CSTD) -O2 -g $(WARN) -o $@ $(wildcard bench/*.c) -lev -lm -lpthread

bench: deps
	@$(MAKE) --no-print-directory all bench-tools
	@bench/run.sh $(if $(QUICK),--quick) $(BENCH_ARGS)

lint:
	scripts/check-layers.py
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
	  --library=posix -D__GNUC__ -DLLONG_MAX=9223372036854775807LL -Icore -I/usr/include/lua5.4 \
	  --suppress=missingIncludeSystem \
	  --suppress=unknownMacro --suppress=readdirCalled core/
	luacheck --no-color -q handlers scripts tests/lua

format:
	clang-format -i $(CORE_SRC) $(shell find core -name '*.h') bench/*.c $(UNIT_SRC)

clean:
	rm -rf build
