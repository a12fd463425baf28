# Every entry point of the project; CI calls these.
GO        ?= go
BIN       := bin/cairn
PKGS      := ./...
FUZZTIME  ?= 30s
STATICCHECK_VERSION := v0.8.2

.PHONY: build test test-short lint demo minio bench bench-toolchains fuzz clean up down compose-test

build:
	$(GO) build -o $(BIN) ./cmd/cairn
	$(GO) build -o bin/cairn-writer ./cmd/cairn-writer

# Builds MinIO once into .tools/ (from the Go module proxy), starts it on a
# free loopback port, runs every test against it (none may skip), stops it.
# Race builds keep pack arenas on the heap (the detector cannot see mapped
# memory), so the arena and uploader tests run once more without -race, on
# the mapped arenas users get.
test: build
	PATH="$(CURDIR)/.tools/bin:$$PATH" scripts/with-minio.sh $(GO) test -count=1 -race -timeout 20m $(PKGS)
	$(GO) test -count=1 -run 'Arena|Uploader' ./repo
	CGO_ENABLED=0 $(GO) test -count=1 -run 'Zstd|Blob|Verify|Uploader' ./repo

# Unit tests without MinIO; the S3 cases skip.
test-short:
	$(GO) test -count=1 $(PKGS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)
	@# Laptops: the embedded mode must build for macOS and FreeBSD too
	@# (vetted here, not run; cgo is off in a cross build).
	GOOS=darwin GOARCH=arm64 $(GO) vet $(PKGS)
	GOOS=freebsd GOARCH=amd64 $(GO) vet $(PKGS)
	scripts/check-layers.sh
	GOFLAGS=-mod=mod $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

demo: build
	scripts/demo.sh $(BIN)

minio:
	scripts/minio.sh

# Micro and whole-snapshot benchmarks (go test -bench; BENCH=regexp
# narrows), then `cairn bench` side by side with restic when installed, on
# a synthetic tree, local folders and a MinIO started for the run. The
# report lands in bench-out/.
BENCH ?= .
BENCHFLAGS ?= --reps 3
bench: build
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./chunk ./repo ./agent
	scripts/with-minio.sh sh -c 'AWS_ACCESS_KEY_ID=$$CAIRN_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$$CAIRN_TEST_S3_SECRET_KEY \
		$(BIN) bench --s3 "$$CAIRN_TEST_S3_ENDPOINT" --out bench-out $(BENCHFLAGS)'

# The same on ten real Go toolchain releases (fetched once, ~2.6 GB).
bench-toolchains:
	scripts/bench-toolchains.sh --out bench-out/toolchains $(BENCHFLAGS)

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@for t in FuzzDecodeTree FuzzDecodePackHeader FuzzParsePackTrailer FuzzDecodeIndex FuzzDecodeSnapshot FuzzBlobPayload FuzzOpenKeyObject; do \
		echo "== $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./repo || exit 1; done

# The demo fleet (MinIO, coordinator, three agents, writers). Needs the
# minio/minio and golang images from a registry.
up:
	docker-compose up -d --build
down:
	docker-compose down

# The same stack tested for real with images built here (FROM scratch).
compose-test:
	scripts/compose-test.sh

clean:
	rm -rf bin
