// Command kube-controller-manager is the upstream controller manager, built from the Go
// module proxy so Deployments in the shipwatch test cluster get ReplicaSets and Pods.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	// Registered for their side effects: client-go and version metrics the upstream binary has.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
