# libFuzzer targets (`make fuzz`). Every tests/fuzz/fuzz_*.c is one target; adding a target is
# dropping in the file. Its header comments say what it links, read here and by run.sh:
#   // fuzz-sources: terminator/http.c common/name.c    sources compiled in beside the target
#   // fuzz-libs: -lsodium                                libraries, if the sources need any
#   // fuzz-dict: tests/fuzz/http.dict                    an optional libFuzzer dictionary
# The sources and libs lines may use the Makefile's variables, e.g. `// fuzz-libs: $(WOLFSSL_LIBS)`.
# The seed corpus is tests/fuzz/corpus/<target>/; new inputs go to build/fuzz/corpus/<target>/
# (`make fuzz-merge` folds them, minimized, into the seeds) and crashes to build/fuzz/crashes/.
#   make fuzz [FUZZ_SECONDS=30] [FUZZ_TARGETS="fuzz_http_request fuzz_proxy_v2"]
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= $(sort $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c))))
FUZZ_DIR     := build/fuzz
FUZZ_CFLAGS   = -std=gnu11 -Wall -Wextra -Wno-unused-parameter -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -Icommon -Iterminator -Iissuer -Itests/unit \
	-Itests/unit/terminator $(PG_CFLAGS) $(WOLFSSL_CFLAGS) -include wolfssl/options.h
FUZZ_HEADERS := $(wildcard common/*.h terminator/*.h issuer/*.h tests/unit/*/*.h)

fuzz_field = $(shell sed -n 's|^// $(2):[[:space:]]*||p' tests/fuzz/$(1).c)

define FUZZ_RULE
$(FUZZ_DIR)/bin/$(1): tests/fuzz/$(1).c $(call fuzz_field,$(1),fuzz-sources) $(FUZZ_HEADERS) tests/fuzz/fuzz.mk
	@mkdir -p $$(@D)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -o $$@ tests/fuzz/$(1).c $(call fuzz_field,$(1),fuzz-sources) $(call fuzz_field,$(1),fuzz-libs)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_RULE,$(t))))

.PHONY: fuzz-build fuzz-merge
fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/bin/%)

fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-merge: fuzz-build
	@tests/fuzz/run.sh --merge 0 $(FUZZ_TARGETS)
