package docker

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	ctr "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// RuntimeSettings are the container settings `docker update` can change without touching
// the labels or the config hash, as the Engine reports them in ContainerInspect's
// HostConfig. They are read only when the driver inspects a container (see
// ObservedContainer.Runtime), and the planner compares nothing for one it did not inspect.
type RuntimeSettings struct {
	Memory            int64 // bytes; 0 = unlimited
	MemoryReservation int64 // bytes; 0 or -1 = none
	// MemorySwap is memory plus swap. Compose never sets it: the Engine derives it from
	// Memory, so it is not compared, only sent along when Memory is healed.
	MemorySwap int64
	NanoCPUs   int64  // 0 = unlimited
	CPUShares  int64  // 0 = the default weight (1024)
	CpusetCpus string // "" = all CPUs
	// PidsLimit is nil, 0 or -1 for unlimited, depending on the Engine and on how it was set.
	PidsLimit         *int64
	RestartPolicy     string // "no", "always", "unless-stopped", "on-failure"
	MaximumRetryCount int
}

// runtimeFromHostConfig copies what inspect reports.
func runtimeFromHostConfig(hc *ctr.HostConfig) *RuntimeSettings {
	rs := &RuntimeSettings{
		Memory:            hc.Memory,
		MemoryReservation: hc.MemoryReservation,
		MemorySwap:        hc.MemorySwap,
		NanoCPUs:          hc.NanoCPUs,
		CPUShares:         hc.CPUShares,
		CpusetCpus:        hc.CpusetCpus,
		RestartPolicy:     string(hc.RestartPolicy.Name),
		MaximumRetryCount: hc.RestartPolicy.MaximumRetryCount,
	}
	if hc.PidsLimit != nil {
		limit := *hc.PidsLimit
		rs.PidsLimit = &limit
	}
	return rs
}

// desiredRuntime is what a container created from s has, mapped by the same functions
// createOptions uses, so the comparison can never disagree with what Apply creates.
func desiredRuntime(s types.ServiceConfig) (RuntimeSettings, error) {
	var r ctr.Resources
	setResources(s, &r)
	restart, err := restartPolicy(s.Restart)
	if err != nil {
		return RuntimeSettings{}, err
	}
	return RuntimeSettings{
		Memory:            r.Memory,
		MemoryReservation: r.MemoryReservation,
		NanoCPUs:          r.NanoCPUs,
		CPUShares:         r.CPUShares,
		CpusetCpus:        r.CpusetCpus,
		PidsLimit:         r.PidsLimit,
		RestartPolicy:     string(restart.Name),
		MaximumRetryCount: restart.MaximumRetryCount,
	}, nil
}

// defaultCPUShares is the kernel's default CPU weight: a container created without
// cpu_shares reports 0 and behaves exactly as one with 1024, which is also the only way to
// give the default back with ContainerUpdate (0 there means "leave unchanged").
const defaultCPUShares = 1024

// normalised maps the Engine's several spellings of "not set" to one, so a container
// shipwatch just created never compares as drifted.
func (r RuntimeSettings) normalised() RuntimeSettings {
	r.MemorySwap = 0
	r.MemoryReservation = max(r.MemoryReservation, 0)
	if r.CPUShares == 0 {
		r.CPUShares = defaultCPUShares
	}
	var pids int64
	if r.PidsLimit != nil {
		pids = max(*r.PidsLimit, 0)
	}
	r.PidsLimit = &pids
	if r.RestartPolicy == "" {
		r.RestartPolicy = string(ctr.RestartPolicyDisabled)
	}
	if r.RestartPolicy != string(ctr.RestartPolicyOnFailure) {
		r.MaximumRetryCount = 0
	}
	return r
}

// runtimeDrift is the result of comparing a live container's runtime settings with the
// desired ones.
type runtimeDrift struct {
	// Changes are "field live -> desired", in a fixed field order.
	Changes []string
	// Unsettable names the changed fields ContainerUpdate cannot give back: the Engine
	// (20.10 and current) treats 0 as "leave unchanged" for memory, CPUs and cpuset, so a
	// limit added by hand to an unlimited service can only be removed by a recreate.
	Unsettable []string
	// Update is the ContainerUpdate request that heals the settable fields.
	Update client.ContainerUpdateOptions
}

// compareRuntime is pure: it lists what differs between want (desiredRuntime) and live
// (inspected), in the order memory, memory reservation, cpus, cpu shares, cpuset, pids
// limit, restart, and builds the update that heals it.
func compareRuntime(want, live RuntimeSettings) runtimeDrift {
	w, l := want.normalised(), live.normalised()
	var d runtimeDrift
	res := &ctr.Resources{}
	setRes := false
	note := func(field, from, to string, settable bool) {
		d.Changes = append(d.Changes, field+" "+from+" -> "+to)
		if !settable {
			d.Unsettable = append(d.Unsettable, field)
		}
		setRes = setRes || settable
	}
	if w.Memory != l.Memory {
		note("memory", formatBytes(l.Memory, "unlimited"), formatBytes(w.Memory, "unlimited"), w.Memory > 0)
		// The Engine refuses a new memory limit above the current swap limit unless swap
		// is set too; twice the memory is what it gives a container created without one.
		res.Memory, res.MemorySwap = w.Memory, 2*w.Memory
	}
	if w.MemoryReservation != l.MemoryReservation {
		note("memory reservation", formatBytes(l.MemoryReservation, "none"), formatBytes(w.MemoryReservation, "none"), true)
		res.MemoryReservation = unlimitedAsMinus1(w.MemoryReservation)
	}
	if w.NanoCPUs != l.NanoCPUs {
		note("cpus", formatCPUs(l.NanoCPUs), formatCPUs(w.NanoCPUs), w.NanoCPUs > 0)
		res.NanoCPUs = w.NanoCPUs
	}
	if w.CPUShares != l.CPUShares {
		note("cpu shares", formatShares(l.CPUShares), formatShares(w.CPUShares), true)
		res.CPUShares = w.CPUShares
	}
	if w.CpusetCpus != l.CpusetCpus {
		note("cpuset", cmp.Or(l.CpusetCpus, "all"), cmp.Or(w.CpusetCpus, "all"), w.CpusetCpus != "")
		res.CpusetCpus = w.CpusetCpus
	}
	if *w.PidsLimit != *l.PidsLimit {
		note("pids limit", formatCount(*l.PidsLimit), formatCount(*w.PidsLimit), true)
		limit := unlimitedAsMinus1(*w.PidsLimit)
		res.PidsLimit = &limit
	}
	if w.RestartPolicy != l.RestartPolicy || w.MaximumRetryCount != l.MaximumRetryCount {
		d.Changes = append(d.Changes, "restart "+formatRestart(l)+" -> "+formatRestart(w))
		d.Update.RestartPolicy = &ctr.RestartPolicy{
			Name: ctr.RestartPolicyMode(w.RestartPolicy), MaximumRetryCount: w.MaximumRetryCount,
		}
	}
	if setRes {
		d.Update.Resources = res
	}
	return d
}

// unlimitedAsMinus1 turns "unlimited" (0) into -1, the only value ContainerUpdate reads as
// "remove the limit" for the pids limit and memory reservation.
func unlimitedAsMinus1(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}

// formatBytes renders n in the largest binary unit that keeps it short: 512MiB, 1.5GiB.
func formatBytes(n int64, zero string) string {
	if n <= 0 {
		return zero
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i, size := 0, int64(1)
	for i < len(units)-1 && n >= size<<10 {
		i, size = i+1, size<<10
	}
	if n%size == 0 {
		return strconv.FormatInt(n/size, 10) + units[i]
	}
	v := strconv.FormatFloat(float64(n)/float64(size), 'f', 2, 64)
	return strings.TrimRight(strings.TrimRight(v, "0"), ".") + units[i]
}

func formatCPUs(nano int64) string {
	if nano <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(float64(nano)/1e9, 'f', -1, 64)
}

func formatShares(n int64) string {
	if n == defaultCPUShares {
		return "default"
	}
	return strconv.FormatInt(n, 10)
}

func formatCount(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

func formatRestart(r RuntimeSettings) string {
	if r.RestartPolicy == string(ctr.RestartPolicyOnFailure) && r.MaximumRetryCount > 0 {
		return fmt.Sprintf("%s:%d", r.RestartPolicy, r.MaximumRetryCount)
	}
	return r.RestartPolicy
}
