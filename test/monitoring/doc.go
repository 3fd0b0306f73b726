// Package monitoring checks the example Prometheus rules and Grafana dashboard against
// shipwatch's real metrics registry. It is a separate module so the product's go.mod does
// not pull in Prometheus server code.
package monitoring
