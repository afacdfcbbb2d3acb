# SPDX-License-Identifier: MIT
# One Makefile, one build/ tree. `make V=1` shows the commands.

.DELETE_ON_ERROR:
.SECONDARY:
.DEFAULT_GOAL := all

BUILD   ?= build
CLANG   ?= clang
CC      ?= gcc
BPFTOOL ?= bpftool
ARCH    := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKGS := libbpf jansson libmnl libcrypto libmicrohttpd hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# clang -target bpf does not search the host's multiarch include dirs; add them
# after its own, as libbpf-bootstrap does, so <asm/...> resolves.
CLANG_BPF_SYS_INCLUDES := $(shell $(CLANG) -v -E - </dev/null 2>&1 \
	| sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }')

BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Wextra -Werror \
	-Wno-unused-parameter -Iinclude -Ibpf $(CLANG_BPF_SYS_INCLUDES)
CFLAGS ?= -g -O2
override CFLAGS += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Iuserspace -I$(BUILD)/skel $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -lelf -lz

BPF_STEMS := sock_lb sockops xdp
BPF_OBJS  := $(patsubst %,$(BUILD)/bpf/%.bpf.o,$(BPF_STEMS))
SKELS     := $(patsubst %,$(BUILD)/skel/%.skel.h,$(BPF_STEMS))

LIB_SRCS := $(wildcard userspace/lib/*.c)
LIB_OBJS := $(patsubst userspace/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIBSLUICE := $(BUILD)/libsluice.a

CTL_SRCS := $(wildcard userspace/sluicectl/*.c)
CTL_OBJS := $(patsubst userspace/%.c,$(BUILD)/obj/%.o,$(CTL_SRCS))
AGENT_SRCS := $(filter-out userspace/sluiced/main.c,$(wildcard userspace/sluiced/*.c))
AGENT_OBJS := $(patsubst userspace/%.c,$(BUILD)/obj/%.o,$(AGENT_SRCS))
# The agent's modules, as a library the unit tests link too.
LIBAGENT := $(BUILD)/libsluiced.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
BPF_TEST_SRCS := $(wildcard tests/bpf/test_*.c)
BPF_TEST_BINS := $(patsubst tests/bpf/%.c,$(BUILD)/tests/bpf/%,$(BPF_TEST_SRCS))

BINS := $(BUILD)/sluicectl $(BUILD)/sluiced

.PHONY: all clean deps test test-unit test-e2e demo bench install
all: $(BPF_OBJS) $(SKELS) $(BINS)

deps:
	$(Q)scripts/install-deps.sh

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/lib/*.h) $(wildcard include/sluice/*.h)
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  BPF     $@"
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp.o
	$(Q)$(BPFTOOL) gen object $@ $@.tmp.o
	$(Q)rm -f $@.tmp.o

$(BUILD)/skel/%.skel.h: $(BUILD)/bpf/%.bpf.o
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  SKEL    $@"
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(BUILD)/obj/%.o: userspace/%.c $(wildcard userspace/*/*.h) $(wildcard include/sluice/*.h) $(SKELS)
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIBSLUICE): $(LIB_OBJS)
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BUILD)/sluicectl: $(CTL_OBJS) $(LIBSLUICE)
	@[ "$(V)" = 1 ] || echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(LIBAGENT): $(AGENT_OBJS)
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BUILD)/sluiced: $(BUILD)/obj/sluiced/main.o $(LIBAGENT) $(LIBSLUICE)
	@[ "$(V)" = 1 ] || echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# Unit tests run against a second build of the libraries with AddressSanitizer
# and UndefinedBehaviorSanitizer: any finding fails the test.
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_LIBSLUICE := $(BUILD)/san/libsluice.a
SAN_LIBAGENT := $(BUILD)/san/libsluiced.a

$(BUILD)/san/obj/%.o: userspace/%.c $(wildcard userspace/*/*.h) $(wildcard include/sluice/*.h) $(SKELS)
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC/SAN  $@"
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(SAN_LIBSLUICE): $(patsubst $(BUILD)/obj/%,$(BUILD)/san/obj/%,$(LIB_OBJS))
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(SAN_LIBAGENT): $(patsubst $(BUILD)/obj/%,$(BUILD)/san/obj/%,$(AGENT_OBJS))
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BUILD)/tests/unit/%: tests/unit/%.c $(SAN_LIBAGENT) $(SAN_LIBSLUICE) $(wildcard userspace/*/*.h)
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC/SAN  $@"
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(SAN_LIBAGENT) $(SAN_LIBSLUICE) $(LDLIBS) -lcmocka -o $@

# BPF program tests (BPF_PROG_TEST_RUN on the real skeletons), built like the unit tests.
$(BUILD)/tests/bpf/%: tests/bpf/%.c $(SKELS) $(wildcard include/sluice/*.h)
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC/SAN  $@"
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(LDLIBS) -lcmocka -o $@

# libFuzzer on the registry parser (clang), with ASan and UBSan; seeds in tests/fuzz/corpus.
FUZZ_BINS := $(BUILD)/fuzz/fuzz_registry
$(BUILD)/fuzz/fuzz_registry: tests/fuzz/fuzz_registry.c userspace/lib/registry.c userspace/lib/addr.c \
		userspace/lib/bigmem.c \
		$(wildcard userspace/lib/*.h)
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  FUZZ    $@"
	$(Q)$(CLANG) -g -O1 -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuserspace $(PKG_CFLAGS) \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		$(filter %.c,$^) $(PKG_LIBS) -o $@

# demo, test and bench install what is missing first, then build in a fresh
# make, so that pkg-config and clang are asked only once they are there.
test: deps
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BINS) $(BPF_TEST_BINS) $(FUZZ_BINS)
	$(Q)scripts/run-tests.sh $(BUILD)

test-unit: all $(UNIT_BINS) $(BPF_TEST_BINS) $(FUZZ_BINS)
	$(Q)SL_ONLY=unit scripts/run-tests.sh $(BUILD)

test-e2e: all
	$(Q)SL_ONLY=e2e scripts/run-tests.sh $(BUILD)

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo.sh $(BUILD)

bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench.sh $(BUILD)

# For packagers: `make install DESTDIR=/tmp/pkg PREFIX=/usr`. The binaries go to sbin (root
# only); the unit's paths are rewritten for PREFIX and SYSCONFDIR. Configuration lives in
# SYSCONFDIR (/etc, not under PREFIX: the unit names /etc/default/sluiced), and an existing
# environment file is kept.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DATADIR    ?= $(PREFIX)/share/sluice
SYSCONFDIR ?= /etc

install: $(BINS)
	$(Q)install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR)/grafana \
		$(DESTDIR)$(DATADIR)/prometheus $(DESTDIR)$(SYSCONFDIR)/default $(DESTDIR)$(SYSCONFDIR)/sluice
	$(Q)install -m 0755 $(BINS) $(DESTDIR)$(SBINDIR)/
	$(Q)sed -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/etc/default/|$(SYSCONFDIR)/default/|g' \
		deploy/systemd/sluiced.service >$(DESTDIR)$(UNITDIR)/sluiced.service
	$(Q)chmod 0644 $(DESTDIR)$(UNITDIR)/sluiced.service
	$(Q)[ -e $(DESTDIR)$(SYSCONFDIR)/default/sluiced ] || \
		install -m 0644 deploy/systemd/sluiced.env $(DESTDIR)$(SYSCONFDIR)/default/sluiced
	$(Q)install -m 0644 deploy/grafana/sluice.json $(DESTDIR)$(DATADIR)/grafana/
	$(Q)install -m 0644 deploy/prometheus/sluice-rules.yml $(DESTDIR)$(DATADIR)/prometheus/

clean:
	$(Q)rm -rf $(BUILD)
