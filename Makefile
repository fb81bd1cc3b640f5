# ngx_http_device_pairing_module — build, run, test, bench.
#   make run    install dependencies, build, start nginx with conf.example
#   make test   unit tests, integration tests (t/), browser test, ASan run
SHELL := /bin/bash
.DEFAULT_GOAL := build

BUILD      := $(CURDIR)/build
NGX_SRC    := /usr/share/nginx/src
NGINX      ?= /usr/sbin/nginx
MODULE     := $(BUILD)/nginx/objs/ngx_http_device_pairing_module.so
ASAN_MODULE:= $(BUILD)/nginx-asan/objs/ngx_http_device_pairing_module.so
UBSAN_MODULE:= $(BUILD)/nginx-ubsan/objs/ngx_http_device_pairing_module.so
# make test's sanitizer run: ASan and UBSan in one build, one pass over t/.
SANITIZE_MODULE:= $(BUILD)/nginx-sanitize/objs/ngx_http_device_pairing_module.so
SANITIZE_nginx-asan  := --with-cc-opt="-fsanitize=address -fno-omit-frame-pointer" --with-ld-opt="-fsanitize=address"
SANITIZE_nginx-ubsan := --with-cc-opt="-fsanitize=undefined -fno-omit-frame-pointer" --with-ld-opt="-fsanitize=undefined"
SANITIZE_nginx-sanitize := --with-cc-opt="-fsanitize=address,undefined -fno-omit-frame-pointer" \
                           --with-ld-opt="-fsanitize=address,undefined"
CORE_SRCS  := $(wildcard src/core/*.cpp src/core/persist/*.cpp)
UNIT_SRCS  := $(wildcard t/unit/*.cpp)
CORE_HDRS  := $(wildcard src/core/*.h src/core/persist/*.h)
# The pairing page's files and the fleet's Lua script, embedded at build time
# (with the page's CSP hashes) into one generated header.
ASSETS     := $(filter-out %.sh,$(wildcard src/assets/*))
ASSETS_H   := $(BUILD)/gen/dp_assets.h
ALL_SRCS   := $(CORE_SRCS) $(CORE_HDRS) $(wildcard src/ngx/*.cpp src/ngx/*.h) config $(ASSETS_H)
VERSION    := 0.3.0
JOBS       := $(shell nproc)
# The package's maintainer (Debian's Maintainer field and changelog).
MAINTAINER ?= ngx_http_device_pairing_module developers <maintainers@device-pairing.dev>
# What building and running need (make run); the tests and the bench add theirs.
RUN_PKGS   := nginx nginx-dev libssl-dev libjansson-dev libqrencode-dev libhiredis-dev zlib1g-dev g++ make openssl
TEST_PKGS  := libgtest-dev perl python3 python3-cryptography python3-jwcrypto chromium zbar-tools librsvg2-bin valgrind \
              clang-14 libfuzzer-14-dev libclang-rt-14-dev curl bsdutils dpkg-dev python3-prometheus-client \
              redis-server lintian golang-go golang-golang-x-mod-dev
BENCH_PKGS := wrk python3 redis-server
CXXFLAGS   := -std=gnu++17 -O2 -g -Wall -Wextra -Wno-unused-parameter -Werror -Isrc -I$(BUILD)/gen
LIBS       := -lcrypto -ljansson -lqrencode -lz
# The pairing log's verifier (tools/verify-log), on Debian's Go packages.
VERIFY_LOG := $(BUILD)/verify-log
GO_ENV     := GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=$(BUILD)/gocache GOFLAGS=

.PHONY: deps deb test-deb banner build asan ubsan run test unit integration test-asan test-ubsan test-sanitize test-valgrind browser-deps bench soak verify-log \
        device-key clean fuzz fuzz-smoke

# Installs the Debian packages of a list that are missing.
define install_pkgs
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

$(ASSETS_H): $(ASSETS) src/assets/embed.sh
	sh src/assets/embed.sh $@

deps: $(BUILD)/.deps
$(BUILD)/.deps: Makefile
	$(call install_pkgs,$(RUN_PKGS))
	@mkdir -p $(BUILD) && touch $@
$(BUILD)/.test-deps: $(BUILD)/.deps Makefile
	$(call install_pkgs,$(TEST_PKGS))
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@touch $@
$(BUILD)/.bench-deps: $(BUILD)/.deps Makefile
	$(call install_pkgs,$(BENCH_PKGS))
	@touch $@

browser-deps: $(BUILD)/.browser-deps
$(BUILD)/.browser-deps: $(BUILD)/.test-deps t/browser/package.json
	cd t/browser && npm install --no-audit --no-fund --silent
	@touch $@

# nginx's own build, out of tree: a copy of Debian's nginx-dev source tree,
# configured with Debian's flags so the module's binary signature matches.
$(BUILD)/%/objs/Makefile: config | $(BUILD)/.deps
	rm -rf $(BUILD)/$*
	cp -r $(NGX_SRC) $(BUILD)/$*
	cd $(BUILD)/$* && source ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --add-dynamic-module=$(CURDIR) $(SANITIZE_$*) >/dev/null

$(MODULE): $(BUILD)/nginx/objs/Makefile $(ALL_SRCS)
	$(MAKE) -j$(JOBS) -C $(BUILD)/nginx -f objs/Makefile modules >/dev/null

$(ASAN_MODULE): $(BUILD)/nginx-asan/objs/Makefile $(ALL_SRCS)
	$(MAKE) -j$(JOBS) -C $(BUILD)/nginx-asan -f objs/Makefile modules >/dev/null

$(UBSAN_MODULE): $(BUILD)/nginx-ubsan/objs/Makefile $(ALL_SRCS)
	$(MAKE) -j$(JOBS) -C $(BUILD)/nginx-ubsan -f objs/Makefile modules >/dev/null
$(SANITIZE_MODULE): $(BUILD)/nginx-sanitize/objs/Makefile $(ALL_SRCS)
	$(MAKE) -j$(JOBS) -C $(BUILD)/nginx-sanitize -f objs/Makefile modules >/dev/null

build: $(MODULE)
asan: $(ASAN_MODULE)
ubsan: $(UBSAN_MODULE)

# Each source compiles on its own (make -j); -MMD keeps the header
# dependencies exact.
UNIT_OBJS  := $(patsubst %.cpp,$(BUILD)/unit-obj/%.o,$(CORE_SRCS) $(UNIT_SRCS))
$(BUILD)/unit-obj/%.o: %.cpp $(BUILD)/.test-deps $(ASSETS_H)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c -o $@ $<
-include $(UNIT_OBJS:.o=.d)
$(BUILD)/unit_tests: $(UNIT_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $(UNIT_OBJS) $(LIBS) -lhiredis -lgtest -lgtest_main -pthread

unit: $(BUILD)/.test-deps
	$(MAKE) -j$(JOBS) $(BUILD)/unit_tests
	$(BUILD)/unit_tests --gtest_brief=1

integration: $(MODULE) browser-deps $(VERIFY_LOG)
	DP_MODULE=$(MODULE) prove -j4 -I t/lib t/

test-asan: $(ASAN_MODULE) browser-deps
	DP_MODULE=$(ASAN_MODULE) DP_ASAN=1 prove -j4 -I t/lib t/

test-valgrind: $(MODULE) browser-deps
	DP_MODULE=$(MODULE) DP_VALGRIND=1 prove -I t/lib t/

# The whole t/ again with an UndefinedBehaviorSanitizer build; its reports
# go to files in each test's prefix, which every .t checks.
test-ubsan: $(UBSAN_MODULE) browser-deps
	DP_MODULE=$(UBSAN_MODULE) DP_UBSAN=1 prove -j4 -I t/lib t/
test-sanitize: $(SANITIZE_MODULE) browser-deps $(VERIFY_LOG)
	DP_MODULE=$(SANITIZE_MODULE) DP_ASAN=1 DP_UBSAN=1 prove -j4 -I t/lib t/

# libFuzzer harnesses (t/fuzz/*.cpp) over the core, built by clang with
# ASan + UBSan. fuzz-smoke (in make test) replays the seed corpus and runs a
# fixed number of new inputs; make fuzz runs each for FUZZ_SECONDS.
FUZZERS      := $(basename $(notdir $(wildcard t/fuzz/*.cpp)))
FUZZ_FLAGS   := -std=gnu++17 -g -O1 -Isrc -I$(BUILD)/gen -It/unit -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS    := $(patsubst src/%.cpp,$(BUILD)/fuzz/obj/%.o,$(CORE_SRCS))
FUZZ_RUNS    ?= 20000
FUZZ_SECONDS ?= 300
$(BUILD)/fuzz/obj/%.o: src/%.cpp $(CORE_HDRS) $(BUILD)/.test-deps $(ASSETS_H)
	@mkdir -p $(dir $@)
	clang++-14 $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
$(BUILD)/fuzz/%: t/fuzz/%.cpp t/fuzz/fuzz.h t/unit/memory_store.h $(FUZZ_OBJS)
	clang++-14 $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(LIBS)
.SECONDARY: $(FUZZ_OBJS)
fuzz-smoke: $(BUILD)/.test-deps
	$(MAKE) -j$(JOBS) $(addprefix $(BUILD)/fuzz/,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  mkdir -p $(BUILD)/fuzz/corpus/$$f && \
	  $(BUILD)/fuzz/$$f -runs=$(FUZZ_RUNS) -seed=1 -artifact_prefix=$(BUILD)/fuzz/$$f- $(BUILD)/fuzz/corpus/$$f t/fuzz/corpus/$$f 2>$(BUILD)/fuzz/$$f.log \
	    || { tail -40 $(BUILD)/fuzz/$$f.log; exit 1; }; \
	  echo "fuzz $$f: $$(grep -o 'stat::number_of_executed_units: *[0-9]*' $(BUILD)/fuzz/$$f.log | grep -o '[0-9]*$$' || echo $(FUZZ_RUNS)) inputs, no finding"; \
	done
fuzz: $(addprefix $(BUILD)/fuzz/,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  mkdir -p $(BUILD)/fuzz/corpus/$$f && \
	  $(BUILD)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/$$f- $(BUILD)/fuzz/corpus/$$f t/fuzz/corpus/$$f \
	    2>$(BUILD)/fuzz/$$f.log || { tail -40 $(BUILD)/fuzz/$$f.log; exit 1; }; \
	  echo "fuzz $$f: $$(grep -o 'stat::number_of_executed_units: *[0-9]*' $(BUILD)/fuzz/$$f.log | grep -o '[0-9]*$$') executions," \
	       "$$(grep -o 'stat::average_exec_per_sec: *[0-9]*' $(BUILD)/fuzz/$$f.log | grep -o '[0-9]*$$')/s, no finding"; \
	done

# The Debian package, the way Debian ships nginx modules (libnginx-mod-*).
DEB := $(BUILD)/deb/libnginx-mod-http-device-pairing_$(VERSION)_amd64.deb
deb: $(DEB)
DOC_DIR := $(BUILD)/deb/root/usr/share/doc/libnginx-mod-http-device-pairing
$(DEB): $(MODULE) packaging/DEBIAN/control.in packaging/DEBIAN/postinst packaging/DEBIAN/postrm packaging/mod-http-device-pairing.conf \
        packaging/copyright packaging/changelog.in Makefile
	rm -rf $(BUILD)/deb/root && mkdir -p $(BUILD)/deb/root/DEBIAN $(BUILD)/deb/root/usr/lib/nginx/modules \
	    $(BUILD)/deb/root/usr/share/nginx/modules-available $(DOC_DIR)
	sed 's/@VERSION@/$(VERSION)/; s/@MAINTAINER@/$(MAINTAINER)/' packaging/DEBIAN/control.in > $(BUILD)/deb/root/DEBIAN/control
	install -m 644 packaging/copyright $(DOC_DIR)/copyright
	sed 's/@VERSION@/$(VERSION)/; s/@MAINTAINER@/$(MAINTAINER)/' packaging/changelog.in | gzip -9n > $(DOC_DIR)/changelog.gz
	chmod 644 $(DOC_DIR)/changelog.gz
	install -m 755 packaging/DEBIAN/postinst packaging/DEBIAN/postrm $(BUILD)/deb/root/DEBIAN/
	install -m 644 -s $(MODULE) $(BUILD)/deb/root/usr/lib/nginx/modules/
	install -m 644 packaging/mod-http-device-pairing.conf $(BUILD)/deb/root/usr/share/nginx/modules-available/
	install -m 644 README.md $(BUILD)/deb/root/usr/share/doc/libnginx-mod-http-device-pairing/
	dpkg-deb --root-owner-group --build $(BUILD)/deb/root $@ >/dev/null

# lintian on the package (errors and warnings fail), then: installs it into
# Debian's nginx on this machine, pairs through the stock nginx.conf plus a
# site file, and removes it again.
test-deb: $(DEB) $(BUILD)/.test-deps
	lintian --fail-on error,warning $(DEB)
	t/deb/smoke.sh $(DEB)

test: unit fuzz-smoke integration test-sanitize test-deb

# The pairing log's verifier (tools/verify-log), built on Debian's copy of
# Go's sumdb/note and sumdb/tlog: t/25 runs it; auditors run
# make verify-log URL=https://gateway [TOKEN=t] [PIN=base64-key] [STATE=file] [ENTRIES=1]
$(VERIFY_LOG): tools/verify-log/main.go | $(BUILD)/.test-deps
	cd tools/verify-log && $(GO_ENV) go build -o $@ .
verify-log: $(VERIFY_LOG)
	@test -n "$(URL)" || { echo "usage: make verify-log URL=https://gateway [TOKEN=t] [PIN=key] [STATE=file] [ENTRIES=1]"; exit 2; }
	$(VERIFY_LOG) -url "$(URL)" $(if $(TOKEN),-token "$(TOKEN)") $(if $(PIN),-pin "$(PIN)") $(if $(STATE),-state "$(STATE)") $(if $(ENTRIES),-entries)

# Start nginx in the foreground with conf.example; the prefix is this folder.
run: $(MODULE)
	@mkdir -p $(BUILD)/run && touch $(BUILD)/run/device-keys
	@echo "device pairing: nginx on http://127.0.0.1:3001 (Ctrl-C stops it)"
	$(NGINX) -p $(CURDIR)/ -c conf.example -g 'daemon off; user root;' -e stderr

# The pairing URL, QR and OTP of the nginx that make run started, again.
banner:
	@cat $(BUILD)/run/device-pairing.state.banner

# make device-key ACCOUNT=alice: print a new key once, keep only its hash.
KEYS ?= $(BUILD)/run/device-keys
device-key:
	@test -n "$(ACCOUNT)" || { echo "usage: make device-key ACCOUNT=name [KEYS=path]"; exit 2; }
	@mkdir -p $(dir $(KEYS)); key="dk_$$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=')"; \
	printf '%s %s\n' "$(ACCOUNT)" "$$(printf %s "$$key" | sha256sum | cut -d' ' -f1)" >> $(KEYS); \
	echo "device key for $(ACCOUNT) (shown once, keep it safe): $$key"; \
	echo "its SHA-256 was appended to $(KEYS); reload nginx to use it"

bench: $(MODULE) $(BUILD)/make_state $(BUILD)/.bench-deps
	/usr/bin/python3 bench/run.py

soak: $(MODULE)
	DP_MODULE=$(MODULE) DP_SOAK_RELOADS=1000 prove -I t/lib t/08-reload-soak.t

clean:
	rm -rf $(BUILD)

$(BUILD)/make_state: bench/make_state.cpp $(CORE_SRCS) $(CORE_HDRS) $(ASSETS_H)
	$(CXX) $(CXXFLAGS) -o $@ bench/make_state.cpp $(CORE_SRCS) $(LIBS)
