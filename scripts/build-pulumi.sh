#!/usr/bin/env bash
# Builds the Pulumi CLI from the Go module proxy at the version of the pinned @pulumi/pulumi into
# $1/bin, and pulumi-language-nodejs beside it when the proxy serves it. Cached: a finished build
# is reused.
#
# The language host module has no release tags, so it exists on the proxy only as a pseudo-version
# of the release commit. Proxies that serve tagged versions only refuse it; then this prints a
# notice and builds the CLI alone. Automation API inline programs (our tests, the demo) run
# without it; `pulumi up` in a project directory needs it.
#
# Why a wrapper module: pkg/v3's go.mod carries a local `replace ../sdk`, so `go install pkg@v`
# refuses it. The wrapper requires pkg/v3 and sdk/v3 at the same release and repeats pkg's
# module@version replaces (replaces of a dependency are ignored by Go).
set -euo pipefail

version=${PULUMI_VERSION:?PULUMI_VERSION (e.g. 3.248.0) must be set}
root=${1:?usage: build-pulumi.sh OUT_ROOT}
bin="$root/bin"
work="$root/build"

if [ -x "$bin/pulumi" ] && "$bin/pulumi" version 2>/dev/null | grep -qx "v$version"; then
  echo "pulumi v$version already built in $bin"
  [ -x "$bin/pulumi-language-nodejs" ] || echo "notice: pulumi-language-nodejs was not available when the CLI was built (see $work/language-host.log)"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$work" "$bin"
cd "$work"
rm -f go.mod go.sum
go mod init local/pulumi-build >/dev/null 2>&1

pkg_mod=$(go mod download -json "github.com/pulumi/pulumi/pkg/v3@v$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
if [ -z "$pkg_mod" ] || [ ! -f "$pkg_mod" ]; then
  echo "error: could not download github.com/pulumi/pulumi/pkg/v3@v$version from the Go module proxy" >&2
  exit 1
fi
# Keep every replace whose target is module@version; local (../) replaces become requirements.
while read -r from to to_version; do
  go mod edit -replace="$from=$to@$to_version"
done < <(awk '/^replace / && $4 !~ /^\./ && NF == 5 { print $2, $4, $5 }' "$pkg_mod")
go mod edit -require="github.com/pulumi/pulumi/pkg/v3@v$version" -require="github.com/pulumi/pulumi/sdk/v3@v$version"
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
go mod tidy
resolved=$(go list -m -f '{{.Path}}@{{.Version}}' github.com/pulumi/pulumi/pkg/v3 github.com/pulumi/pulumi/sdk/v3 | tr '\n' ' ')
case "$resolved" in
  *"pkg/v3@v$version "*"sdk/v3@v$version "*) ;;
  *) echo "error: module resolution drifted: $resolved (wanted v$version for both)" >&2; exit 1 ;;
esac

go build -trimpath -tags osusergo,grpcnotrace \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
  -o "$bin/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$bin/pulumi.tmp" "$bin/pulumi"

# The language host at the commit that pkg/v3's release tag points to.
origin=$(curl -fsS --max-time 60 "$(go env GOPROXY | cut -d, -f1)/github.com/pulumi/pulumi/pkg/v3/@v/v$version.info" || true)
hash=$(printf '%s' "$origin" | sed -n 's/.*"Hash":"\([0-9a-f]\{12\}\).*/\1/p')
stamp=$(printf '%s' "$origin" | sed -n 's/.*"Time":"\([0-9-]*\)T\([0-9:]*\)Z".*/\1\2/p' | tr -d ':-')
language_host="github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"
if [ -n "$hash" ] && [ -n "$stamp" ] &&
  go get "$language_host@v3.0.0-$stamp-$hash" >"$work/language-host.log" 2>&1 &&
  go mod edit -require="github.com/pulumi/pulumi/pkg/v3@v$version" -require="github.com/pulumi/pulumi/sdk/v3@v$version" &&
  go build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
    -o "$bin/pulumi-language-nodejs" "$language_host" >>"$work/language-host.log" 2>&1; then
  echo "built pulumi-language-nodejs at v3.0.0-$stamp-$hash"
else
  echo "notice: pulumi-language-nodejs could not be built (the proxy did not serve $language_host at the v$version release commit; see $work/language-host.log). Automation API inline programs work without it; 'pulumi up' in a project directory needs a Pulumi installation that includes it."
fi
"$bin/pulumi" version
