// Command kube-apiserver is the upstream API server, built from the Go module proxy so the
// shipwatch test cluster needs no release tarball or container image.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	// Registered for their side effects: client-go and version metrics the upstream binary has.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
