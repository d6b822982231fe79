package scope

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseListAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"empty file", "", nil},
		{"only a BOM", "\uFEFF", nil},
		{"LF", "Alpha\nBeta\n", []string{"Alpha", "Beta"}},
		{"no final line end", "Alpha\nBeta", []string{"Alpha", "Beta"}},
		{"CRLF", "Alpha\r\nBeta\r\n", []string{"Alpha", "Beta"}},
		{"lone CR", "Alpha\rBeta\r", []string{"Alpha", "Beta"}},
		{"mixed line ends", "A\r\nB\rC\nD", []string{"A", "B", "C", "D"}},
		{"BOM", "\uFEFFAlpha\r\nBeta", []string{"Alpha", "Beta"}},
		{"blanks trimmed", "  Alpha \t\n\tBeta\u00A0\n\u3000Gamma", []string{"Alpha", "Beta", "Gamma"}},
		{"empty and blank lines", "\n\n  \n\t\r\nAlpha\n\r\n", []string{"Alpha"}},
		{"comments", "# header\n  # indented\n#\nAlpha\n\t#tab-indented", []string{"Alpha"}},
		{"# inside a name", "Team#1\nC# Builds", []string{"Team#1", "C# Builds"}},
		{"spaces and dots", "Finance Ops\nHR.Payroll\n a.b  c ", []string{"Finance Ops", "HR.Payroll", "a.b  c"}},
		{"non-ASCII", "Zürich Ops\nÜNÏCØDÉ\n東京\nΣίσυφος", []string{"Zürich Ops", "ÜNÏCØDÉ", "東京", "Σίσυφος"}},
		{"other punctuation", "a-b_c(d)[e]{f}'g'@h&i+j%k!l=m,n;o~p$", []string{"a-b_c(d)[e]{f}'g'@h&i+j%k!l=m,n;o~p$"}},
		{"longest name", strings.Repeat("ü", MaxNameLength), []string{strings.Repeat("ü", MaxNameLength)}},
		{"duplicates keep the first spelling", "Finance\nFINANCE\nfinance", []string{"Finance"}},
		{"patterns", "DB-*\nLab??\n*Test*\n", []string{"DB-*", "Lab??", "*Test*"}},
		{"repeated pattern", "db-*\nDB-*\n", []string{"db-*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ParseList(strings.NewReader(tt.input), "list.txt")
			if err != nil {
				t.Fatalf("ParseList(%q): %v", tt.input, err)
			}
			if got := l.Names(); !slices.Equal(got, tt.want) {
				t.Errorf("Names() = %q, want %q", got, tt.want)
			}
			if l.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", l.Len(), len(tt.want))
			}
			for _, n := range tt.want {
				if !l.Contains(n) {
					t.Errorf("Contains(%q) = false", n)
				}
			}
		})
	}
}

func TestParseListErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		input    string
		wantIs   error
		wantLine int
		wantMsg  string
	}{
		{
			name:    "UTF-16 LE",
			input:   "\xFF\xFEA\x00\n\x00",
			wantIs:  ErrUTF16,
			wantMsg: "list.txt: file is UTF-16; save it as UTF-8",
		},
		{
			name:    "UTF-16 BE",
			input:   "\xFE\xFF\x00A",
			wantIs:  ErrUTF16,
			wantMsg: "list.txt: file is UTF-16; save it as UTF-8",
		},
		{
			name:     "NUL byte",
			input:    "Alpha\nBeta\nG\x00amma\n",
			wantIs:   ErrBinary,
			wantLine: 3,
			wantMsg:  "list.txt line 3: binary content (NUL byte at column 2); is the file UTF-16, or not a text file?",
		},
		{
			name:     "UTF-16 without BOM",
			input:    "A\x00\n\x00",
			wantIs:   ErrBinary,
			wantLine: 1,
			wantMsg:  "list.txt line 1: binary content (NUL byte at column 2); is the file UTF-16, or not a text file?",
		},
		{
			name:     "Windows-1252",
			input:    "# Safes\r\nAlpha\r\nZ\xFCrich Ops\r\n",
			wantIs:   ErrInvalidUTF8,
			wantLine: 3,
			wantMsg:  "list.txt line 3: invalid UTF-8 (byte 0xFC at column 2); save the file as UTF-8",
		},
		{
			name:     "invalid UTF-8 after valid non-ASCII",
			input:    "Zürich\rÜ\xC3",
			wantIs:   ErrInvalidUTF8,
			wantLine: 2,
			wantMsg:  "list.txt line 2: invalid UTF-8 (byte 0xC3 at column 2); save the file as UTF-8",
		},
		{
			name:     "invalid UTF-8 in a comment",
			input:    "A\n\n# caf\xE9\n",
			wantIs:   ErrInvalidUTF8,
			wantLine: 3,
			wantMsg:  "list.txt line 3: invalid UTF-8 (byte 0xE9 at column 6); save the file as UTF-8",
		},
		{
			name:     "name too long",
			input:    "A\r\n\r\n" + strings.Repeat("x", MaxNameLength+1),
			wantIs:   ErrNameTooLong,
			wantLine: 3,
			wantMsg:  "list.txt line 3: name too long (257 characters, at most 256)",
		},
		{
			name:     "slash",
			input:    "Alpha\n  Finance/Ops",
			wantIs:   ErrInvalidChar,
			wantLine: 2,
			wantMsg:  `list.txt line 2: "Finance/Ops": character not allowed in a Safe name: '/' at column 10`,
		},
		{
			name:     "backslash",
			input:    `C:\Safes\list.txt`,
			wantIs:   ErrInvalidChar,
			wantLine: 1,
			wantMsg:  `list.txt line 1: "C:\\Safes\\list.txt": character not allowed in a Safe name: ':' at column 2`,
		},
		{
			name:     "tab inside a name",
			input:    "\n\nFinance\tOps",
			wantIs:   ErrInvalidChar,
			wantLine: 3,
			wantMsg:  `list.txt line 3: "Finance\tOps": character not allowed in a Safe name: a tab at column 8`,
		},
		{
			name:     "control character",
			input:    "Fin\x1bance",
			wantIs:   ErrInvalidChar,
			wantLine: 1,
			wantMsg:  `list.txt line 1: "Fin\x1bance": character not allowed in a Safe name: control character U+001B at column 4`,
		},
		{
			name:     "BOM inside the file",
			input:    "\uFEFFAlpha\n\uFEFFBeta",
			wantIs:   ErrInvalidChar,
			wantLine: 2,
			wantMsg:  `list.txt line 2: "\ufeffBeta": character not allowed in a Safe name: a byte order mark (U+FEFF) at column 1`,
		},
	}
	for _, c := range `\/:"<>|` {
		tests = append(tests, struct {
			name     string
			input    string
			wantIs   error
			wantLine int
			wantMsg  string
		}{
			name:     "forbidden " + string(c),
			input:    "ok\nab" + string(c) + "c",
			wantIs:   ErrInvalidChar,
			wantLine: 2,
			wantMsg:  "'" + string(c) + "' at column 3",
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := ParseList(strings.NewReader(tt.input), "list.txt")
			if err == nil {
				t.Fatalf("ParseList(%q) = %q, want an error", tt.input, l.Names())
			}
			le, ok := errors.AsType[*ListError](err)
			if !ok {
				t.Fatalf("error %v is %T, want *ListError", err, err)
			}
			if le.File != "list.txt" || le.Line != tt.wantLine {
				t.Errorf("error at %q line %d, want list.txt line %d", le.File, le.Line, tt.wantLine)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if msg := err.Error(); !strings.HasSuffix(msg, tt.wantMsg) {
				t.Errorf("error message\n got: %s\nwant: %s", msg, tt.wantMsg)
			}
		})
	}
}

func TestParseListLimits(t *testing.T) {
	t.Parallel()
	lim := limits{size: 64, entries: 3}
	tests := []struct {
		name    string
		input   string
		wantIs  error
		wantMsg string
	}{
		{"at the size limit", strings.Repeat("a", 64), nil, ""},
		{"over the size limit", strings.Repeat("a", 65), ErrTooLarge,
			"list.txt: file is too large (more than 64 bytes); is it really a list of Safe names?"},
		{"at the entry limit", "a\nb\n# c\n\na", nil, ""},
		{"over the entry limit", "a\nb\n# c\n\na\nd", ErrTooManyEntries, "list.txt line 6: too many Safe names (more than 3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseReader(strings.NewReader(tt.input), "list.txt", lim)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v, want %v", err, tt.wantIs)
			}
			if err != nil && err.Error() != tt.wantMsg {
				t.Errorf("error message\n got: %s\nwant: %s", err, tt.wantMsg)
			}
		})
	}
}

func TestListWarnings(t *testing.T) {
	t.Parallel()
	input := "Finance\n# comment\nÜNÏCØDÉ\nFINANCE\nünïcødé\nOps # old\nfinance\n"
	l, err := ParseList(strings.NewReader(input), "excludedSafes.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`excludedSafes.txt line 4: "FINANCE" repeats "Finance" from line 1 (names are compared ignoring case); ignored`,
		`excludedSafes.txt line 5: "ünïcødé" repeats "ÜNÏCØDÉ" from line 3 (names are compared ignoring case); ignored`,
		`excludedSafes.txt line 6: "Ops # old" contains " #"; only lines that start with # are comments, so all of it is read as one Safe name`,
		`excludedSafes.txt line 7: "finance" repeats "Finance" from line 1 (names are compared ignoring case); ignored`,
	}
	if got := l.Warnings(); !slices.Equal(got, want) {
		t.Errorf("Warnings():\n got: %q\nwant: %q", got, want)
	}
	if got, want := l.Names(), []string{"Finance", "ÜNÏCØDÉ", "Ops # old"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestListWarningsCapped(t *testing.T) {
	t.Parallel()
	input := strings.Repeat("same\n", maxWarnings+6)
	l, err := ParseList(strings.NewReader(input), "x.txt")
	if err != nil {
		t.Fatal(err)
	}
	w := l.Warnings()
	if len(w) != maxWarnings+1 {
		t.Fatalf("got %d warnings, want %d", len(w), maxWarnings+1)
	}
	if got, want := w[len(w)-1], "x.txt: 5 more warnings not shown"; got != want {
		t.Errorf("last warning %q, want %q", got, want)
	}
}

func TestListContains(t *testing.T) {
	t.Parallel()
	l, err := ParseList(strings.NewReader("Zürich Ops\nÜNÏCØDÉ\nKelvin\nStraße\nΣίσυφος\nFinance_Accounts\n"), "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"Zürich Ops", true},
		{"ZÜRICH OPS", true},
		{"zürich ops", true},
		{"ünïcødé", true},
		{"ÜnÏcØdÉ", true},
		{"\u212Aelvin", true}, // Kelvin sign folds to k
		{"STRASSE", false},    // full case folding (ß = SS) is not applied
		{"STRAẞE", true},      // capital sharp s folds to ß
		{"ΣΊΣΥΦΟΣ", true},
		{"σίσυφοσ", true}, // final and non-final sigma fold together
		{"Zurich Ops", false},
		{"Zu\u0308rich Ops", false}, // no normalization
		{" Zürich Ops", false},      // not trimmed
		{"Zürich", false},
		{"Finance", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := l.Contains(tt.name); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestListUnmatched(t *testing.T) {
	t.Parallel()
	l, err := ParseList(strings.NewReader("Alpha\nBeta\nGamma\nDelta\n"), "include.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Unmatched(), l.Names(); !slices.Equal(got, want) {
		t.Errorf("before any Seen: Unmatched() = %q, want %q", got, want)
	}
	for _, name := range []string{"BETA", "nope", "delta", "Beta"} {
		l.Seen(name)
	}
	if l.Seen("Nope") {
		t.Error(`Seen("Nope") = true for a name not in the list`)
	}
	if !l.Seen("alpha") {
		t.Error(`Seen("alpha") = false`)
	}
	if got, want := l.Unmatched(), []string{"Gamma"}; !slices.Equal(got, want) {
		t.Errorf("Unmatched() = %q, want %q", got, want)
	}
}

func TestNilList(t *testing.T) {
	t.Parallel()
	var l *List
	if l.Contains("x") || l.Seen("x") || l.Len() != 0 || l.Names() != nil ||
		l.Unmatched() != nil || l.Warnings() != nil || l.File() != "" {
		t.Error("a nil *List must name nothing")
	}
}

func TestListConcurrentUse(t *testing.T) {
	t.Parallel()
	l, err := ParseList(strings.NewReader("a\nb\nc\n"), "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for _, name := range []string{"A", "b", "x"} {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				l.Seen(name)
				l.Contains(name)
				l.Unmatched()
			}
		}()
	}
	for range 3 {
		<-done
	}
	if got, want := l.Unmatched(), []string{"c"}; !slices.Equal(got, want) {
		t.Errorf("Unmatched() = %q, want %q", got, want)
	}
}

func TestParseListReadsInPieces(t *testing.T) {
	t.Parallel()
	input := "\uFEFFAlpha\r\nZürich Ops\r\n# c\rBeta"
	l, err := ParseList(iotest.OneByteReader(strings.NewReader(input)), "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Names(), []string{"Alpha", "Zürich Ops", "Beta"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestParseListReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := ParseList(iotest.ErrReader(boom), "list.txt")
	if !errors.Is(err, boom) || err.Error() != "list.txt: boom" {
		t.Errorf("error %v, want list.txt: boom", err)
	}
}

func TestReadListFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "excludedSafes.txt")
	if err := os.WriteFile(path, []byte("\uFEFF# excluded\r\nFinance\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := ReadListFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Names(), []string{"Finance"}; !slices.Equal(got, want) || l.File() != path {
		t.Errorf("Names() = %q, File() = %q; want %q, %q", got, l.File(), want, path)
	}

	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("ok\nb\xE4d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ReadListFile(bad)
	if want := bad + " line 2: invalid UTF-8 (byte 0xE4 at column 2); save the file as UTF-8"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestReadListFileMissing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "excludedSafes.txt")
	_, err := ReadListFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want fs.ErrNotExist", err)
	}
	if le, ok := errors.AsType[*ListError](err); !ok || le.File != path {
		t.Errorf("error %#v, want a *ListError for %s", err, path)
	}
	if got := strings.Count(err.Error(), path); got != 1 {
		t.Errorf("error %q names the path %d times, want once", err, got)
	}
}

func TestReadListFileTooLarge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "huge.txt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: takes no disk space, and must be rejected without being read.
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = ReadListFile(path)
	if want := path + ": file is too large (more than 50 MiB); is it really a list of Safe names?"; !errors.Is(err, ErrTooLarge) || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestListPatterns(t *testing.T) {
	t.Parallel()
	l, err := ParseList(strings.NewReader("Finance\nDB-*\nLab??\nZü*\nunused-*\n"), "exclude.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"finance", true},
		{"Finance2", false},
		{"DB-Orders", true},
		{"db-", true},
		{"XDB-1", false},
		{"lab01", true},
		{"lab1", false},
		{"LABÖÖ", true}, // '?' is one character, not one byte
		{"ZÜRICH", true},
		{"zurich", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := l.Contains(tt.name); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := l.Unmatched(); !slices.Equal(got, l.Names()) {
		t.Errorf("Contains marked hits: Unmatched() = %q", got)
	}
	for _, name := range []string{"DB-1", "db-2", "lab77", "Other"} {
		l.Seen(name)
	}
	if got, want := l.Unmatched(), []string{"Finance", "Zü*", "unused-*"}; !slices.Equal(got, want) {
		t.Errorf("Unmatched() = %q, want %q", got, want)
	}
	// A name matched by a pattern and listed plainly marks both.
	l2 := mustList(t, "x.txt", "DB-1\nDB-*\n*1\n")
	if !l2.Seen("db-1") {
		t.Fatal(`Seen("db-1") = false`)
	}
	if got := l2.Unmatched(); len(got) != 0 {
		t.Errorf("Unmatched() = %q after a Safe matched every entry, want none", got)
	}
}

func TestListPatternWarnings(t *testing.T) {
	t.Parallel()
	l := mustList(t, "exclude.txt", "Finance\n*\n**\n")
	want := []string{
		`exclude.txt line 2: "*" matches every Safe`,
		`exclude.txt line 3: "**" matches every Safe`,
	}
	if got := l.Warnings(); !slices.Equal(got, want) {
		t.Errorf("Warnings():\n got: %q\nwant: %q", got, want)
	}
	if !l.Contains("anything") {
		t.Error(`"*" does not match "anything"`)
	}
}

func TestFilterExcludePattern(t *testing.T) {
	t.Parallel()
	f := Filter{
		Include:  mustList(t, "include.txt", "Fin*\nHR\n"),
		Exclude:  mustList(t, "exclude.txt", "*-test\n"),
		Internal: NewInternal(nil, nil),
	}
	tests := []struct {
		safe string
		want Decision
	}{
		{"Finance", Decision{In: true}},
		{"FINANCE-TEST", Decision{Reason: ReasonExcluded, Detail: "exclude.txt"}},
		{"HR", Decision{In: true}},
		{"HR-test", Decision{Reason: ReasonExcluded, Detail: "exclude.txt"}},
		{"Ops", Decision{Reason: ReasonNotIncluded, Detail: "include.txt"}},
	}
	for _, tt := range tests {
		if got := f.Decide(tt.safe); got != tt.want {
			t.Errorf("Decide(%q) = %+v, want %+v", tt.safe, got, tt.want)
		}
	}
}
