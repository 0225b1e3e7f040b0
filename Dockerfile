# The fazt image: one static binary (pure Go, no cgo) on a distroless base
# that runs as a non-root user. docker-compose.yml runs three of it as a
# cluster. Build: docker build -t fazt .
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -buildvcs=false -ldflags="-s -w" -o /out/fazt ./cmd/fazt
RUN mkdir -p /out/data /out/certs

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fazt /fazt
COPY --from=build --chown=65532:65532 /out/data /data
# The cluster's TLS files (docker-compose.yml's certs volume), written by
# the non-root user.
COPY --from=build --chown=65532:65532 /out/certs /certs
USER 65532:65532
ENV FAZT_DATA=/data FAZT_ADDR=0.0.0.0:8080
VOLUME /data
EXPOSE 8080 6222
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/fazt", "cluster", "ready", "--addr", "http://127.0.0.1:8080"]
ENTRYPOINT ["/fazt"]
CMD ["serve"]
