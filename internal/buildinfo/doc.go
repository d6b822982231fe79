// Package buildinfo says which build of safeperm is running: the version,
// the VCS revision and its time, whether the tree had local changes, and
// the Go toolchain, for `planner version`, `planner --version`,
// `worker --version` and `pvwasim --version`, and for the first log line
// of a long-running process.
//
// It reads runtime/debug.ReadBuildInfo, which carries the vcs.revision,
// vcs.time and vcs.modified settings when the binary was built with `go
// build` inside a git checkout, and, since Go 1.24, a main-module version
// derived from the tags ("v0.3.0", or a pseudo-version with "+dirty").
// Builds without .git (the Dockerfile's, with -buildvcs=false) stamp the
// same facts with the linker instead:
//
//	go build -ldflags "-X github.com/safeperm/safeperm/internal/buildinfo.version=v0.3.0 \
//	    -X github.com/safeperm/safeperm/internal/buildinfo.revision=$(git rev-parse HEAD) \
//	    -X github.com/safeperm/safeperm/internal/buildinfo.time=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ./cmd/...
//
// A stamped value wins over the one read from the build information; `make
// build` stamps the `git describe` version and lets the toolchain record the
// revision. A binary built neither way (go run, go test) reports version
// "devel".
package buildinfo
