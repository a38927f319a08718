#!/usr/bin/env bash
# A real Kubernetes 1.20 cluster on this machine, for tests/test_k8s_cluster.py.
#
#   scripts/k8s-lab.sh up       # etcd, kube-apiserver, controller-manager, scheduler,
#                               # containerd (its own instance), a kubelet, kube-proxy
#                               # (iptables) and the lab's DNS (dnsmasq fed from Services)
#   scripts/k8s-lab.sh images [name...]  # session-python (default), session-r-debian, hub,
#                               # postgres-debian, spark-debian: built from
#                               # docker/<name>.Dockerfile, loaded
#   scripts/k8s-lab.sh env      # the variables tests/test_k8s_cluster.py reads
#   scripts/k8s-lab.sh status   # what runs, node and pods
#   scripts/k8s-lab.sh restart kube-apiserver   # stopped and started again (tests use it)
#   scripts/k8s-lab.sh compact  # etcd's history compacted to its current revision
#   scripts/k8s-lab.sh deb-src  # deb-src entries for Debian's archive, when missing (`up`
#                               # adds them itself before it builds the binaries)
#   scripts/k8s-lab.sh hollow N # N kubemark hollow nodes (pods go Running without
#                               # containers; label and NoSchedule taint rsparkhub.dev/hollow)
#   scripts/k8s-lab.sh hollow-down  # stops them and deletes their Node objects (`down` too)
#   scripts/k8s-lab.sh down     # stops exactly what `up` started, removes what it added
#
# Idempotent: `up` on a running lab and `down` on a stopped one do nothing. Runs as root
# (a kubelet needs it). Everything listens on 127.0.0.1 or on the pods' bridge (10.244.0.1,
# the node's address: the API server, the kubelet, the DNS); no cloud provider, no
# credential provider, no registry.
#
# Where things live (RSPARKHUB_K8S_LAB, default /opt/k8s-lab):
#   bin/                  kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#                         kube-proxy (built by scripts/k8s-lab-build.sh from Debian's source if missing)
#   lab/                  this script's cluster: pki/ (0700), kubeconfigs (0600), etcd data,
#                         containerd root, kubelet root, CNI config, pids, logs/
#   cache/                podman store and saved images, keyed on Dockerfile + source hash
# and /run/rsparkhub-k8s-lab (containerd's socket and state, runc's root).
set -euo pipefail

REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
LAB=${RSPARKHUB_K8S_LAB:-/opt/k8s-lab}
BIN=$LAB/bin
R=$LAB/lab
PKI=$R/pki
LOGS=$R/logs
PIDS=$R/pids
CACHE=$LAB/cache
RUNDIR=/run/rsparkhub-k8s-lab
SOCK=$RUNDIR/containerd.sock
BRIDGE=rshlab0
SUBNET=10.244.0.0/24
GATEWAY=10.244.0.1 # the bridge's address on the host: the node IP, the hub binds here
# Service addresses (kube-proxy): the pods' only route beyond their bridge, through the
# node (no default route: a pod reaches nothing outside the lab)
SERVICE_CIDR=10.0.0.0/24
NODE=lab-node
NS_TEST=${RSPARKHUB_K8S_NAMESPACE:-rsparkhub-test}
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy dns dns-sync)
DNS_DIR=$RUNDIR/dns # the lab DNS's hosts file, one line per Service (dns_sync)
CLUSTER_DOMAIN=cluster.local

log() { printf '[k8s-lab] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }
kc() { kubectl --kubeconfig "$R/admin.kubeconfig" "$@"; }

alive() { [ -f "$PIDS/$1" ] && kill -0 "$(cat "$PIDS/$1")" 2>/dev/null; }

start() { # name command... : in the background, pid recorded, output in logs/name.log
	local name=$1
	shift
	if alive "$name"; then return 0; fi
	echo "=== $(date -u +%FT%TZ) $*" >>"$LOGS/$name.log"
	nohup "$@" >>"$LOGS/$name.log" 2>&1 &
	echo $! >"$PIDS/$name"
	log "started $name (pid $!)"
}

wait_for() { # what seconds command...
	local what=$1 secs=$2
	shift 2
	for _ in $(seq "$secs"); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	die "$what not ready after ${secs}s (see $LOGS)"
}

# ------------------------------------------------------------------------------- binaries
binaries() {
	local missing=()
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
		[ -x "$BIN/$b" ] || missing+=("$b")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "building ${missing[*]} from Debian's kubernetes source (minutes)"
		# the build's tools: Debian's Go 1.19, dpkg-source, and rsync and make for
		# `make generated_files` (a fresh Debian 12 has none of go and rsync)
		local tools=() t
		for t in go:golang-go dpkg-source:dpkg-dev rsync:rsync make:make; do
			command -v "${t%%:*}" >/dev/null || tools+=("${t#*:}")
		done
		apt_get_install "${tools[@]}"
		[ -d "$LAB/src/k8s" ] || ensure_deb_src
		LAB=$LAB nice -n 10 "$REPO_ROOT/scripts/k8s-lab-build.sh" "${missing[@]}"
	fi
	# Debian's packages, installed when missing. kubectl is Debian's kubernetes-client
	# (1.20.2, the cluster's version) unless one is on PATH already; it only applies and
	# reads objects, the manifests are rendered by the pinned kustomize (scripts/install.sh).
	local pkgs=() pair
	for pair in etcd:etcd-server containerd:containerd containerd-shim-runc-v2:containerd \
		runc:runc openssl:openssl iptables:iptables ip:iproute2 kubectl:kubernetes-client \
		dnsmasq:dnsmasq-base; do
		command -v "${pair%%:*}" >/dev/null || pkgs+=("${pair#*:}")
	done
	[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
	# `up` builds the pod sandbox's pause image (load_pause): a static C program, podman
	for pair in podman:podman gcc:gcc; do
		command -v "${pair%%:*}" >/dev/null || pkgs+=("${pair#*:}")
	done
	dpkg -s libc6-dev >/dev/null 2>&1 || pkgs+=(libc6-dev)
	apt_get_install "${pkgs[@]}"
}

# apt-get install of the given packages (none: nothing to do), de-duplicated; one
# `apt-get update` first when the install fails on stale lists.
apt_get_install() {
	[ $# -gt 0 ] || return 0
	local want
	want=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ')
	log "installing Debian packages: $want"
	# shellcheck disable=SC2086 # $want is a list of package names
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $want >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $want >/dev/null; } ||
		die "apt-get install $want failed"
}

# `apt-get source` (scripts/k8s-lab-build.sh) needs deb-src entries for Debian's archive,
# which a fresh Debian install does not have: add them once, mirroring the machine's own
# Debian `deb` entries (same URIs, suites, components and keyring), in a file of our own.
DEB_SRC_FILE=/etc/apt/sources.list.d/rsparkhub-k8s-lab-src.sources
ensure_deb_src() {
	local entries
	entries=$(
		python3 - <<'PY'
import glob, os, re

def debian(uri):
    return re.search(r"/debian(-security)?/?$", uri) is not None

have, out = False, []
for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    if not os.path.isfile(f):
        continue
    for line in open(f, encoding="utf-8"):
        w = line.split("#", 1)[0].split()
        if len(w) < 3:
            continue
        opts = w[1] if w[1].startswith("[") else ""
        rest = w[2:] if opts else w[1:]
        if not debian(rest[0]):
            continue
        if w[0] == "deb-src":
            have = True
        elif w[0] == "deb":
            keyring = re.search(r"signed-by=([^\s\]]+)", opts)
            out.append(
                "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n%s"
                % (rest[0], rest[1], " ".join(rest[2:]) or "main",
                   "Signed-By: %s\n" % keyring.group(1) if keyring else "")
            )
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for para in open(f, encoding="utf-8").read().split("\n\n"):
        fields = {}
        for line in para.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if not any(debian(u) for u in fields.get("uris", "").split()):
            continue
        types = fields.get("types", "").split()
        if "deb-src" in types:
            have = True
        elif "deb" in types:
            keep = ("URIs", "Suites", "Components", "Signed-By")
            out.append("Types: deb-src\n" + "".join(
                "%s: %s\n" % (k, fields[k.lower()]) for k in keep if k.lower() in fields
            ))
if not have:
    print("\n".join(out))
PY
	) || die "could not read apt's sources"
	[ -n "$entries" ] || return 0 # deb-src entries exist (or no Debian archive is configured)
	log "adding deb-src entries for Debian's archive ($DEB_SRC_FILE) and updating apt's lists"
	printf '# Added by rsparkhub scripts/k8s-lab.sh for `apt-get source kubernetes`.\n%s\n' \
		"$entries" >"$DEB_SRC_FILE"
	apt-get update -qq || die "apt-get update failed after adding $DEB_SRC_FILE"
}

# ---------------------------------------------------------------------- PKI and kubeconfigs
pki() ( # a subshell: its umask must not reach containerd (0700 snapshot dirs break images)
	umask 077
	mkdir -p "$PKI"
	chmod 0700 "$R" "$PKI"
	[ -s "$PKI/ca.key" ] && [ -s "$PKI/tokens.csv" ] && return 0
	log "making the lab's CA, certificates, service-account key and tokens in $PKI"
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rsparkhub-k8s-lab-ca" \
		-keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
	cert() { # name subject extensions
		openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$PKI/$1.key" \
			-out "$PKI/$1.csr" 2>/dev/null
		printf '%s\n' "$3" >"$PKI/$1.ext"
		openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
			-CAcreateserial -days 3650 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
		rm -f "$PKI/$1.csr" "$PKI/$1.ext"
	}
	cert apiserver "/CN=kube-apiserver" \
		"subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:$GATEWAY,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost
extendedKeyUsage=serverAuth"
	# the apiserver's client certificate towards the kubelet (logs, exec)
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
		"extendedKeyUsage=clientAuth"
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	local t_admin t_kubelet
	t_admin=$(openssl rand -hex 24)
	t_kubelet=$(openssl rand -hex 24)
	{
		echo "$t_admin,admin,admin,system:masters"
		echo "$t_kubelet,system:node:$NODE,kubelet,system:nodes"
	} >"$PKI/tokens.csv"
	kubeconfig() { # file token
		cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://$GATEWAY:6443", certificate-authority: $PKI/ca.crt}
users:
- name: u
  user: {token: "$2"}
contexts:
- name: lab
  context: {cluster: lab, user: u}
current-context: lab
EOF
		chmod 0600 "$1"
	}
	kubeconfig "$R/admin.kubeconfig" "$t_admin"
	kubeconfig "$R/kubelet.kubeconfig" "$t_kubelet"
)

# kube-proxy's identity (system:kube-proxy, bound to system:node-proxier by the server's
# default RBAC), added to a lab made before kube-proxy was; and the kubeconfigs of a lab
# made when the API server listened on 127.0.0.1 pointed at its address on the bridge.
pki_kube_proxy() (
	umask 077
	if ! grep -q ',system:kube-proxy,' "$PKI/tokens.csv"; then
		echo "$(openssl rand -hex 24),system:kube-proxy,kube-proxy" >>"$PKI/tokens.csv"
	fi
	local t
	t=$(awk -F, '$2=="system:kube-proxy"{print $1}' "$PKI/tokens.csv")
	sed -e "s/^  user: {token: .*/  user: {token: \"$t\"}/" "$R/admin.kubeconfig" >"$R/kube-proxy.kubeconfig"
	sed -i "s#https://127.0.0.1:6443#https://$GATEWAY:6443#" "$R/admin.kubeconfig" \
		"$R/kubelet.kubeconfig" "$R/kube-proxy.kubeconfig"
)

# ------------------------------------------------------------------------- the pod network
network() {
	mkdir -p "$R/cni/net.d" "$R/cni/ipam"
	cat >"$R/cni/net.d/10-rsparkhub-lab.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "rsparkhub-lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "hairpinMode": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$R/cni/ipam",
        "ranges": [[{"subnet": "$SUBNET", "gateway": "$GATEWAY"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}]
      }
    }
  ]
}
EOF
	# The bridge exists before the first pod: the kubelet and the test hub listen on it.
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
		touch "$R/added-bridge"
	fi
	ip -4 addr show dev "$BRIDGE" | grep -q "inet $GATEWAY/" || ip addr add "$GATEWAY/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
}

containerd_config() {
	mkdir -p "$R/containerd/root" "$RUNDIR"
	chmod 0700 "$R/containerd" "$RUNDIR"
	cat >"$R/containerd.toml" <<EOF
version = 2
root = "$R/containerd/root"
state = "$RUNDIR/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$R/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "rsparkhub.local/pause:lab"
  # This VM refuses to lower oom_score_adj (containerd keeps its own as the floor).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUNDIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$R/cni/net.d"
EOF
}

# The state of the host before `up` added anything: `down` removes only what is new.
snapshot() {
	[ -s "$R/before.iptables" ] && return 0
	for t in filter nat mangle; do
		iptables -t "$t" -S 2>/dev/null | sed "s/^/$t /"
	done >"$R/before.iptables"
	(ip netns list 2>/dev/null | awk '{print $1}') >"$R/before.netns"
	(ls /sys/fs/cgroup/memory 2>/dev/null || true) >"$R/before.cgroups"
	# kube-proxy sets it to 1 (for NodePorts on localhost); `down` puts it back
	cat /proc/sys/net/ipv4/conf/all/route_localnet >"$R/before.route_localnet"
}

# Admission: the 1.20 defaults (NamespaceLifecycle, LimitRanger, ServiceAccount,
# DefaultStorageClass, ResourceQuota, the webhooks ...) plus NodeRestriction.
apiserver() {
	local B=$BIN
	start kube-apiserver "$B/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
		--bind-address="$GATEWAY" --advertise-address="$GATEWAY" --secure-port=6443 \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc --allow-privileged=false \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="" --kubelet-preferred-address-types=InternalIP \
		--profiling=false
	wait_for kube-apiserver 90 kc get --raw /readyz
}

# `restart kube-apiserver`: stopped (it closes its watches) and started again, ready. The
# tests use it to check that the hub's watches resume (tests/test_k8s_cluster.py).
restart() {
	[ "$(id -u)" = 0 ] || die "run as root"
	[ "${1:-}" = kube-apiserver ] || die "usage: $0 restart kube-apiserver"
	alive etcd || die "the lab is not up (scripts/k8s-lab.sh up)"
	stop kube-apiserver
	apiserver
	log "kube-apiserver restarted"
}

# `compact`: etcd's history compacted up to its current revision, so a watch or list from
# an older resourceVersion that reaches etcd gets 410 Gone (resourceVersion too old).
compact() {
	alive etcd || die "the lab is not up (scripts/k8s-lab.sh up)"
	local rev
	rev=$(curl -sf -X POST -d '{"key":"AA=="}' http://127.0.0.1:2379/v3/kv/range |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
	curl -sf -X POST -d "{\"revision\": \"$rev\", \"physical\": true}" \
		http://127.0.0.1:2379/v3/kv/compaction >/dev/null || die "etcd did not compact to $rev"
	log "etcd compacted to revision $rev"
	echo "$rev"
}

# ------------------------------------------------------------------------------------ DNS
# The lab's cluster DNS: a stand-in for CoreDNS, which Debian does not ship. dnsmasq
# (Debian's dnsmasq-base) answers on the bridge's address from a hosts file that
# dns_sync writes from the Services (<name>.<namespace>.svc.cluster.local -> ClusterIP,
# rewritten on every change a watch reports); it forwards nothing (--no-resolv) and
# answers NXDOMAIN for other names under cluster.local. A headless Service's name resolves
# to its ready endpoints' pod addresses (as CoreDNS does; a Spark driver's Service, which
# publishes its pod before it is Ready, is how executors reach their driver). No pod
# records, no SRV: what the manifests and tests here need.
dns() {
	mkdir -p "$DNS_DIR"
	touch "$DNS_DIR/services"
	start dns dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
		--hostsdir="$DNS_DIR" --listen-address="$GATEWAY" --bind-interfaces --port=53 \
		--local="/$CLUSTER_DOMAIN/" --domain-needed --user=root \
		--pid-file="$RUNDIR/dnsmasq.pid" --log-facility=-
	# its own process group, so that `stop dns-sync` ends the watch it runs too
	start dns-sync setsid "$0" dns-sync
}

dns_sync() {
	trap 'trap - TERM; kill -- -$$ 2>/dev/null; exit 0' TERM
	local kind
	for kind in svc endpoints; do # (headless Services: their endpoints change later)
		while :; do
			kc get "$kind" -A -w -o name 2>/dev/null | while read -r _; do dns_hosts; done
			sleep 1 # the API server restarted: watch again
		done &
	done
	wait
}

dns_hosts() { # one at a time (two watches call it): the last one reads the newest state
	local f=$DNS_DIR/services tmp=$RUNDIR/dns-services.tmp # (dnsmasq reads all of DNS_DIR)
	local d=.svc.$CLUSTER_DOMAIN
	{
		flock 9
		{
			kc get svc -A -o jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}'"$d"'{"\n"}{end}' 2>/dev/null |
				grep -E '^[0-9]' || true
			# headless: "None name.namespace" joined with "namespace name ip..." of endpoints
			join -1 2 -2 1 \
				<(kc get svc -A -o jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}{"\n"}{end}' 2>/dev/null |
					awk '$1=="None"{print $1, $2}' | sort -k2,2) \
				<(kc get endpoints -A -o jsonpath='{range .items[*]}{.metadata.name}.{.metadata.namespace}{range .subsets[*]}{range .addresses[*]} {.ip}{end}{end}{"\n"}{end}' 2>/dev/null |
					sort -k1,1) |
				awk -v d="$d" '{for (i = 3; i <= NF; i++) print $i, $1 d}' || true
		} >"$tmp"
		if cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv "$tmp" "$f"; fi
	} 9>"$RUNDIR/dns-services.lock"
}

# ------------------------------------------------------------------------------------- up
up() {
	[ "$(id -u)" = 0 ] || die "run as root (the kubelet needs it)"
	binaries
	umask 022
	mkdir -p "$R" "$LOGS" "$PIDS"
	pki
	pki_kube_proxy
	snapshot
	network
	containerd_config
	local B=$BIN
	start etcd nice -n 5 etcd --name lab --data-dir "$R/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster lab=http://127.0.0.1:2380 --listen-metrics-urls ""
	wait_for etcd 30 curl -sf http://127.0.0.1:2379/health
	apiserver
	start kube-controller-manager "$B/kube-controller-manager" \
		--kubeconfig="$R/admin.kubeconfig" --bind-address=127.0.0.1 --secure-port=10257 \
		--port=0 --service-account-private-key-file="$PKI/sa.key" \
		--root-ca-file="$PKI/ca.crt" --use-service-account-credentials=false \
		--leader-elect=false --controllers='*,-cloud-node-lifecycle,-service,-route' \
		--profiling=false
	start kube-scheduler "$B/kube-scheduler" --kubeconfig="$R/admin.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=10259 --port=0 --leader-elect=false \
		--profiling=false
	# Service addresses (10.0.0.0/24): kube-proxy in iptables mode, built from the same
	# source. It sets no conntrack limits here (the *-max-per-core/min/timeouts at 0).
	start kube-proxy "$B/kube-proxy" --kubeconfig="$R/kube-proxy.kubeconfig" \
		--hostname-override="$NODE" --proxy-mode=iptables --cluster-cidr="$SUBNET" \
		--bind-address=127.0.0.1 --healthz-bind-address=127.0.0.1:10256 \
		--metrics-bind-address=127.0.0.1:10249 --conntrack-max-per-core=0 --conntrack-min=0 \
		--conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
		--profiling=false
	dns
	start containerd containerd --config "$R/containerd.toml"
	wait_for containerd 30 test -S "$SOCK"
	load_pause
	mkdir -p "$R/kubelet"
	start kubelet "$B/kubelet" --kubeconfig="$R/kubelet.kubeconfig" --hostname-override="$NODE" \
		--container-runtime=remote --container-runtime-endpoint="unix://$SOCK" \
		--image-service-endpoint="unix://$SOCK" \
		--cgroup-driver=cgroupfs --fail-swap-on=false --address="$GATEWAY" --node-ip="$GATEWAY" \
		--healthz-bind-address=127.0.0.1 --read-only-port=0 \
		--root-dir="$R/kubelet" --anonymous-auth=false --client-ca-file="$PKI/ca.crt" \
		--authorization-mode=AlwaysAllow \
		'--eviction-hard=memory.available<100Mi,nodefs.available<2%,imagefs.available<2%' \
		--image-gc-high-threshold=99 --image-gc-low-threshold=98 --serialize-image-pulls=false \
		--max-pods=60 --enable-controller-attach-detach=true \
		--cluster-dns="$GATEWAY" --cluster-domain="$CLUSTER_DOMAIN"
	wait_for "node $NODE" 90 node_ready
	# The default ServiceAccount of the test namespace exists (the controller-manager makes
	# it and its token) before a test asks for it.
	kc get ns "$NS_TEST" >/dev/null 2>&1 || kc create ns "$NS_TEST" >/dev/null
	wait_for "service account token" 60 sh -c "kubectl --kubeconfig '$R/admin.kubeconfig' -n '$NS_TEST' get secrets -o name | grep -q default-token"
	log "up: $(kc get node "$NODE" --no-headers 2>/dev/null)"
}

node_ready() {
	kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' |
		grep -qx True
}

load_pause() {
	ctr_ images ls -q | grep -qx rsparkhub.local/pause:lab && return 0
	local tar=$CACHE/images/pause-lab.tar
	if [ ! -s "$tar" ]; then
		mkdir -p "$CACHE/images" "$CACHE/pause"
		# The pod sandbox's PID 1 (no registry for registry.k8s.io/pause here): wait for
		# signals, reap children, exit 0 on SIGINT/SIGTERM.
		cat >"$CACHE/pause/pause.c" <<'EOF'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0}, r = {0};
  a.sa_handler = stop; sigaction(SIGINT, &a, NULL); sigaction(SIGTERM, &a, NULL);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
EOF
		gcc -static -O2 -o "$CACHE/pause/pause" "$CACHE/pause/pause.c"
		printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' \
			>"$CACHE/pause/Containerfile"
		pm build --pull=never -t rsparkhub.local/pause:lab "$CACHE/pause" >&2
		pm save --format docker-archive -o "$tar.tmp" rsparkhub.local/pause:lab
		mv "$tar.tmp" "$tar"
	fi
	ctr_ images import "$tar" >/dev/null
}

# ---------------------------------------------------------------------------- hollow nodes
# `hollow N`: N kubemark hollow kubelets (hollow-node-0 …), one process each, for load on
# the real control plane (bench/k8s_scale.py --cluster lab). The scheduler places pods on
# them and they report them Running with no container (kubemark's fake runtime); each
# takes at most 110 pods (a constant in 1.20's kubemark) and has 1 CPU and 3.75 GiB
# (its fake cAdvisor). They carry the label and the NoSchedule taint
# rsparkhub.dev/hollow=true, so that only pods that select and tolerate them land there.
# Their servers listen on 127.0.0.1 (scripts/k8s-lab-build.sh patches kubemark's
# hard-coded 0.0.0.0) on ports HOLLOW_PORT0+i; no read-only port. They use the admin
# kubeconfig (the lab's token file has no node identities for them: adding some needs an
# API server restart). Root dirs and logs: lab/hollow/<name>, logs/<name>.log.
HOLLOW_KEY=rsparkhub.dev/hollow
HOLLOW_PORT0=10300
HOLLOW_MAX=40
hollow() {
	[ "$(id -u)" = 0 ] || die "run as root"
	local n=${1:-}
	[[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $HOLLOW_MAX ] ||
		die "usage: $0 hollow N (1..$HOLLOW_MAX)"
	alive kube-apiserver || die "the lab is not up (scripts/k8s-lab.sh up)"
	if [ ! -x "$BIN/kubemark" ]; then
		log "building kubemark from Debian's kubernetes source"
		LAB=$LAB nice -n 10 "$REPO_ROOT/scripts/k8s-lab-build.sh" kubemark
	fi
	local i name
	for ((i = 0; i < n; i++)); do
		name=hollow-node-$i
		mkdir -p "$R/hollow/$name"
		# kubemark makes its root dir with ioutil.TempDir: under TMPDIR, i.e. here
		start "$name" env TMPDIR="$R/hollow/$name" nice -n 5 "$BIN/kubemark" --morph=kubelet 			--name="$name" --kubeconfig="$R/admin.kubeconfig" 			--kubelet-port=$((HOLLOW_PORT0 + i)) --kubelet-read-only-port=0 			--node-labels="$HOLLOW_KEY=true" --register-with-taints="$HOLLOW_KEY=true:NoSchedule"
	done
	for ((i = 0; i < n; i++)); do
		wait_for "hollow-node-$i" 120 sh -c "kubectl --kubeconfig '$R/admin.kubeconfig' get node hollow-node-$i -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
	done
	log "$n hollow nodes ready: $(kc get nodes -l "$HOLLOW_KEY=true" --no-headers 2>/dev/null | wc -l) registered"
}

hollow_down() {
	local f name
	for f in "$PIDS"/hollow-node-*; do
		[ -e "$f" ] || continue
		stop "$(basename "$f")"
	done
	if alive kube-apiserver; then
		kc delete nodes -l "$HOLLOW_KEY=true" --wait=false >/dev/null 2>&1 || true
	fi
	rm -rf "$R/hollow"
}

# ----------------------------------------------------------------------------------- down
down() {
	[ "$(id -u)" = 0 ] || die "run as root"
	hollow_down
	if alive kube-apiserver && alive kubelet; then
		# Pods first, through the API: the kubelet stops their containers and CNI DEL
		# removes their veths, addresses and rules.
		kc delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
		for _ in $(seq 30); do
			[ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break
			sleep 1
		done
	fi
	stop kubelet
	if alive containerd; then
		# What the kubelet left running: containerd's shims outlive containerd.
		for t in $(ctr_ tasks ls -q 2>/dev/null); do
			ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
		done
		sleep 1
		for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
		for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
	fi
	for n in dns-sync dns kube-proxy containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$n"; done
	set +e +o pipefail # the rest is best effort: an empty grep is not an error
	# Mounts the kubelet and containerd made (secrets' tmpfs, rootfs overlays, netns).
	if [ -d "$R" ]; then
		awk '{print $2}' /proc/mounts | grep -E "^($R|$RUNDIR)/" | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
	fi
	awk '{print $2}' /proc/mounts | grep -E "^/run/netns/cni-" | while read -r m; do
		name=${m#/run/netns/}
		grep -qx "$name" "$R/before.netns" 2>/dev/null || { umount -l "$m" 2>/dev/null || true; rm -f "$m"; }
	done
	if [ -s "$R/before.iptables" ]; then
		# Rules and chains the kubelet (KUBE-*) and the bridge plugin (CNI-*) added.
		for t in filter nat mangle; do
			iptables -t "$t" -S 2>/dev/null | grep -E '^-A .*(KUBE-|CNI-)' | while read -r rule; do
				grep -qxF -- "$t $rule" "$R/before.iptables" ||
					eval "iptables -t $t ${rule/-A/-D}" 2>/dev/null || true
			done
			iptables -t "$t" -S 2>/dev/null | awk '$1=="-N"{print $2}' | grep -E '^(KUBE-|CNI-)' |
				while read -r chain; do
					grep -qxF -- "$t -N $chain" "$R/before.iptables" || {
						iptables -t "$t" -F "$chain" 2>/dev/null || true
						iptables -t "$t" -X "$chain" 2>/dev/null || true
					}
				done
		done
		rm -f "$R/before.iptables" "$R/before.netns"
	fi
	if [ -s "$R/before.route_localnet" ]; then
		cat "$R/before.route_localnet" >/proc/sys/net/ipv4/conf/all/route_localnet
		rm -f "$R/before.route_localnet"
	fi
	if [ -f "$R/added-bridge" ]; then
		ip link del "$BRIDGE" 2>/dev/null || true
		rm -f "$R/added-bridge"
	fi
	rm -rf "$R/cni/ipam"
	# The kubelet's cgroups (kubepods/…), when it made them: empty directories only.
	if [ -s "$R/before.cgroups" ] && ! grep -qx kubepods "$R/before.cgroups"; then
		for h in /sys/fs/cgroup/*/; do
			[ -d "$h/kubepods" ] && find "$h/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		done
	fi
	rm -f "$R/before.cgroups"
	rm -rf "$RUNDIR"
	log "down"
}

stop() {
	local n=$1 pid
	[ -f "$PIDS/$n" ] || return 0
	pid=$(cat "$PIDS/$n")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
		log "stopped $n"
	fi
	rm -f "$PIDS/$n"
}

# --------------------------------------------------------------------------------- images
# podman with the lab's own store (nothing else on the machine sees these images).
pm() {
	podman --root "$CACHE/podman/storage" --runroot "$RUNDIR/podman" \
		--cgroup-manager=cgroupfs --events-backend=file "$@"
}

mirror() { # the configured Debian mirror, e.g. http://deb.debian.org/debian
	local m
	m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -E '/debian/?$' | head -1)
	[ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
		awk '{print $2}' | grep -E '/debian/?$' | head -1)
	echo "${m:-http://deb.debian.org/debian}"
}

BASE_PACKAGES=python3,python3-venv,ca-certificates
# A Debian bookworm base made with debootstrap (minbase) from the configured mirror, plus
# Python 3.11 as a venv at /usr/local: the layout of python:3.11-slim-bookworm (python and
# pip on PATH, installs go to /usr/local), which the Dockerfiles start FROM.
base_image() {
	local key tag
	key=$(printf '%s\n' "$(mirror)" bookworm minbase "$BASE_PACKAGES" v2 | sha256sum | cut -c1-12)
	tag=rsparkhub.local/bookworm-python:$key
	if ! pm image exists "$tag"; then
		local tar=$CACHE/base/bookworm-$key.tar
		if [ ! -s "$tar" ]; then
			mkdir -p "$CACHE/base"
			local root=$CACHE/base/rootfs-$key
			rm -rf "$root"
			log "debootstrap bookworm (minbase) from $(mirror)"
			nice -n 10 debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$(mirror)" \
				>"$CACHE/base/debootstrap.log" 2>&1 || die "debootstrap failed: $CACHE/base/debootstrap.log"
			rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
			# as in Docker's images: else the build's own /etc/hosts mount leaves an
			# empty placeholder in a layer
			printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
			tar -C "$root" -cf "$tar.tmp" .
			mv "$tar.tmp" "$tar"
			rm -rf "$root"
		fi
		pm import "$tar" "rsparkhub.local/debootstrap:$key" >/dev/null
		local ctx
		ctx=$(mktemp -d)
		cat >"$ctx/Containerfile" <<EOF
FROM rsparkhub.local/debootstrap:$key
ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
RUN python3 -m venv /usr/local && python -m pip --version
CMD ["python3"]
EOF
		nice -n 10 podman --root "$CACHE/podman/storage" --runroot "$RUNDIR/podman" \
			--cgroup-manager=cgroupfs --events-backend=file \
			build --pull=never --network=host -t "$tag" "$ctx" >&2
		rm -rf "$ctx"
	fi
	echo "$tag"
}

source_key() { # a Dockerfile's image key: the Dockerfile, the build context, the base
	(
		cd "$REPO_ROOT"
		local df="docker/$1.Dockerfile" f
		cat "$df"
		# its own files: docker/<name>-*, and what else of docker/ it copies
		for f in $(
			ls -d docker/"$1"-* 2>/dev/null || true
			awk 'toupper($1)=="COPY"{for(i=2;i<NF;i++) if($i ~ /^docker\//) print $i}' "$df"
		); do
			if [ -f "$f" ]; then echo "$f"; fi
		done | sort -u | while read -r f; do sha256sum "$f"; done
		echo "$2"
		# the package's sources, when it copies them (spark-debian and postgres-debian do not)
		if grep -qiE '^COPY .*(src|pyproject\.toml)' "$df"; then
			git ls-files -co --exclude-standard pyproject.toml README.md src |
				grep -vE '(__pycache__|\.pyc$|\.egg-info|/\.source-hash$)' | sort |
				while read -r f; do [ -f "$f" ] && sha256sum "$f"; done
		fi
	) | sha256sum | cut -c1-12
}

image() { # session-python | session-r-debian | hub | postgres-debian | spark-debian : built (cached), saved and loaded into the lab's containerd
	local name=$1 base key tag tar old
	base=$(base_image)
	key=$(source_key "$name" "$base")
	tag=rsparkhub.local/$name:$key
	tar=$CACHE/images/$name-$key.tar
	mkdir -p "$CACHE/images"
	if [ ! -s "$tar" ]; then
		if ! pm image exists "$tag"; then
			# `podman build --from` replaces only the first FROM; these files have two
			# stages on the same base, so the lab's own store knows the base by that name.
			local from
			for from in $(awk 'toupper($1)=="FROM"{print $2}' "$REPO_ROOT/docker/$name.Dockerfile" | sort -u); do
				case $from in
				*.*/* | localhost/*) ;;
				*/*) from=docker.io/$from ;;
				*) from=docker.io/library/$from ;;
				esac
				pm tag "$base" "$from"
			done
			# The build's RUN steps trust what this machine trusts (an egress proxy's CA,
			# say): its CA bundle is mounted over the image's and over pip's own (certifi's)
			# for the build only. Both files exist in the base, so no trace is left.
			local ca=/etc/ssl/certs/ca-certificates.crt
			local pip_ca=/usr/local/lib/python3.11/site-packages/pip/_vendor/certifi/cacert.pem
			log "building $tag (docker/$name.Dockerfile)"
			(cd "$REPO_ROOT" && nice -n 10 podman --root "$CACHE/podman/storage" \
				--runroot "$RUNDIR/podman" --cgroup-manager=cgroupfs --events-backend=file \
				build --pull=never --network=host --from "$base" \
				-v "$ca:$ca:ro" -v "$ca:$pip_ca:ro" \
				-f "docker/$name.Dockerfile" -t "$tag" .) >&2
		fi
		pm save --format docker-archive -o "$tar.tmp" "$tag"
		mv "$tar.tmp" "$tar"
		# old images of this name: only the newest is kept
		find "$CACHE/images" -name "$name-*.tar" ! -name "$name-$key.tar" -delete
		for old in $(pm images --format '{{.Repository}}:{{.Tag}}' | grep -E "^rsparkhub.local/$name:" | grep -vx "$tag"); do
			pm rmi "$old" >/dev/null 2>&1 || true
		done
		pm image prune -f >/dev/null 2>&1 || true
	fi
	if [ -S "$SOCK" ] && ! ctr_ images ls -q | grep -qx "$tag"; then
		log "loading $tag into the lab's containerd"
		ctr_ images import "$tar" >/dev/null
		for old in $(ctr_ images ls -q | grep -E "^rsparkhub.local/$name:" | grep -vx "$tag"); do
			ctr_ images rm "$old" >/dev/null 2>&1 || true
		done
		# and the by-digest names the kubelet's CRI gave the images no tag names now
		local named
		named=$(ctr_ images ls | awk 'NR>1 && $1 !~ /^sha256:/ {print $3}')
		ctr_ images ls | awk 'NR>1 && $1 ~ /^sha256:/ {print $1, $3}' | while read -r ref digest; do
			grep -qx "$digest" <<<"$named" || ctr_ images rm "$ref" >/dev/null 2>&1 || true
		done
	fi
	echo "$tag"
}

images() {
	local names=("$@")
	[ ${#names[@]} -gt 0 ] || names=(session-python)
	local pkgs=()
	command -v podman >/dev/null || pkgs+=(podman)
	command -v debootstrap >/dev/null || pkgs+=(debootstrap)
	apt_get_install "${pkgs[@]}"
	mkdir -p "$RUNDIR" "$CACHE/images"
	for n in "${names[@]}"; do
		image "$n" >"$CACHE/images/$n.current.tmp"
		mv "$CACHE/images/$n.current.tmp" "$CACHE/images/$n.current"
		log "$n: $(cat "$CACHE/images/$n.current")"
	done
}

# ------------------------------------------------------------------------------ env, status
env_() {
	local img=""
	[ -s "$CACHE/images/session-python.current" ] && img=$(cat "$CACHE/images/session-python.current")
	echo "export KUBECONFIG=$R/admin.kubeconfig"
	echo "export RSPARKHUB_K8S_IMAGE=$img"
	img=""
	[ -s "$CACHE/images/session-r-debian.current" ] && img=$(cat "$CACHE/images/session-r-debian.current")
	echo "export RSPARKHUB_K8S_R_IMAGE=$img"
	# the images of the overlay test (hub, postgres) and of the Spark driver test (spark)
	for n in hub postgres-debian spark-debian; do
		img=""
		[ -s "$CACHE/images/$n.current" ] && img=$(cat "$CACHE/images/$n.current")
		echo "export RSPARKHUB_K8S_$(echo "${n%-debian}" | tr a-z A-Z)_IMAGE=$img"
	done
	echo "export RSPARKHUB_K8S_HUB_HOST=$GATEWAY"
	echo "export RSPARKHUB_K8S_NAMESPACE=$NS_TEST"
	echo "export RSPARKHUB_K8S_LAB=$LAB"
}

status() {
	for n in "${COMPONENTS[@]}"; do
		if alive "$n"; then echo "$n: running (pid $(cat "$PIDS/$n"))"; else echo "$n: stopped"; fi
	done
	if alive kube-apiserver; then
		kc get nodes -o wide 2>/dev/null || true
		kc get pods -A -o wide 2>/dev/null || true
	fi
}

case ${1:-} in
up) up ;;
down) down ;;
images)
	shift
	images "$@"
	;;
env) env_ ;;
status) status ;;
restart)
	shift
	restart "$@"
	;;
compact) compact ;;
hollow)
	shift
	hollow "$@"
	;;
hollow-down) hollow_down ;;
deb-src) ensure_deb_src ;;
dns-sync) dns_sync ;;
*)
	sed -n '2,32p' "$0"
	exit 2
	;;
esac
