#!/bin/bash
# Builds the test API server of ../shared/tools/kube-apiserver (kube-apiserver v1.20.2 + etcd) with one
# fix: kube-apiserver 1.20 vendors github.com/modern-go/reflect2 v1.0.1, whose map iteration corrupts
# memory under Go >= 1.18 (the server dies with "fatal error: fault" in mapiterinit while encoding any
# object with labels). Debian's golang-github-modern-go-reflect2-dev (v1.0.2, the upstream fix) replaces
# the vendored copy before build.sh compiles. Idempotent: later calls return at once. Prints the bin dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOOLS=${KUBE_APISERVER_TOOLS:-$(cd "$HERE/../../../shared/tools/kube-apiserver" && pwd)}
ROOT=${KUBE_TEST_ROOT:-/tmp/kube-apiserver-test}
MARK=$ROOT/bin/.reflect2-v1.0.2
if [[ -x $ROOT/bin/kube-apiserver && -x $ROOT/bin/etcd && -f $MARK ]]; then echo "$ROOT/bin"; exit 0; fi
mkdir -p "$ROOT"/{apt/lists/partial,apt/parts,debs,src,bin,reflect2}
# The same deb-src set-up and source download as build.sh (which skips them once the source is there).
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$ROOT/apt/parts/debian-src.sources"
A=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$ROOT/apt/parts" -o "Dir::State::Lists=$ROOT/apt/lists")
apt-get "${A[@]}" update -qq
cd "$ROOT/src"
if [[ ! -d kubernetes-1.20.2 ]]; then
  apt-get "${A[@]}" source --download-only kubernetes >/dev/null
  tar xzf kubernetes_*.orig.tar.gz
fi
cd "$ROOT/debs" && apt-get download golang-github-modern-go-reflect2-dev >/dev/null
dpkg -x "$ROOT"/debs/golang-github-modern-go-reflect2-dev_*.deb "$ROOT/reflect2"
V=$ROOT/src/kubernetes-1.20.2/vendor/github.com/modern-go/reflect2
rm -f "$V"/*.go "$V"/*.s
cp "$ROOT"/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$V"/
cp "$ROOT"/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$V"/ 2>/dev/null || true
rm -f "$V"/*_test.go "$ROOT/src/kubernetes-1.20.2/_output/bin/kube-apiserver" "$ROOT/bin/kube-apiserver"
bash "$TOOLS/build.sh" >/dev/null
touch "$MARK"
echo "$ROOT/bin"
