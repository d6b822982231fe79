package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// validateDockerfile checks the root Dockerfile: a cached module layer, a static trimmed build
// of the three commands, a distroless non-root final stage, and any SAFEPERM_* variable or
// safeperm command line in it against c.
func validateDockerfile(t *testing.T, root string, c *cli) []error {
	const where = "Dockerfile"
	b, err := os.ReadFile(filepath.Join(root, where))
	if err != nil {
		return []error{err}
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	errs := scanEnvNames(where, text, c)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }

	var froms []int
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, i)
		case "ENV":
			for _, name := range envTokenRE.FindAllString(line, -1) {
				if !c.everyEnv(name) {
					bad("ENV %s: an image-wide variable must be accepted by every command", name)
				}
			}
		case "CMD", "ENTRYPOINT":
			var argv []string
			rest := strings.TrimSpace(line[len(fields[0]):])
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				bad("%s must be an exec-form JSON array (there is no shell): %v", fields[0], err)
				continue
			}
			if len(argv) > 0 && argv[0] != plannerPath && argv[0] != workerPath {
				bad("%s %q: want %s or %s", fields[0], argv, plannerPath, workerPath)
			}
			_, ferrs := c.checkArgv(argv)
			errs = append(errs, wrap(where+": "+fields[0], ferrs...)...)
		}
	}
	if len(froms) < 2 {
		bad("want a multi-stage build (builder + final), found %d FROM", len(froms))
		return errs
	}
	builder := regexp.MustCompile(`(?i)^FROM\s+(--platform=\S+\s+)?golang:1\.26\S*\s+AS\s+\S+`)
	if !builder.MatchString(lines[froms[0]]) {
		bad("first stage %q: want FROM golang:1.26 AS <name>", lines[froms[0]])
	}
	final := strings.Join(lines[froms[len(froms)-1]:], "\n")
	if !regexp.MustCompile(`(?m)^FROM\s+(gcr\.io/distroless/static-debian12:nonroot|scratch)\s*$`).MatchString(final) {
		bad("final stage: want FROM gcr.io/distroless/static-debian12:nonroot (or scratch)")
	}
	if !regexp.MustCompile(`(?m)^USER\s+65532:65532\s*$`).MatchString(final) {
		bad("final stage: want USER 65532:65532")
	}
	if !regexp.MustCompile(`(?m)^COPY\s+--from=\S+\s+.*\s/usr/local/bin/\s*$`).MatchString(final) {
		bad("final stage: the binaries must be copied to /usr/local/bin/")
	}
	build := strings.Join(lines[froms[0]:froms[len(froms)-1]], "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags=\"-s -w", "internal/buildinfo.version=${VERSION}", "internal/buildinfo.revision=${REVISION}", "./cmd/planner", "./cmd/worker", "./cmd/pvwasim"} {
		if !strings.Contains(build, want) {
			bad("build stage lacks %s", want)
		}
	}
	mods := strings.Index(build, "COPY go.mod go.sum")
	dl := strings.Index(build, "go mod download")
	src := strings.Index(build, "COPY . .")
	if mods < 0 || dl < mods || src < dl {
		bad("copy go.mod go.sum and run go mod download before COPY . . (so the module layer is cached)")
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		bad(".dockerignore: %v", err)
	} else if !regexp.MustCompile(`(?m)^\.git/?\s*$`).Match(ignore) {
		bad(".dockerignore must exclude .git")
	}
	return errs
}

// shellOps end a command inside a documented shell line.
var shellOps = map[string]bool{"|": true, "||": true, "&&": true, ";": true, "&": true, ">": true, "2>&1": true, ">>": true}

// validateDocs checks docs/deploy.md and deploy/**/*.md: every SAFEPERM_* name is accepted,
// and every planner/worker command line in a code block is valid.
func validateDocs(t *testing.T, root string, c *cli) []error {
	docs := []string{filepath.Join(root, "docs", "deploy.md")}
	more, _ := filepath.Glob(filepath.Join(root, "deploy", "*.md"))
	docs = append(docs, more...)
	more, _ = filepath.Glob(filepath.Join(root, "deploy", "*", "*.md"))
	docs = append(docs, more...)
	var errs []error
	commands := 0
	for _, path := range docs {
		rel, _ := filepath.Rel(root, path)
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, scanEnvNames(rel, string(b), c)...)
		inCode := false
		lines := strings.Split(string(b), "\n")
		for i := 0; i < len(lines); i++ {
			n := i + 1
			line := lines[i]
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
				continue
			}
			if !inCode {
				continue
			}
			for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(line, "\\") + " " + lines[i]
			}
			if j := strings.Index(line, " #"); j >= 0 {
				line = line[:j]
			}
			words := splitWords(strings.TrimPrefix(strings.TrimSpace(line), "$ "))
			for k, w := range words {
				if w != "planner" && w != "worker" && w != plannerPath && w != workerPath {
					continue
				}
				argv := []string{w}
				for _, x := range words[k+1:] {
					if shellOps[x] {
						break
					}
					argv = append(argv, x)
				}
				if w == "planner" && len(argv) > 1 && !strings.HasPrefix(argv[1], "-") || w != "planner" {
					commands++
					_, ferrs := c.checkArgv(argv)
					errs = append(errs, wrap(fmt.Sprintf("%s:%d", rel, n), ferrs...)...)
				}
				break
			}
		}
	}
	if commands == 0 {
		errs = append(errs, fmt.Errorf("docs/deploy.md: no planner/worker command lines in code blocks"))
	}
	return errs
}
