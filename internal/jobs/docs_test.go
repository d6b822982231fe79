package jobs_test

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/messages.md from the package documentation")

// TestMessagesDoc keeps docs/messages.md, the contract for anything that
// reads NATS, the same as the package documentation it is made from. Run
// go test ./internal/jobs -run MessagesDoc -update-docs after changing
// doc.go.
func TestMessagesDoc(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	want := messagesMarkdown(f.Doc)
	const path = "../../docs/messages.md"
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("docs/messages.md differs from internal/jobs/doc.go; run: go test ./internal/jobs -run MessagesDoc -update-docs")
	}
}

// messagesMarkdown renders the package comment as Markdown: "# Heading"
// lines become "##" sections and indented blocks fenced code.
func messagesMarkdown(doc *ast.CommentGroup) string {
	text := doc.Text()
	_, rest, _ := strings.Cut(text, ": ") // "Package jobs is safeperm's contract with NATS JetStream: "
	var b strings.Builder
	b.WriteString("# Subjects, streams and messages\n\nThis is the contract between the planner, the workers and anything else that reads NATS (generated from the `internal/jobs` package documentation by `go test ./internal/jobs -run MessagesDoc -update-docs`).\n\n")
	lines := strings.Split(strings.TrimRight(rest, "\n"), "\n")
	if len(lines) > 0 {
		lines[0] = strings.ToUpper(lines[0][:1]) + lines[0][1:]
	}
	inCode := false
	for i, l := range lines {
		code := strings.HasPrefix(l, "\t") || (inCode && l == "" && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "\t"))
		switch {
		case code && !inCode:
			b.WriteString("```\n")
			inCode = true
		case !code && inCode:
			b.WriteString("```\n")
			inCode = false
		}
		switch {
		case inCode:
			b.WriteString(strings.TrimPrefix(l, "\t"))
		case strings.HasPrefix(l, "# "):
			b.WriteString("#" + l)
		default:
			b.WriteString(l)
		}
		b.WriteString("\n")
	}
	if inCode {
		b.WriteString("```\n")
	}
	return b.String()
}
