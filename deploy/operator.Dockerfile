# syntax=docker/dockerfile:1
# ts-cgnat-operator: NativeAOT binary on the .NET chiseled runtime-deps image (distroless: no shell,
# no package manager, non-root user "app", uid 1654).
#
#   docker build -f deploy/operator.Dockerfile -t ts-cgnat-operator:0.1.0 .   (from the repository root)
#
# Base images are pinned by tag. To pin by digest as well, look each one up where the registry is
# reachable and append it to the tag:
#   docker buildx imagetools inspect mcr.microsoft.com/dotnet/runtime-deps:10.0.12-noble-chiseled
#   FROM mcr.microsoft.com/dotnet/runtime-deps:10.0.12-noble-chiseled@sha256:<digest>
# (The development machines have no registry access, so no digest is written here.)

FROM mcr.microsoft.com/dotnet/sdk:10.0.401-noble AS build
# NativeAOT links with the platform toolchain (clang) and needs the zlib headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Directory.Build.props .editorconfig ./
COPY src/ src/
ARG TARGETARCH
RUN --mount=type=cache,id=nuget,target=/root/.nuget/packages \
    rid="linux-$([ "$TARGETARCH" = arm64 ] && echo arm64 || echo x64)" \
 && dotnet publish src/Operator/Operator.csproj -c Release -r "$rid" \
      -p:PublishAot=true -p:StripSymbols=true -o /out \
 && rm -f /out/*.dbg

# Same Ubuntu 24.04 as the SDK image, so the binary's glibc matches. Chiseled runtime-deps carries
# glibc, OpenSSL and CA certificates, which is all a NativeAOT binary with invariant globalization needs.
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0.12-noble-chiseled
COPY --from=build /out/ts-cgnat-operator /usr/local/bin/ts-cgnat-operator
# Numeric, so that the pod's runAsNonRoot can be verified (charts/ts-cgnat-operator sets 1654 too).
USER 1654:1654
ENTRYPOINT ["/usr/local/bin/ts-cgnat-operator"]
CMD ["run", "--leader-elect"]
