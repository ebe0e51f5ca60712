# bench tools (included by the top Makefile). `make bench` is the quick run (< 5 min, 1,000 names);
# `make bench-full` runs every scenario with the large corpora, then bench/million.sh. Results land in bench/results/.
BENCH_OUT    := build/bench
BENCH_CFLAGS := $(CSTD) $(WARN) -O2 -g -D_GNU_SOURCE
BENCH_TOOLS  := $(BENCH_OUT)/load $(BENCH_OUT)/backend $(BENCH_OUT)/certgen

.PHONY: bench-tools
bench-tools: $(BENCH_TOOLS)

# The load generator links the same wolfSSL asm build as the terminator, against its options.h.
$(BENCH_OUT)/load: bench/load.c $(WOLFSSL_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(WOLFSSL_CFLAGS) -include wolfssl/options.h -o $@ bench/load.c $(WOLFSSL_LIBS) -lpthread -lm

$(BENCH_OUT)/backend: bench/backend.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lpthread

# libcrypto (from libssl-dev, already pulled in by libcurl4-openssl-dev): our wolfSSL build cannot
# write subjectAltName extensions.
$(BENCH_OUT)/certgen: bench/certgen.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lcrypto

# The terminator and issuer are built when they can be; bench/run marks the terminator "not
# available" when they cannot.
bench: $(BENCH_TOOLS)
	-@$(MAKE) --no-print-directory -j2 bin/terminator bin/issuer
	bench/run --quick

bench-full: $(BENCH_TOOLS)
	-@$(MAKE) --no-print-directory -j2 bin/terminator bin/issuer
	bench/run --full
	bench/million.sh
