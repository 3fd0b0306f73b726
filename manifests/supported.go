package manifests

import (
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
)

// UnsupportedError reports a compose key (or a value of it) that shipwatch's drivers do not
// implement. shipwatch fails closed: an ignored key would deploy something other than what
// the repository says.
type UnsupportedError struct {
	// File is the compose file declaring it, relative to the checkout; empty if unknown.
	File string
	// Line is the line of the key in File; 0 if unknown.
	Line int
	// Service is the service name, empty for a top-level key.
	Service string
	// Key is the dotted key below the service (or from the top level), e.g. "deploy.resources".
	Key string
	// Value is set when the key is supported but this value of it is not.
	Value string
	// Hint says what to do instead, if there is a common answer.
	Hint string
}

// Error reads like `apps/web/compose.yaml:4: service "api": key "build" is not supported ...`.
func (e *UnsupportedError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Service != "" {
		fmt.Fprintf(&b, "service %q: ", e.Service)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "key %q value %q is not supported by shipwatch", e.Key, e.Value)
	} else {
		fmt.Fprintf(&b, "key %q is not supported by shipwatch", e.Key)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, " (%s)", e.Hint)
	}
	return b.String()
}

// supportedServicePaths is the allowlist of keys under services.<name>, in compose-go's
// canonical model (after short syntax is expanded). A key matches when listed exactly;
// its children must be listed too.
func supportedServicePaths() []string {
	return []string{
		"image", "command", "entrypoint",
		"environment", "environment.*",
		"labels", "labels.*",
		"ports", "ports.[].target", "ports.[].published", "ports.[].host_ip", "ports.[].protocol", "ports.[].mode",
		"expose",
		"volumes", "volumes.[].type", "volumes.[].source", "volumes.[].target", "volumes.[].read_only",
		"volumes.[].consistency", "volumes.[].bind", "volumes.[].bind.propagation",
		"volumes.[].bind.create_host_path", "volumes.[].bind.selinux",
		"volumes.[].volume", "volumes.[].volume.nocopy",
		"volumes.[].tmpfs", "volumes.[].tmpfs.size", "volumes.[].tmpfs.mode",
		"networks", "networks.*", "networks.*.aliases",
		"depends_on", "depends_on.*", "depends_on.*.condition", "depends_on.*.required",
		"restart",
		"healthcheck", "healthcheck.test", "healthcheck.interval", "healthcheck.timeout",
		"healthcheck.retries", "healthcheck.start_period", "healthcheck.start_interval", "healthcheck.disable",
		"user", "working_dir", "hostname", "stop_signal", "stop_grace_period",
		"configs", "configs.[].source", "configs.[].target",
		"read_only", "cap_add", "cap_drop", "init", "tmpfs",
		"extra_hosts", "extra_hosts.*", "dns", "container_name",
		"deploy", "deploy.replicas", "scale",
		"deploy.resources", "deploy.resources.limits", "deploy.resources.limits.cpus",
		"deploy.resources.limits.memory", "deploy.resources.limits.pids",
		"deploy.resources.reservations", "deploy.resources.reservations.cpus",
		"deploy.resources.reservations.memory",
		"secrets", "secrets.[].source", "secrets.[].target",
		"logging", "logging.driver", "logging.options", "logging.options.*",
		"ulimits", "ulimits.*", "ulimits.*.soft", "ulimits.*.hard",
		"sysctls", "sysctls.*",
		"privileged", "security_opt", "shm_size", "mem_limit", "mem_reservation", "cpus", "pids_limit",
		"tty", "stdin_open", "network_mode", "ipc", "pid", "pull_policy", "profiles", "volumes_from",
		"env_file", "env_file.[].path", "env_file.[].required", "env_file.[].format",
		"build", "build.context", "build.dockerfile", "build.args", "build.args.*", "build.target",
		"build.labels", "build.labels.*", "build.no_cache",
	}
}

// supportedTopLevelPaths is the allowlist outside services.
func supportedTopLevelPaths() []string {
	return []string{
		"name", "services",
		"networks", "networks.*", "networks.*.driver", "networks.*.driver_opts", "networks.*.driver_opts.*",
		"networks.*.external", "networks.*.name", "networks.*.labels", "networks.*.labels.*",
		"networks.*.internal", "networks.*.attachable", "networks.*.enable_ipv6",
		"networks.*.ipam", "networks.*.ipam.driver", "networks.*.ipam.options", "networks.*.ipam.options.*",
		"networks.*.ipam.config", "networks.*.ipam.config.[].subnet", "networks.*.ipam.config.[].gateway",
		"networks.*.ipam.config.[].ip_range", "networks.*.ipam.config.[].aux_addresses",
		"networks.*.ipam.config.[].aux_addresses.*",
		"volumes", "volumes.*", "volumes.*.driver", "volumes.*.driver_opts", "volumes.*.driver_opts.*",
		"volumes.*.external", "volumes.*.name", "volumes.*.labels", "volumes.*.labels.*",
		"configs", "configs.*", "configs.*.file",
		"secrets", "secrets.*", "secrets.*.file",
	}
}

// SupportedServiceKeys lists the service keys shipwatch deploys, as dotted paths in the
// canonical compose model ("*" is any map key, "[]" any list item), sorted. For docs.
func SupportedServiceKeys() []string {
	keys := supportedServicePaths()
	slices.Sort(keys)
	return keys
}

func supportedPaths() []tree.Path {
	var out []tree.Path
	for _, p := range supportedTopLevelPaths() {
		out = append(out, tree.Path(p))
	}
	for _, p := range supportedServicePaths() {
		out = append(out, tree.Path("services.*."+p))
	}
	return out
}

// valueRules refuse supported keys whose value the drivers cannot honour.
func valueRules() []loader.UnsupportedAttributePattern {
	oneOf := func(allowed ...string) func(any) bool {
		return func(v any) bool {
			s, ok := v.(string)
			return !ok || !slices.Contains(allowed, s)
		}
	}
	return []loader.UnsupportedAttributePattern{
		{Path: "services.*.depends_on.*.condition", Detect: oneOf("service_started", "service_healthy", "service_completed_successfully")},
		{Path: "services.*.pull_policy", Detect: oneOf("missing", "never")},
		{Path: "services.*.volumes.[].type", Detect: oneOf("bind", "volume", "tmpfs")},
		{Path: "services.*.volumes_from.[]", Detect: badVolumesFrom},
		{Path: "services.*.network_mode", Detect: namespaceModeOtherThan("host", "none", "bridge")},
		{Path: "services.*.ipc", Detect: namespaceModeOtherThan("shareable", "private", "host", "none")},
		{Path: "services.*.pid", Detect: namespaceModeOtherThan("host")},
	}
}

// namespaceModeOtherThan detects a network_mode, ipc or pid value other than the allowed
// ones and "service:<name>". "container:<name>" is refused: a container outside the project
// is not watched, so a replaced one would leave the service in a dead namespace unseen.
func namespaceModeOtherThan(allowed ...string) func(any) bool {
	return func(v any) bool {
		s, ok := v.(string)
		if !ok {
			return true
		}
		if name, ok := strings.CutPrefix(s, "service:"); ok {
			return name == ""
		}
		return !slices.Contains(allowed, s)
	}
}

// badVolumesFrom detects a volumes_from entry other than "service[:ro|rw]" or
// "container:name[:ro|rw]": the Engine would read other options (z, Z, propagation) that
// compose passes through untested.
func badVolumesFrom(v any) bool {
	s, ok := v.(string)
	if !ok {
		return true
	}
	parts := strings.Split(s, ":")
	if parts[0] == "container" {
		parts = parts[1:]
	}
	switch {
	case len(parts) == 0 || parts[0] == "":
		return true
	case len(parts) == 1:
		return false
	}
	return len(parts) > 2 || (parts[1] != "ro" && parts[1] != "rw")
}

// keyHints explain the most common refusals.
func keyHints(key string) string {
	switch {
	case strings.HasPrefix(key, "build."):
		return buildHint
	case strings.HasPrefix(key, "secrets.") && strings.HasSuffix(key, ".environment"):
		// compose would read the variable from the daemon's environment, which shipwatch
		// never reads: the secret would silently come from an env file in Git instead.
		return `only file secrets are supported: put the value in a file in the checkout and set "file"`
	case strings.HasPrefix(key, "secrets."):
		return `only "file" is supported for a secret`
	case key == "secrets[].uid" || key == "secrets[].gid" || key == "secrets[].mode":
		// compose bind-mounts file secrets outside swarm and ignores these; refusing says so.
		return "a file secret is bind-mounted with the file's own owner and mode, as docker compose does without swarm; remove it"
	case strings.HasSuffix(key, ".devices") || strings.HasSuffix(key, ".generic_resources") || strings.Contains(key, ".devices[]") || strings.Contains(key, ".generic_resources[]"):
		return "device, GPU and generic resource reservations are not supported; supported: limits cpus, memory, pids; reservations cpus, memory"
	case strings.HasPrefix(key, "deploy.resources."):
		return "supported: limits cpus, memory, pids; reservations cpus, memory"
	case strings.HasPrefix(key, "deploy."):
		return `supported: "deploy.replicas" and "deploy.resources"`
	case key == "network_mode":
		return `use "host", "none", "bridge" or "service:<name>" (a service of the project)`
	case key == "ipc":
		return `use "shareable", "private", "host", "none" or "service:<name>" (a service of the project)`
	case key == "pid":
		return `use "host" or "service:<name>" (a service of the project)`
	case key == "volumes_from[]":
		return `use "service", "service:ro", "container:name" or "container:name:ro" (mode ro or rw)`
	case key == "include":
		return "keep an app's compose files in its path and list them in files"
	}
	return ""
}

// unsupportedFromFinding turns a compose-go finding into an UnsupportedError.
func unsupportedFromFinding(f loader.UnsupportedAttribute, isValueRule bool) *UnsupportedError {
	parts := strings.Split(string(f.Path), ".")
	for i, p := range parts {
		parts[i] = tree.Path(p).String()
	}
	e := &UnsupportedError{}
	if len(parts) >= 3 && parts[0] == "services" {
		e.Service = parts[1]
		parts = parts[2:]
	}
	e.Key = strings.ReplaceAll(strings.Join(parts, "."), ".[]", "[]")
	if isValueRule {
		e.Value = fmt.Sprint(f.Value)
	}
	e.Hint = keyHints(e.Key)
	return e
}
