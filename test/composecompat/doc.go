// Package composecompat checks that shipwatch stays compatible with the docker compose CLI:
// the config hash shipwatch stamps on a container (com.docker.compose.config-hash) must be
// the one compose computes for the same project, or `docker compose up` would recreate
// everything shipwatch deployed and shipwatch would report compose's containers as drift.
//
// It is a separate Go module so that the compose SDK, which the check uses as its oracle,
// never becomes a dependency of the shipwatch binary. The package has tests only.
package composecompat
