package docker

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shipwatch/shipwatch/manifests"
)

// hashKeyOrder is the top-level key order compose (v5) pins when it hashes a service.
// encoding/json emits struct fields in declaration order and flattens embedded structs
// where they are embedded, so compose-go moving fields into ContainerSpec/WorkloadSpec
// would change every hash; compose therefore re-emits the root object in the historical
// order, and so must we, or every container compose started would look changed to us.
// Keys missing from the list follow in sorted order.
func hashKeyOrder() []string {
	return []string{
		"profiles", "annotations", "attach", "build", "develop", "blkio_config", "cap_add",
		"cap_drop", "cgroup_parent", "cgroup", "cpu_count", "cpu_percent", "cpu_period",
		"cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpus", "cpuset", "cpu_shares",
		"command", "configs", "container_name", "credential_spec", "depends_on", "deploy",
		"device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "dockerfile",
		"domainname", "entrypoint", "provider", "environment", "env_file", "expose", "extends",
		"external_links", "extra_hosts", "group_add", "gpus", "hostname", "healthcheck", "image",
		"init", "ipc", "isolation", "labels", "label_file", "links", "logging", "log_driver",
		"log_opt", "mem_limit", "mem_reservation", "memswap_limit", "mem_swappiness",
		"mac_address", "models", "net", "network_mode", "networks", "oom_kill_disable",
		"oom_score_adj", "pid", "pids_limit", "platform", "ports", "privileged", "pull_policy",
		"read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
		"stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs",
		"tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volume_driver",
		"volumes", "volumes_from", "working_dir", "pre_start", "post_start", "pre_stop",
		"pull_refresh_after",
	}
}

// ServiceHash is compose's com.docker.compose.config-hash of a service: the sha256 of its
// JSON with the fields that do not require a new container (build, pull_policy, scale,
// deploy.replicas, depends_on, profiles) cleared, top-level keys in compose's pinned order.
// s is not modified.
func ServiceHash(s types.ServiceConfig) (string, error) {
	raw, err := hashedJSON(s)
	if err != nil {
		return "", err
	}
	pinned, err := pinKeyOrder(raw)
	if err != nil {
		return "", fmt.Errorf("hash service %s: %w", s.Name, err)
	}
	return sha256Hex(pinned), nil
}

// hashedJSON is the compact JSON of the part of a service the config hash covers.
func hashedJSON(s types.ServiceConfig) ([]byte, error) {
	s.Build = nil
	s.PullPolicy = ""
	s.Scale = nil
	if s.Deploy != nil {
		// Copy: clearing through the shared pointer would change the caller's service.
		d := *s.Deploy
		d.Replicas = nil
		s.Deploy = &d
	}
	s.DependsOn = nil
	s.Profiles = nil
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode service %s: %w", s.Name, err)
	}
	return raw, nil
}

// pinKeyOrder re-emits a JSON object with its top-level keys in hashKeyOrder, values kept
// byte for byte.
func pinKeyOrder(raw []byte) ([]byte, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("decode service json: %w", err)
	}
	keys := make([]string, 0, len(root))
	order := hashKeyOrder()
	for _, k := range order {
		if _, ok := root[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range root {
		if !slices.Contains(order, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	keys = append(keys, rest...)

	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		name, err := json.Marshal(k)
		if err != nil {
			return nil, fmt.Errorf("encode key %q: %w", k, err)
		}
		buf.Write(name)
		buf.WriteByte(':')
		buf.Write(root[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// canonicalJSON is the indented JSON of what the config hash covers, every object's keys
// sorted. It is the same subset as the hash on purpose: a diff of two canonical forms then
// shows exactly the fields that made the hash, and so the container, change.
func canonicalJSON(s types.ServiceConfig) ([]byte, error) {
	raw, err := hashedJSON(s)
	if err != nil {
		return nil, err
	}
	return indentSorted(raw)
}

// indentSorted re-encodes a JSON document with sorted keys and two-space indentation.
// Numbers go through json.Number so large integers (memory limits) keep every digit.
func indentSorted(raw []byte) ([]byte, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode canonical json: %w", err)
	}
	return out, nil
}

func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	return v, nil
}

// networkHash is compose's network config-hash. cfg.Name must already hold the engine
// name, as compose-go's loader sets it, for the hash to match compose's.
func networkHash(cfg types.NetworkConfig) (string, error) {
	raw, err := json.Marshal(&cfg)
	if err != nil {
		return "", fmt.Errorf("encode network %s: %w", cfg.Name, err)
	}
	return sha256Hex(raw), nil
}

// volumeHash is compose's volume config-hash: an empty driver counts as "local".
func volumeHash(cfg types.VolumeConfig) (string, error) {
	if cfg.Driver == "" {
		cfg.Driver = "local"
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode volume %s: %w", cfg.Name, err)
	}
	return sha256Hex(raw), nil
}

// specHash covers the config hash, the content of every repo file the service reads and,
// for a built service, the build digest: config-hash stays compose's (which ignores build),
// while a changed build context still recreates exactly the services built from it.
// Files are keyed by their path relative to the checkout, not the absolute one, so moving
// the checkout cache does not recreate anything.
func specHash(configHash string, files []manifests.RepoFile, buildDigest string) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b manifests.RepoFile) int {
		if c := cmp.Compare(a.Rel, b.Rel); c != 0 {
			return c
		}
		return cmp.Compare(a.Digest, b.Digest)
	})
	h := sha256.New()
	fmt.Fprintf(h, "config-hash %s\n", configHash)
	for _, f := range sorted {
		fmt.Fprintf(h, "file %q %s\n", f.Rel, f.Digest)
	}
	if buildDigest != "" {
		// Only when set, so services without a build keep the hash they had before.
		fmt.Fprintf(h, "build %s\n", buildDigest)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
