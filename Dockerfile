# The cairn image users build: `docker-compose up --build` or `make up`.
# Static binaries on an empty base; the CA bundle lets cairn reach S3 over
# HTTPS.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# cgo for the C zstd encoder (a third less CPU per backup), linked
# statically; osusergo and netgo keep glibc's NSS out of the binary.
RUN CGO_ENABLED=1 go build -trimpath -tags osusergo,netgo -ldflags "-s -w -linkmode external -extldflags -static" -o /out/cairn ./cmd/cairn && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/cairn-writer ./cmd/cairn-writer && \
    mkdir -p /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/cairn /out/cairn-writer /
COPY --from=build /out/tmp /tmp
ENV HOME=/state CAIRN_STATE_DIR=/state
ENTRYPOINT ["/cairn"]
