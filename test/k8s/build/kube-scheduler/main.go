// Command kube-scheduler is the upstream scheduler, built from the Go module proxy so Pods in
// the shipwatch test cluster get bound to the kwok node.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	// Registered for their side effects: client-go and version metrics the upstream binary has.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
