#!/bin/bash
# The entrypoint of docker/spark-debian.Dockerfile (/opt/entrypoint.sh): what rsparkhub's
# Spark pods use of the apache/spark images' entrypoint, written for this image.
#
#   /opt/entrypoint.sh executor        an executor pod (Spark's Kubernetes backend gives
#                                      executor pods only this argument, and their settings
#                                      as SPARK_* environment variables)
#   /opt/entrypoint.sh driver ARGS...  spark-submit in client mode, bound to
#                                      $SPARK_DRIVER_BIND_ADDRESS (Spark's cluster mode)
#   /opt/entrypoint.sh CMD ARGS...     CMD as it is (rsparkhub's driver pods: spark-submit)
#
# In every case a uid without a passwd entry (pods run as the session user's uid) first
# gets one through libnss_wrapper: Hadoop's login, which Spark runs in the driver and in
# every executor, needs a user name for the process's uid, and the root filesystem is
# read-only, so /etc/passwd stays as it is. The command runs under tini (signals passed
# on, children reaped).
set -euo pipefail

SPARK_HOME=${SPARK_HOME:-/opt/spark}

name_this_uid() {
	local uid gid name wrapper
	uid=$(id -u)
	getent passwd "$uid" >/dev/null 2>&1 && return 0
	gid=$(id -g)
	wrapper=""
	for f in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do
		if [ -s "$f" ]; then
			wrapper=$f
			break
		fi
	done
	if [ -z "$wrapper" ]; then
		echo "entrypoint: uid $uid has no passwd entry and libnss_wrapper is missing" >&2
		return 0
	fi
	# the user's name when it is a plain one no other entry has, else spark-<uid>
	name=${SPARK_USER:-}
	if ! [[ $name =~ ^[a-z_][a-z0-9_.-]{0,31}$ ]] || getent passwd "$name" >/dev/null 2>&1; then
		name=spark-$uid
	fi
	NSS_WRAPPER_PASSWD=$(mktemp "${TMPDIR:-/tmp}/passwd.XXXXXX")
	NSS_WRAPPER_GROUP=$(mktemp "${TMPDIR:-/tmp}/group.XXXXXX")
	{
		cat /etc/passwd
		printf '%s:x:%s:%s:%s:%s:/bin/false\n' "$name" "$uid" "$gid" "${SPARK_USER_NAME:-rsparkhub user}" "$SPARK_HOME"
	} >"$NSS_WRAPPER_PASSWD"
	{
		cat /etc/group
		getent group "$gid" >/dev/null 2>&1 || printf '%s:x:%s:\n' "$name" "$gid"
	} >"$NSS_WRAPPER_GROUP"
	export NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP LD_PRELOAD="$wrapper${LD_PRELOAD:+:$LD_PRELOAD}"
}

# Spark's classpath: its configuration directory (the executors' ConfigMap is mounted at
# $SPARK_CONF_DIR), what the pod adds, Spark's jars.
classpath() {
	local cp="${SPARK_CONF_DIR:-$SPARK_HOME/conf}"
	[ -z "${SPARK_CLASSPATH:-}" ] || cp="$cp:$SPARK_CLASSPATH"
	[ -z "${SPARK_EXTRA_CLASSPATH:-}" ] || cp="$cp:$SPARK_EXTRA_CLASSPATH"
	cp="$cp:$SPARK_HOME/jars/*"
	[ -z "${SPARK_DIST_CLASSPATH:-}" ] || cp="$cp:$SPARK_DIST_CLASSPATH"
	printf '%s' "$cp"
}

name_this_uid
case ${1:-} in
executor)
	shift
	# The executor's JVM options, SPARK_JAVA_OPT_0..N in numeric order (one option each,
	# taken as they are: values may hold spaces).
	java_opts=()
	while read -r i; do
		var=SPARK_JAVA_OPT_$i
		java_opts+=("${!var}")
	done < <(compgen -e | sed -n 's/^SPARK_JAVA_OPT_\([0-9][0-9]*\)$/\1/p' | sort -n)
	for var in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_APPLICATION_ID \
		SPARK_EXECUTOR_POD_IP SPARK_RESOURCE_PROFILE_ID SPARK_EXECUTOR_POD_NAME \
		SPARK_EXECUTOR_MEMORY; do
		if [ -z "${!var:-}" ]; then
			echo "entrypoint: executor without $var (set by Spark's Kubernetes backend)" >&2
			exit 64
		fi
	done
	cmd=(
		"${JAVA_HOME:+$JAVA_HOME/bin/}java"
		"${java_opts[@]}"
		"-Xms$SPARK_EXECUTOR_MEMORY"
		"-Xmx$SPARK_EXECUTOR_MEMORY"
		-cp "$(classpath)"
		org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
		--driver-url "$SPARK_DRIVER_URL"
		--executor-id "$SPARK_EXECUTOR_ID"
		--cores "$SPARK_EXECUTOR_CORES"
		--app-id "$SPARK_APPLICATION_ID"
		--hostname "$SPARK_EXECUTOR_POD_IP"
		--resourceProfileId "$SPARK_RESOURCE_PROFILE_ID"
		--podName "$SPARK_EXECUTOR_POD_NAME"
	)
	;;
driver)
	shift
	cmd=(
		"$SPARK_HOME/bin/spark-submit"
		--conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?}"
		--deploy-mode client
		"$@"
	)
	;;
"")
	echo "entrypoint: nothing to run (executor, driver ARGS... or a command)" >&2
	exit 64
	;;
*)
	cmd=("$@")
	;;
esac
exec /usr/bin/tini -s -- "${cmd[@]}"
