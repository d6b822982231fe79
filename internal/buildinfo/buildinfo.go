package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time with -ldflags -X (see the package documentation); empty
// otherwise.
var (
	version  string
	revision string
	time     string
)

// Devel is the Version of a binary that carries no version at all.
const Devel = "devel"

// Info describes one build. JSON field names are stable.
type Info struct {
	// Program is the command's name ("planner", "worker", "pvwasim").
	Program string `json:"program"`
	// Version is the release ("v0.3.0"), a `git describe` string
	// ("v0.3.0-4-g82684e5-dirty"), a Go pseudo-version, or Devel.
	Version string `json:"version"`
	// Revision is the full VCS commit hash; empty when unknown.
	Revision string `json:"revision,omitempty"`
	// Time is the commit time (RFC 3339) as the VCS recorded it, or the
	// build time when stamped so; empty when unknown.
	Time string `json:"time,omitempty"`
	// Modified is true when the working tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// GoVersion is the toolchain that built the binary ("go1.26.0").
	GoVersion string `json:"go"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Read returns the build information of the running binary for program.
// It never fails: what is unknown is left empty (Version: Devel).
func Read(program string) Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(program, bi, ok, version, revision, time)
}

// fromBuildInfo merges the linker-stamped values (which win) with bi.
func fromBuildInfo(program string, bi *debug.BuildInfo, ok bool, stampedVersion, stampedRevision, stampedTime string) Info {
	in := Info{Program: program, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if ok && bi != nil {
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			in.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if stampedVersion != "" {
		in.Version = stampedVersion
		// git describe --dirty says so itself.
		if strings.HasSuffix(stampedVersion, "-dirty") {
			in.Modified = true
		}
	}
	if stampedRevision != "" {
		in.Revision = stampedRevision
	}
	if stampedTime != "" {
		in.Time = stampedTime
	}
	if in.Version == "" {
		in.Version = Devel
	}
	return in
}

// String is one line for --version:
//
//	planner v0.3.0-4-g82684e5 (revision 82684e5f0c1d…, 2026-11-23T09:45:12Z, modified) go1.26.0 linux/amd64
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", in.Program, in.Version)
	var facts []string
	if in.Revision != "" {
		facts = append(facts, "revision "+in.Revision)
	}
	if in.Time != "" {
		facts = append(facts, in.Time)
	}
	if in.Modified {
		facts = append(facts, "modified")
	}
	if len(facts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(facts, ", "))
	}
	fmt.Fprintf(&b, " %s %s", in.GoVersion, in.Platform)
	return b.String()
}

// WantsVersion reports whether args (a command's arguments, without the
// program name) ask for the version: "--version" or "-version" before any
// "--". It is checked before flags are parsed, so it works whatever else is
// on the line and never reads a SAFEPERM_VERSION variable.
func WantsVersion(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--version", "-version":
			return true
		}
	}
	return false
}
