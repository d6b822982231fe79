package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	vcs := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "82684e5f0c1d"}, {Key: "vcs.time", Value: "2026-11-23T09:45:12Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	tagged := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.0"}}
	tests := []struct {
		name                  string
		bi                    *debug.BuildInfo
		ok                    bool
		stampV, stampR, stamT string
		want                  Info
	}{
		{"no build info", nil, false, "", "", "", Info{Version: Devel}},
		{"git checkout", vcs, true, "", "", "", Info{Version: Devel, Revision: "82684e5f0c1d", Time: "2026-11-23T09:45:12Z", Modified: true, GoVersion: "go1.26.0"}},
		{"module version", tagged, true, "", "", "", Info{Version: "v0.3.0", GoVersion: "go1.26.0"}},
		{"make build: stamped version, vcs from the toolchain", vcs, true, "v0.3.0-4-g82684e5", "", "",
			Info{Version: "v0.3.0-4-g82684e5", Revision: "82684e5f0c1d", Time: "2026-11-23T09:45:12Z", Modified: true, GoVersion: "go1.26.0"}},
		{"docker: everything stamped", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, true,
			"v0.3.0-dirty", "abc", "2026-11-24T00:00:00Z", Info{Version: "v0.3.0-dirty", Revision: "abc", Time: "2026-11-24T00:00:00Z", Modified: true, GoVersion: "go1.26.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuildInfo("planner", tt.bi, tt.ok, tt.stampV, tt.stampR, tt.stamT)
			tt.want.Program, tt.want.Platform = "planner", got.Platform
			if tt.want.GoVersion == "" {
				tt.want.GoVersion = got.GoVersion
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	in := Info{Program: "worker", Version: "v0.3.0", Revision: "abc", Time: "2026-11-23T09:45:12Z", Modified: true, GoVersion: "go1.26.0", Platform: "linux/amd64"}
	want := "worker v0.3.0 (revision abc, 2026-11-23T09:45:12Z, modified) go1.26.0 linux/amd64"
	if got := in.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Info{Program: "pvwasim", Version: Devel, GoVersion: "go1.26.0", Platform: "linux/amd64"}).String(); !strings.HasPrefix(got, "pvwasim devel go1.26.0") {
		t.Errorf("String() = %q", got)
	}
}

func TestWantsVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"--nats-url", "nats://x", "--version"}, true},
		{[]string{"--", "--version"}, false},
		{[]string{"--versions"}, false},
	}
	for _, tt := range tests {
		if got := WantsVersion(tt.args); got != tt.want {
			t.Errorf("WantsVersion(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}
