# motcua: build, test, run. `make help` lists the targets.
SHELL := /bin/bash
SERVICES := intake routing interconnect payment postal notify
PKGS := libuv libzmq libczmq libpq libh2o jansson libsodium libprotobuf-c libcurl openssl

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build/san
OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build/release
OPT := -O2 -g
endif

CC ?= cc
# `make V=1` shows full command lines.
ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = printf '  %-6s %s\n' $(1) $(2);
endif
CPPFLAGS += -D_GNU_SOURCE -Icommon -I$(BUILD)/gen
CFLAGS := -std=c11 -Wall -Wextra -Wno-missing-field-initializers $(OPT) -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDFLAGS += $(OPT)
LDLIBS = $(PKG_LIBS) -lm

PROTOS := $(wildcard proto/motcua/*.proto)
PROTO_C := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC)) $(PROTO_C:.c=.o)
COMMON_SQL := $(wildcard common/sql/*.sql)
LIB := $(BUILD)/libmotcua.a
BINS := $(addprefix $(BUILD)/bin/motcua-,$(SERVICES)) $(BUILD)/bin/motcuactl $(BUILD)/bin/bus-peer
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT := $(BUILD)/bin/unit-tests

.PHONY: all deps test unit system run up down bench format format-check clean help compose-check \
	fuzz fuzz-build fuzz-targets
.DEFAULT_GOAL := all
# Generated sources (protobuf, embedded SQL) are kept, not deleted as intermediates.
.SECONDARY: $(PROTO_C) $(PROTO_C:.c=.h) $(BUILD)/gen/common_sql.c $(BUILD)/gen/probe_sql.c \
	$(foreach s,$(SERVICES),$(BUILD)/gen/$(s)_sql.c)

all: deps-quiet $(BINS) $(UNIT)

help:
	@echo "make            build the six services, motcuactl and the unit tests (build/release)"
	@echo "make deps       install missing Debian packages (apt-get)"
	@echo "make test       sanitizer build + all tests (unit, fuzz, system, crash); ends with 'N passed, N failed'"
	@echo "make fuzz       run every libFuzzer target for FUZZ_SECONDS (60) each (build/fuzz)"
	@echo "make run        start PostgreSQL in ./var, the services and the sandbox; follow logs; Ctrl-C stops"
	@echo "make up/down    the same in the background / stop everything"
	@echo "make bench      measure the bus and intake; writes bench/RESULTS.md"
	@echo "make format     clang-format the C sources"

deps:
	@sh mk/deps.sh

# Installing is skipped when pkg-config already finds everything.
deps-quiet:
	@pkg-config --exists $(PKGS) && command -v protoc-c >/dev/null && \
	  command -v /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || sh mk/deps.sh

# ---- generated code ----
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto $(PROTOS)
	@mkdir -p $(BUILD)/gen
	$(Q)$(call say,PROTO,$<)protoc-c --c_out=$(BUILD)/gen -Iproto $<

# Migrations embedded into the binaries: common/sql (bus tables), each service's own,
# and the test peer's (tests/bus_peer/migrations).
sql_dir = $(if $(filter common,$(1)),common/sql,$(if $(filter probe,$(1)),tests/bus_peer/migrations,services/$(1)/migrations))
$(BUILD)/gen/%_sql.c: mk/embed_sql.sh
	@mkdir -p $(BUILD)/gen
	$(Q)$(call say,SQL,$@)sh mk/embed_sql.sh $* $(sort $(wildcard $(call sql_dir,$*)/*.sql)) > $@

.SECONDEXPANSION:
$(BUILD)/gen/common_sql.c: $(COMMON_SQL)
$(foreach s,$(SERVICES),$(eval $(BUILD)/gen/$(s)_sql.c: $$(wildcard services/$(s)/migrations/*.sql)))
$(BUILD)/gen/probe_sql.c: $(wildcard tests/bus_peer/migrations/*.sql)

# ---- objects ----
$(BUILD)/obj/%.o: %.c | $(PROTO_C:.c=.h)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(Q)$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(LIB): $(COMMON_OBJ) $(BUILD)/gen/common_sql.o
	@rm -f $@
	$(Q)$(call say,AR,$@)ar rcs $@ $^

define service_rule
$(BUILD)/bin/motcua-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard services/$(1)/*.c)) $(BUILD)/gen/$(1)_sql.o $(LIB)
	@mkdir -p $$(dir $$@)
	$$(Q)$$(call say,LINK,$$@)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

$(BUILD)/bin/motcuactl: $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/motcuactl/*.c)) $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/bus-peer: $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/bus_peer/*.c)) $(BUILD)/gen/probe_sql.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(UNIT): $(patsubst %.c,$(BUILD)/obj/%.o,$(UNIT_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LINK,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# ---- tests ----
test: deps-quiet
	@$(MAKE) --no-print-directory SAN=1 all
	@$(MAKE) --no-print-directory fuzz-build
	@MOTCUA_BUILD=$(CURDIR)/build/san bash tests/run.sh

unit: all
	@$(UNIT)

# ---- fuzzing (libFuzzer, clang) ----
# The targets (tests/fuzz/fuzz_*.c) link a copy of common/ (and the service files they
# fuzz) compiled by clang with the same sanitizers into build/fuzz: a second run of
# this Makefile with BUILD=build/fuzz reuses the generated-code and object rules.
FUZZ_DIR := build/fuzz
FUZZ_CC ?= clang
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=undefined
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_NAMES))
# Service files compiled into the targets: they depend on no running service.
FUZZ_SERVICE_SRC := services/payment/vnpay.c services/intake/submit.c
FUZZ_SECONDS ?= 60

fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null || sh mk/deps.sh
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_DIR) CC=$(FUZZ_CC) OPT="$(FUZZ_OPT)" fuzz-targets

fuzz-targets: $(FUZZ_BINS)

FUZZ_SERVICE_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(FUZZ_SERVICE_SRC))
FUZZ_INC := -Itests/fuzz $(addprefix -I,$(sort $(dir $(FUZZ_SERVICE_SRC))))

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/request.c tests/fuzz/fuzz.h $(FUZZ_SERVICE_OBJ) $(LIB)
	$(Q)$(call say,FUZZ,$@)$(CC) $(CPPFLAGS) $(FUZZ_INC) $(filter-out -MMD -MP,$(CFLAGS)) \
	  $(PKG_CFLAGS) -fsanitize=fuzzer -o $@ $< tests/fuzz/request.c $(FUZZ_SERVICE_OBJ) $(LIB) $(LDLIBS)

# Each target from its corpus (tests/fuzz/corpus/<name>) for FUZZ_SECONDS; new inputs
# go to build/fuzz/corpus/<name>, crashes to build/fuzz/crashes/.
fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

# ---- running ----
run: deps-quiet all
	@bash deploy/run.sh run
up: deps-quiet all
	@bash deploy/run.sh up
down:
	@bash deploy/run.sh down

bench: deps-quiet all
	@bash bench/run.sh

compose-check:
	docker-compose -f docker-compose.yml config -q

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
