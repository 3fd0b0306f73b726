#!/usr/bin/env bash
# verify.sh: end-to-end check of the test cluster testenv.sh starts. Starts a cluster in a temp
# dir (or uses DIR when given, leaving it running), creates a Namespace, a ConfigMap, a
# Deployment of 2 replicas, a Service, a CRD and a custom resource through the API with curl,
# waits for the Deployment to become Available through kwok, checks the audit log, then stops.
#
#   test/k8s/verify.sh [DIR]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UA=shipwatch-testenv-verify
NS=testenv-verify
WAIT=${SHIPWATCH_TESTENV_WAIT:-120}

log() { printf '[verify %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [[ -n ${1:-} ]]; then
	DIR=$1
else
	DIR=$(mktemp -d "${TMPDIR:-/tmp}/shipwatch-testenv.XXXXXX")
	trap '"$HERE/testenv.sh" stop "$DIR"; rm -rf "$DIR"' EXIT
	t0=$SECONDS
	"$HERE/testenv.sh" start "$DIR"
	log "start took $((SECONDS - t0))s"
fi

SERVER=$(sed -n 's/^[[:space:]]*server: //p' "$DIR/kubeconfig")
api() {
	curl -sS --fail-with-body --max-time 10 -A "$UA" --cacert "$DIR/pki/ca.crt" \
		-H "Authorization: Bearer $(<"$DIR/token")" -H 'Content-Type: application/json' "$@"
}
create() { api -X POST "$SERVER$1" -d @- >/dev/null || die "create $1"; }

# until_match waits until GET PATH's body matches the extended regexp RE.
until_match() {
	local path=$1 re=$2 what=$3 t0=$SECONDS
	until api "$SERVER$path" 2>/dev/null | grep -Eq "$re"; do
		((SECONDS - t0 < WAIT)) || {
			api "$SERVER$path" >&2 || true
			die "timed out waiting for $what"
		}
		sleep 0.5
	done
	log "$what after $((SECONDS - t0))s"
}

create /api/v1/namespaces <<JSON
{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"$NS"}}
JSON
until_match "/api/v1/namespaces/$NS/serviceaccounts/default" '"name":"default"' "default ServiceAccount"

create "/api/v1/namespaces/$NS/configmaps" <<'JSON'
{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web-config"},"data":{"greeting":"hello"}}
JSON

create "/apis/apps/v1/namespaces/$NS/deployments" <<'JSON'
{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
 "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
  "template":{"metadata":{"labels":{"app":"web"}},
   "spec":{"containers":[{"name":"web","image":"registry.invalid/web:1","ports":[{"containerPort":80}],
     "envFrom":[{"configMapRef":{"name":"web-config"}}]}]}}}}
JSON

create "/api/v1/namespaces/$NS/services" <<'JSON'
{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},
 "spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":80}]}}
JSON

create /apis/apiextensions.k8s.io/v1/customresourcedefinitions <<'JSON'
{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
 "metadata":{"name":"widgets.testenv.shipwatch.io"},
 "spec":{"group":"testenv.shipwatch.io","scope":"Namespaced",
  "names":{"plural":"widgets","singular":"widget","kind":"Widget"},
  "versions":[{"name":"v1","served":true,"storage":true,
   "schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object",
    "properties":{"size":{"type":"integer"}}}}}}}]}}
JSON
until_match /apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.testenv.shipwatch.io \
	'"type":"Established","status":"True"' "CRD Established"
# Discovery of a new group lags Established by a moment; retry the first create.
t0=$SECONDS
until api -X POST "$SERVER/apis/testenv.shipwatch.io/v1/namespaces/$NS/widgets" -d @- >/dev/null 2>&1 <<'JSON'
{"apiVersion":"testenv.shipwatch.io/v1","kind":"Widget","metadata":{"name":"w1"},"spec":{"size":3}}
JSON
do
	((SECONDS - t0 < WAIT)) || die "create Widget w1"
	sleep 0.5
done
until_match "/apis/testenv.shipwatch.io/v1/namespaces/$NS/widgets/w1" '"size":3' "Widget w1 readable"

until_match "/apis/apps/v1/namespaces/$NS/deployments/web" \
	'"availableReplicas":2' "Deployment web 2/2 available"
until_match "/apis/apps/v1/namespaces/$NS/deployments/web" \
	'"type":"Available","status":"True"' "Deployment web condition Available"
pods=$(api "$SERVER/api/v1/namespaces/$NS/pods?labelSelector=app%3Dweb")
running=$(grep -o '"phase":"Running"' <<<"$pods" | wc -l)
((running == 2)) || die "want 2 Running pods, got $running"
grep -q '"nodeName":"kwok-node-0"' <<<"$pods" || die "pods not bound to kwok-node-0"
until_match "/api/v1/namespaces/$NS/endpoints/web" '"ip":' "Service web has endpoints"

# The audit log is what benchmarks count; it must carry this script's user agent and verbs.
audit=$DIR/audit.log
n_create=$(grep -F "\"userAgent\":\"$UA\"" "$audit" | grep -c '"verb":"create"' || true)
((n_create >= 6)) || die "audit log: want >= 6 create events from $UA, got $n_create"
log "audit log: $n_create create events from $UA"
if grep -qF '"greeting"' "$audit"; then die "audit log carries request bodies"; fi
log "OK"
