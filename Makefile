# tracktls build. `make` builds bin/terminator and bin/issuer; `make asan` the same under ASan+UBSan in build/asan.
# Sources are found by wildcard: a new module is a new .c file, no Makefile edit needed.

CC      ?= cc
CSTD    := -std=gnu11
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT     ?= -O2 -g
MODE    ?= release

# wolfSSL with assembly, built once into a cache outside the tree (scripts/build-wolfssl.sh).
# Evaluated lazily (and once), so targets that compile nothing never trigger the build; its
# warnings go to the terminal: a fallback to Debian's assembly-free package must be seen.
WOLFSSL_PREFIX = $(eval WOLFSSL_PREFIX := $(shell scripts/build-wolfssl.sh || echo system))$(WOLFSSL_PREFIX)
WOLFSSL_CFLAGS = $(if $(filter system,$(WOLFSSL_PREFIX)),-DTRACKTLS_WOLFSSL_SYSTEM,-I$(WOLFSSL_PREFIX)/include)
WOLFSSL_LIBS   = $(if $(filter system,$(WOLFSSL_PREFIX)),-lwolfssl,$(WOLFSSL_PREFIX)/lib/libwolfssl.a)

PG_CFLAGS := -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
CFLAGS_ALL = $(CSTD) $(WARN) $(OPT) -D_GNU_SOURCE -MMD -MP -Icommon $(PG_CFLAGS) $(WOLFSSL_CFLAGS) -include wolfssl/options.h $(EXTRA_CFLAGS)
LIBS      = $(WOLFSSL_LIBS) -luring -lpq -lsodium -ljansson -lcurl -lidn2 -lcares -lpthread -lm

ifeq ($(MODE),asan)
  BUILD   := build/asan
  OPT     := -O1 -g -fno-omit-frame-pointer
  EXTRA_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else
  BUILD   := build/release
  # Hardened release: fortified libc calls, stack canaries and clash probes, a position-independent
  # executable with read-only relocations bound at start. (The ASan build leaves these out:
  # fortified wrappers bypass its interceptors.)
  EXTRA_CFLAGS += -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fstack-clash-protection -fPIE
  LDFLAGS += -pie -Wl,-z,relro -Wl,-z,now
endif
BIN := $(if $(filter asan,$(MODE)),$(BUILD)/bin,bin)

COMMON_SRC := $(wildcard common/*.c)
TERM_SRC   := $(wildcard terminator/*.c)
ISSUER_SRC := $(wildcard issuer/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/schema/migrations.o
TERM_OBJ   := $(TERM_SRC:%.c=$(BUILD)/%.o)
ISSUER_OBJ := $(ISSUER_SRC:%.c=$(BUILD)/%.o)
TERM_LIB   := $(filter-out $(BUILD)/terminator/main.o,$(TERM_OBJ))
ISSUER_LIB := $(filter-out $(BUILD)/issuer/main.o,$(ISSUER_OBJ))

UNIT_COMMON := $(patsubst tests/unit/common/%.c,$(BUILD)/tests/common/%,$(wildcard tests/unit/common/test_*.c))
UNIT_TERM   := $(patsubst tests/unit/terminator/%.c,$(BUILD)/tests/terminator/%,$(wildcard tests/unit/terminator/test_*.c))
UNIT_ISSUER := $(patsubst tests/unit/issuer/%.c,$(BUILD)/tests/issuer/%,$(wildcard tests/unit/issuer/test_*.c))
UNIT_BINS   := $(UNIT_COMMON) $(UNIT_TERM) $(UNIT_ISSUER)

.PHONY: FORCE all asan clean deps test demo demo-stop bench bench-full fuzz lint units
all: $(BIN)/terminator $(BIN)/issuer

asan:
	@$(MAKE) --no-print-directory MODE=asan all units

units: $(UNIT_BINS)

$(BIN)/terminator: $(TERM_OBJ) $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS)

$(BIN)/issuer: $(ISSUER_OBJ) $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS)

# Every object depends on which wolfSSL build it was compiled against (struct layouts follow its
# options.h): a new build, or the fallback, rebuilds everything.
WOLFSSL_STAMP = $(BUILD)/wolfssl.prefix
$(WOLFSSL_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(WOLFSSL_PREFIX)' | cmp -s - $@ || echo '$(WOLFSSL_PREFIX)' > $@
FORCE:

$(BUILD)/%.o: %.c $(WOLFSSL_STAMP)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(CFLAGS_ALL) -c -o $@ $<

# Migrations are compiled into the binaries so `issuer db migrate` needs no files beside it.
$(BUILD)/schema/migrations.c: $(sort $(wildcard schema/[0-9]*.sql)) scripts/embed-migrations.sh
	@mkdir -p $(@D)
	scripts/embed-migrations.sh $(sort $(wildcard schema/[0-9]*.sql)) > $@

$(BUILD)/schema/migrations.o: $(BUILD)/schema/migrations.c $(WOLFSSL_STAMP)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/tests/common/%: tests/unit/common/%.c $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Itests/unit $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS)

$(BUILD)/tests/terminator/%: tests/unit/terminator/%.c $(TERM_LIB) $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Iterminator -Itests/unit $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS)

$(BUILD)/tests/issuer/%: tests/unit/issuer/%.c $(ISSUER_LIB) $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Iissuer -Itests/unit $(LDFLAGS) -o $@ $(filter %.c %.o %.a,$^) $(LIBS)

# build/deb holds a copy of the tree (make deb) with its own build/ and directories such as cron.d.
-include $(shell find build -path build/deb -prune -o -type f -name '*.d' -print 2>/dev/null)

deps:
	scripts/deps.sh

# The suite runs against the sanitizer build; TEST_MODE=release runs it against bin/.
TEST_MODE ?= asan
# The release build and the fuzz targets (built by clang, whatever the MODE) go in one make, so
# neither waits for the other's last link on one core; each thing is built once.
test:
	@scripts/deps.sh --if-missing
	@$(MAKE) --no-print-directory -j2 all fuzz-build
	@$(MAKE) --no-print-directory -j2 MODE=$(TEST_MODE) all units
	@tests/run.sh --mode $(TEST_MODE) $(TESTS)

-include bench/bench.mk
-include tests/fuzz/fuzz.mk
-include demo/demo.mk
include deploy/install.mk

lint:
	clang-format --dry-run --Werror common/*.[ch] terminator/*.[ch] issuer/*.[ch]
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance --inline-suppr -Icommon common terminator issuer

clean:
	rm -rf build bin
