# shoal — build, test and demo. Run as root on Debian: make demo, make test.
GO       ?= go
PKG      := github.com/shoal-edge/shoal
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X $(PKG)/cmd.version=$(VERSION) -X $(PKG)/cmd.commit=$(COMMIT)
# urfave_cli_no_docs drops the CLI library's man-page generator (and its
# markdown parser): every process of the binary pays for package init.
GOTAGS   := urfave_cli_no_docs
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -tags $(GOTAGS) -ldflags "$(LDFLAGS)"
# Debian packages the tests use: a real image made by other tools, and
# runtimes to compare against in benchmarks; qemu-user-static runs the
# arm64 tests on this amd64 host. The e2e tests' Debian image (redis,
# nginx, mosquitto) is made from packages apt downloads, never installs, on
# the host (about 36 MB, once), with dpkg, tar and unshare, which every
# Debian has; it is kept in /var/cache/shoal-test.
TEST_DEBS := umoci skopeo busybox-static qemu-user-static

.PHONY: all build cross monitor-prog test test-arm64 test-deps lint demo demo-stop bench clean

all: build

# The container monitor is a small program of its own that shoal embeds
# (runtime/monitor): built for the target GOARCH before shoal itself.
monitor-prog:
	$(GO) generate ./runtime/monitor

build: monitor-prog
	$(GOBUILD) -o bin/shoal .

cross:
	GOOS=linux GOARCH=amd64 $(GO) generate ./runtime/monitor
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/shoal-linux-amd64 .
	GOOS=linux GOARCH=arm64 $(GO) generate ./runtime/monitor
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/shoal-linux-arm64 .
	GOOS=linux GOARCH=arm GOARM=7 $(GO) generate ./runtime/monitor
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/shoal-linux-armv7 .
	GOOS=linux GOARCH=riscv64 $(GO) generate ./runtime/monitor
	GOOS=linux GOARCH=riscv64 $(GOBUILD) -o bin/shoal-linux-riscv64 .

test-deps:
	@scripts/debs.sh $(TEST_DEBS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: test-deps lint monitor-prog
	SHOAL_TEST_STRICT=1 $(GO) test -count=1 -timeout 8m ./...
	@$(MAKE) --no-print-directory test-arm64

# The store and cluster tests again as linux/arm64 binaries under qemu-user,
# so the arm64 builds of bbolt, Raft, TLS and the syscall layer run. -exec
# names the emulator: binfmt_misc need not be registered on the host. They run
# after the amd64 tests, not beside them, so that the Raft tests' timeouts do
# not share the two cores with them.
test-arm64: test-deps
	GOARCH=arm64 $(GO) generate ./runtime/monitor
	SHOAL_TEST_STRICT=1 CGO_ENABLED=0 GOARCH=arm64 $(GO) test -exec qemu-aarch64-static -count=1 -timeout 5m ./store/... ./cluster/...

bench: build test-deps
	@scripts/debs.sh crun runc
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench 'OneShotStart|CrashToRunning' -benchtime 30x -timeout 20m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench PerContainerOverhead -benchtime 3x -timeout 10m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench DaemonIdle -benchtime 1x -timeout 10m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench 'ClusterJoin|ClusterFailover' -benchtime 20x -timeout 20m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench ClusterFailover -benchtime 10x -timeout 10m ./bench/ -args -failover-powerloss
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench ClusterApply -benchtime 2000x -timeout 10m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench ClusterIdle -benchtime 1x -timeout 10m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench ClusterBurst -benchtime 1x -timeout 40m ./bench/
	SHOAL_BENCH_BIN=$(CURDIR)/bin/shoal $(GO) test -run '^$$' -bench ClusterScale -benchtime 1x -timeout 20m ./bench/
	$(GO) test -run '^$$' -bench . -benchtime 20x ./e2e/

demo: build
	@scripts/demo.sh

demo-stop:
	@scripts/demo.sh stop

clean:
	rm -rf bin runtime/monitor/progbin/*/shoal-monitor
