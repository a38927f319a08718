#!/bin/bash
# Copied from /work/shared/k8s-lab/build.sh (the k8s-lab notes shared by the team; see its
# README.md) so that scripts/k8s-lab.sh can build the lab binaries on a fresh machine.
# Changed here: the version stamp's -X paths (see below); kubemark's hollow kubelet bound
# to 127.0.0.1, its fake runtime's socket and root dir under TMPDIR (see below).
# Build the Kubernetes 1.20.2 binaries this lab needs from Debian bookworm's
# kubernetes source package (vendored Go modules; no network access needed
# beyond the Debian mirror). Uses Debian's golang-go (1.19).
#   LAB=/opt/k8s-lab ./build.sh [cmd ...]
set -euo pipefail
LAB=${LAB:-/opt/k8s-lab}
SRC=$LAB/src/k8s
mkdir -p "$LAB/src" "$LAB/bin" "$LAB/logs"
if [ ! -d "$SRC" ]; then
  # needs deb-src entries for Debian (scripts/k8s-lab.sh adds them: ensure_deb_src),
  # dpkg-dev and rsync (make generated_files)
  (cd "$LAB/src" && apt-get source --download-only kubernetes &&
   dpkg-source -x kubernetes_*.dsc k8s)
fi
CMDS=${*:-kube-apiserver kube-controller-manager kube-scheduler kubemark kubelet}
# The generated code (openapi definitions, deepcopy, ...) is not in the source package.
if [ ! -s "$SRC/pkg/generated/openapi/zz_generated.openapi.go" ]; then
  (cd "$SRC" && nice -n 19 make generated_files)
fi
# Kubernetes 1.20 builds in GOPATH mode (its own hack/ scripts do the same); Go 1.19 in
# module mode rejects its go.mod.
mkdir -p "$LAB/gopath/src/k8s.io"
ln -sfn "$SRC" "$LAB/gopath/src/k8s.io/kubernetes"
cd "$LAB/gopath/src/k8s.io/kubernetes"
export CGO_ENABLED=0 GO111MODULE=off GOFLAGS="-p=2" GOCACHE=$LAB/gocache GOPATH=$LAB/gopath
V=v1.20.2
LD="-s -w"
# GOPATH mode: the vendored packages' import paths start with k8s.io/kubernetes/vendor/
# (as in hack/lib/version.sh); without it the servers report v0.0.0-master.
for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  LD="$LD -X $p.gitVersion=$V -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
# kubemark's hollow kubelet binds its server to 0.0.0.0 (hard-coded in 1.20, no flag): the
# lab's hollow nodes (scripts/k8s-lab.sh hollow) bind 127.0.0.1 only.
sed -i 's|c.Address = "0.0.0.0" /\* bind address \*/|c.Address = "127.0.0.1" /* bind address (rsparkhub lab: loopback only) */|' \
  "$SRC/pkg/kubemark/hollow_kubelet.go"
grep -q 'c.Address = "127.0.0.1"' "$SRC/pkg/kubemark/hollow_kubelet.go"
# and its fake container runtime listens on a fixed /tmp/kubelet_remote.sock (each hollow
# node has its own /tmp in a kubemark cluster): under TMPDIR here, so that several hollow
# nodes on one machine each talk to their own.
EP=$SRC/pkg/kubelet/cri/remote/fake/endpoint.go
if ! grep -q 'os.TempDir()' "$EP"; then
  sed -i -e 's|^package fake$|package fake\n\nimport "os"|' \
    -e 's|return defaultUnixEndpoint, nil|return "unix://" + os.TempDir() + "/kubelet_remote.sock", nil|' "$EP"
fi
grep -q 'os.TempDir()' "$EP"
# its root dir too (test/utils' MakeTempDirOrDie: /tmp, not TMPDIR)
TD=$SRC/test/utils/tmpdir.go
if ! grep -q 'os.TempDir()' "$TD"; then
  sed -i -e 's|^\t"io/ioutil"$|\t"io/ioutil"\n\t"os"|' -e 's|baseDir = "/tmp"|baseDir = os.TempDir()|' "$TD"
fi
grep -q 'os.TempDir()' "$TD"
for c in $CMDS; do
  case $c in kubemark) pkg=./cmd/kubemark ;; *) pkg=./cmd/$c ;; esac
  [ -d "$pkg" ] || pkg=./test/kubemark   # not used in 1.20, kept for safety
  t0=$(date +%s)
  nice -n 19 go build -ldflags "$LD" -o "$LAB/bin/$c" "$pkg"
  echo "built $c in $(( $(date +%s) - t0 ))s"
done
