package config

import (
	"slices"
	"strings"
	"testing"
)

func TestServerDefaults(t *testing.T) {
	cfg, err := Parse("shipwatch.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	if s.MaxConnections != DefaultMaxConnections || s.MaxConnectionsPerAddress != DefaultMaxConnectionsPerAddress || len(s.AllowedHosts) != 0 {
		t.Errorf("server defaults = %+v", s)
	}
	// A total below the per-address default lowers the per-address default with it.
	cfg, err = Parse("shipwatch.yaml", []byte(valid+"server:\n  maxConnections: 8\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.MaxConnectionsPerAddress != 8 {
		t.Errorf("per-address default with maxConnections 8 = %d", cfg.Server.MaxConnectionsPerAddress)
	}
	cfg, err = Parse("shipwatch.yaml", []byte(valid+"server:\n  allowedHosts: [shipwatch.example.com, '*', 10.0.0.5, '::1', deploy.]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"shipwatch.example.com", "*", "10.0.0.5", "::1", "deploy."}; !slices.Equal(cfg.Server.AllowedHosts, want) {
		t.Errorf("allowedHosts = %q", cfg.Server.AllowedHosts)
	}
}

func TestServerErrorsNameFileLineAndKey(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"zero connections": {"server:\n  maxConnections: 0\n",
			"shipwatch.yaml:15: server.maxConnections: must be at least 1, not 0"},
		"negative per address": {"server:\n  maxConnectionsPerAddress: -1\n",
			"shipwatch.yaml:15: server.maxConnectionsPerAddress: must be at least 1"},
		"per address above total": {"server:\n  maxConnections: 10\n  maxConnectionsPerAddress: 11\n",
			"shipwatch.yaml:16: server.maxConnectionsPerAddress: 11 is more than server.maxConnections (10)"},
		"host with port": {"server:\n  allowedHosts:\n    - ok.example.com\n    - shipwatch.example.com:9420\n",
			"shipwatch.yaml:17: server.allowedHosts[1]: \"shipwatch.example.com:9420\" is not a host name"},
		"host with scheme": {"server:\n  allowedHosts: [\"https://shipwatch.example.com\"]\n",
			"server.allowedHosts[0]: \"https://shipwatch.example.com\" is not a host name"},
		"unknown key": {"server:\n  maxConns: 3\n", `unknown key "maxConns"`},
	}
	for name, c := range cases {
		_, err := Parse("shipwatch.yaml", []byte(valid+c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}
