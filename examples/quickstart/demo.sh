#!/usr/bin/env bash
# shipwatch quickstart: build a FROM scratch image locally, put the compose app in a local
# Git repository and run `shipwatch serve` on it. Needs Go, git, curl and a Docker Engine;
# no registry.
#
#   demo.sh                  start the demo (what `make demo` runs)
#   demo.sh --check          start it, roll out a commit, heal a drift, print PASS, clean up
#   demo.sh clean [--volumes]  stop it and remove its containers and networks (by label)
set -euo pipefail
# go.mod needs Go 1.27; a Go 1.26 with GOTOOLCHAIN=local fetches it through the module proxy.
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.4}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
QS="$ROOT/examples/quickstart"
DEMO="$ROOT/.demo"
REPO="$DEMO/repo"
CONFIG="$DEMO/shipwatch.yaml"
LOG="$DEMO/shipwatch.log"
PIDFILE="$DEMO/shipwatch.pid"
BIN="$ROOT/bin/shipwatch"
IMAGE="shipwatch-quickstart"
PROJECT="quickstart"
PROJECT_LABEL="com.docker.compose.project=$PROJECT"
API="127.0.0.1:9420"
WEB="127.0.0.1:8081"
STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-60}" # seconds until shipwatch is ready and the web service answers
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-90}" # seconds for a commit (poll interval 5 s) or a drift to converge

say() { printf '==> %s\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not on PATH"
	done
}

# daemon_pid prints the pid from the pid file if that process is still our shipwatch.
daemon_pid() {
	[[ -f $PIDFILE ]] || return 1
	local pid
	pid="$(<"$PIDFILE")"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# A recycled pid must not be killed: check it still runs our binary.
	# Read the whole output before matching: with pipefail, `grep -q` closing the pipe early
	# makes the writer fail with SIGPIPE (curl: "Failed writing body").
	if [[ -r /proc/$pid/cmdline ]] && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") != *"shipwatch serve"* ]]; then
		return 1
	fi
	printf '%s\n' "$pid"
}

stop_daemon() {
	local pid i
	pid="$(daemon_pid)" || return 0
	say "stopping shipwatch (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	say "shipwatch did not stop in 15 s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# remove_labelled removes the project's objects of one kind (container, network, volume),
# selected by compose's project label: never anything else on the Engine.
remove_labelled() {
	local kind="$1" ids=()
	if [[ $kind == container ]]; then
		mapfile -t ids < <(docker ps -aq --filter "label=$PROJECT_LABEL")
	else
		mapfile -t ids < <(docker "$kind" ls -q --filter "label=$PROJECT_LABEL")
	fi
	((${#ids[@]} > 0)) || return 0
	say "removing ${#ids[@]} ${kind}(s) labelled $PROJECT_LABEL"
	if [[ $kind == container ]]; then
		docker rm -f "${ids[@]}" >/dev/null
	else
		docker "$kind" rm "${ids[@]}" >/dev/null
	fi
}

clean() {
	local volumes=false arg
	for arg in "$@"; do
		case "$arg" in
		--volumes) volumes=true ;;
		*) die "clean: unknown argument $arg (use --volumes)" ;;
		esac
	done
	need docker
	stop_daemon
	remove_labelled container
	remove_labelled network
	if $volumes; then
		remove_labelled volume
	fi
	rm -rf "$DEMO"
	say "demo cleaned$($volumes && echo ', volumes removed' || echo ' (volumes kept; add --volumes to remove them)')"
}

build_image() {
	local ctx
	ctx="$(mktemp -d)"
	say "building image $IMAGE:v1 (static Go binary, FROM scratch, classic builder)"
	(cd "$ROOT" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '-s -w' -o "$ctx/app" ./examples/quickstart/app)
	cp "$QS/Dockerfile" "$ctx/Dockerfile"
	# The demo's change is an environment value, so v2 is the same image under a second tag,
	# there for anyone who wants to try an image change too.
	# The classic builder warns that it is deprecated on every run: show its output only
	# when the build fails.
	local out
	if ! out="$(DOCKER_BUILDKIT=0 docker build -t "$IMAGE:v1" -t "$IMAGE:v2" "$ctx" 2>&1)"; then
		rm -rf "$ctx"
		printf '%s\n' "$out" >&2
		die "docker build failed"
	fi
	rm -rf "$ctx"
}

make_repo() {
	say "creating the Git repository $REPO from examples/quickstart/deploy"
	mkdir -p "$REPO"
	cp "$QS/deploy/compose.yaml" "$QS/deploy/web.env" "$REPO/"
	git -C "$REPO" init -q
	git -C "$REPO" symbolic-ref HEAD refs/heads/main
	# Its own identity, so committing works without a global git config (here and for you).
	git -C "$REPO" config user.name "shipwatch demo"
	git -C "$REPO" config user.email "demo@shipwatch.invalid"
	git -C "$REPO" add compose.yaml web.env
	git -C "$REPO" commit -q -m "quickstart: web and worker"
}

write_config() {
	cat >"$CONFIG" <<EOF
# Written by examples/quickstart/demo.sh.
stateDir: $DEMO/state
listen: $API
repos:
  - name: quickstart
    url: $REPO
    interval: 5s
apps:
  - name: $PROJECT
    repo: quickstart
    ref: main
    path: .
    drift: heal
EOF
}

start_daemon() {
	"$BIN" validate --config "$CONFIG"
	say "starting shipwatch serve (log: .demo/shipwatch.log)"
	nohup "$BIN" serve --config "$CONFIG" </dev/null >>"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
}

# wait_for runs the command until it succeeds, failing after timeout seconds or as soon as
# shipwatch has exited.
wait_for() {
	local timeout="$1" what="$2" deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		daemon_pid >/dev/null || die "shipwatch exited while waiting for $what"
		((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
		sleep 1
	done
}

page_shows() {
	local body
	body=$(curl -fsS --max-time 2 "http://$WEB/") || return 1
	[[ $body == *"$1"* ]]
}

container_id() { docker ps -q --no-trunc --filter "name=^/$PROJECT-web-1\$" --filter status=running; }

# web_replaced succeeds once a running quickstart-web-1 exists that is not container $1.
web_replaced() {
	local id
	id="$(container_id)"
	[[ -n $id && $id != "$1" ]]
}

print_next_steps() {
	cat <<EOF

shipwatch is running the quickstart app from the Git repository .demo/repo.

  Open the app:          curl 127.0.0.1:8081
  shipwatch status:      curl 127.0.0.1:9420/readyz ; tail -f .demo/shipwatch.log

Deploy a change (shipwatch polls every 5 s):
  sed -i 's/v1/v2/' .demo/repo/web.env
  git -C .demo/repo commit -am "web: say v2"
  watch docker ps --filter label=com.docker.compose.project=quickstart
  curl 127.0.0.1:8081          # now shows: Hello from shipwatch v2

Cause drift and watch it heal (drift: heal):
  docker rm -f quickstart-web-1
  watch docker ps --filter label=com.docker.compose.project=quickstart

Metrics:
  curl -s 127.0.0.1:9420/metrics | grep shipwatch_

Stop shipwatch and remove the app's containers and network (the data volume is kept):
  make demo-clean
  ./examples/quickstart/demo.sh clean --volumes   # also remove the volume quickstart_data

Walk-through with expected output: docs/quickstart.md

EOF
}

on_exit() {
	local rc=$?
	((rc == 0)) && return 0
	if [[ -f $LOG ]]; then
		printf '\n--- last 50 lines of %s ---\n' "$LOG" >&2
		tail -n 50 "$LOG" >&2
	fi
	printf -- '--- containers labelled %s ---\n' "$PROJECT_LABEL" >&2
	docker ps -a --filter "label=$PROJECT_LABEL" >&2 || true
	if $CHECK; then
		clean >&2 || true
	else
		printf '\ndemo failed; run "make demo-clean" to remove what it started\n' >&2
	fi
	exit "$rc"
}

start() {
	need go git docker curl
	docker version >/dev/null 2>&1 || die "cannot reach the Docker Engine (is it running? DOCKER_HOST?)"
	# A rerun starts from scratch; the data volume is kept, like `docker compose down`.
	clean >/dev/null
	if curl -fsS --max-time 2 "http://$API/healthz" >/dev/null 2>&1; then
		die "something already listens on $API; stop it first"
	fi
	mkdir -p "$DEMO"
	# --check must test the code in the checkout, not whatever bin/ holds; it builds its own
	# copy so the user's bin/shipwatch (with its version stamp) is left alone.
	if $CHECK; then
		BIN="$DEMO/bin/shipwatch"
	fi
	if $CHECK || [[ ! -x $BIN ]]; then
		say "building ${BIN#"$ROOT"/}"
		(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/shipwatch)
	fi
	trap on_exit EXIT
	build_image
	make_repo
	write_config
	start_daemon
	say "waiting up to ${STARTUP_TIMEOUT}s for shipwatch to deploy the app"
	local deadline=$((SECONDS + STARTUP_TIMEOUT))
	wait_for "$STARTUP_TIMEOUT" "http://$API/readyz" curl -fsS --max-time 2 "http://$API/readyz"
	wait_for $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)) "http://$WEB/" curl -fsS --max-time 2 "http://$WEB/"
	say "the app answers on http://$WEB/:"
	curl -fsS "http://$WEB/" | sed -n 's:.*<h1>\(.*\)</h1>.*:  \1:p'
}

check() {
	local msg old
	page_shows "Hello from shipwatch v1" || die "the page does not show the message from web.env"

	msg="Hello from the check at $(date +%s)"
	say "committing a new web.env: MESSAGE=$msg"
	printf 'MESSAGE=%s\n' "$msg" >"$REPO/web.env"
	git -C "$REPO" commit -q -am "web: new message"
	wait_for "$ROLLOUT_TIMEOUT" "the commit to roll out" page_shows "$msg"
	say "rolled out: the page shows the new message"

	old="$(container_id)"
	[[ -n $old ]] || die "no running $PROJECT-web-1 container"
	say "causing drift: docker rm -f $PROJECT-web-1"
	docker rm -f "$PROJECT-web-1" >/dev/null
	wait_for "$ROLLOUT_TIMEOUT" "$PROJECT-web-1 to be recreated" web_replaced "$old"
	wait_for "$ROLLOUT_TIMEOUT" "the healed web service to answer" page_shows "$msg"
	say "healed: $PROJECT-web-1 is back and serves the new message"

	local metrics
	metrics=$(curl -fsS --max-time 5 "http://$API/metrics") || die "cannot read http://$API/metrics"
	grep -q '^shipwatch_' <<<"$metrics" || die "no shipwatch_ metrics on http://$API/metrics"
	trap - EXIT
	clean
	echo PASS
}

CHECK=false
case "${1:-}" in
clean)
	shift
	clean "$@"
	;;
--check)
	CHECK=true
	start
	check
	;;
"")
	start
	trap - EXIT
	print_next_steps
	;;
*) die "usage: demo.sh [--check | clean [--volumes]]" ;;
esac
