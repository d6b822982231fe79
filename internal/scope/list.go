package scope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Limits of a list file. They are far above any real Vault and exist so that
// a wrong file (a log, a binary, a database dump) fails fast instead of being
// read as a million Safe names.
const (
	// MaxNameLength is the longest Safe name accepted, in characters
	// (runes). Old Vaults allow 28 characters and newer ones more; the
	// list does not enforce the Vault's own limit.
	MaxNameLength = 256
	// MaxFileSize is the largest list file accepted, in bytes (50 MiB).
	MaxFileSize = 50 << 20
	// MaxEntries is the most Safe names one file may hold, duplicates
	// included.
	MaxEntries = 1_000_000
)

// Causes of a *ListError, for errors.Is. The error's message adds the detail
// (which byte, which character, which column).
var (
	// ErrTooLarge: the file is larger than MaxFileSize.
	ErrTooLarge = errors.New("file is too large")
	// ErrTooManyEntries: the file names more than MaxEntries Safes.
	ErrTooManyEntries = errors.New("too many Safe names")
	// ErrUTF16: the file starts with a UTF-16 (or UTF-32) byte order mark.
	ErrUTF16 = errors.New("file is UTF-16")
	// ErrBinary: a line holds a NUL byte, so the file is not UTF-8 text
	// (often it is UTF-16 without a byte order mark).
	ErrBinary = errors.New("binary content")
	// ErrInvalidUTF8: a line is not valid UTF-8, typically a file saved in
	// a legacy code page such as Windows-1252.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrNameTooLong: a name is longer than MaxNameLength characters.
	ErrNameTooLong = errors.New("name too long")
	// ErrInvalidChar: a name holds a character no Safe name can contain:
	// one of \ / : " < > |, a tab, another control character, or a byte
	// order mark after the start of the file. ('*' and '?' cannot occur
	// in a Safe name either, but they make a pattern; see Pattern.)
	ErrInvalidChar = errors.New("character not allowed in a Safe name")
)

// ListError is why a list file was rejected. Err wraps one of the Err*
// causes above, or the I/O error that stopped the read.
type ListError struct {
	// File is the name given to ParseList or the path given to ReadListFile.
	File string
	// Line is the 1-based line number, 0 when the error is about the whole
	// file (too large, UTF-16, unreadable).
	Line int
	// Err is the cause.
	Err error
}

// Error returns e.g. `excludedSafes.txt line 3: invalid UTF-8 (byte 0xFC at
// column 3); save the file as UTF-8`.
func (e *ListError) Error() string { return at(e.File, e.Line, e.Err.Error()) }

// at prefixes msg with "file line 3: ", "file: " or "line 3: " (line 0 is
// the whole file), for errors and warnings alike.
func at(file string, line int, msg string) string {
	switch {
	case line > 0 && file != "":
		return fmt.Sprintf("%s line %d: %s", file, line, msg)
	case line > 0:
		return fmt.Sprintf("line %d: %s", line, msg)
	case file != "":
		return file + ": " + msg
	}
	return msg
}

// Unwrap returns Err.
func (e *ListError) Unwrap() error { return e.Err }

// List is the set of Safe names and name patterns read from an --include
// or --exclude file. A line holding '*' or '?' is a Pattern; every other
// line is a plain name.
//
// Plain names are looked up in a map, so a list of a million names costs
// one lookup per Safe; patterns are tried one by one after that, so a list
// should hold few of them.
//
// A List is immutable after parsing except for the hit marks set by Seen.
// All methods are safe for concurrent use, and all are safe on a nil *List,
// which names no Safe.
type List struct {
	file     string
	names    []string       // original spelling, file order, first occurrence
	lines    []int          // line of names[i]
	index    map[string]int // fold(name) -> i, patterns included (for repeats)
	globs    []glob         // the entries that are patterns, in file order
	hits     []atomic.Bool  // hits[i]: a Seen call matched names[i]
	warnings []string
	// nWarnings counts warnings, including those beyond maxWarnings.
	nWarnings int
}

// glob is an entry of a List that holds '*' or '?'.
type glob struct {
	i int // index in names
	p Pattern
}

// utf8BOM and the UTF-16 byte order marks. The UTF-32 LE mark starts with
// the UTF-16 LE one and is reported as UTF-16, which is close enough for the
// fix ("save it as UTF-8").
var (
	utf8BOM    = []byte{0xEF, 0xBB, 0xBF}
	utf16LEBOM = []byte{0xFF, 0xFE}
	utf16BEBOM = []byte{0xFE, 0xFF}
)

// ReadListFile reads the list file at path. See ParseList for the format and
// the errors. A missing file gives a *ListError that matches fs.ErrNotExist,
// so a caller can treat a missing default exclude file as an empty one.
func ReadListFile(path string) (*List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ListError{File: path, Err: unwrapPath(err)}
	}
	defer f.Close()
	// Stat first so that a huge file is rejected without being read.
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, &ListError{File: path, Err: tooLarge(MaxFileSize)}
	}
	return ParseList(f, path)
}

// ParseList reads a list of Safe names from r. name identifies the source in
// errors and warnings (usually the file's path).
//
// The format, in short: UTF-8 with or without a byte order mark; LF, CRLF or
// CR line ends; one Safe name or pattern ('*' any run of characters, '?'
// one) per line with blanks around it trimmed; empty lines and lines whose
// first non-blank character is # are ignored. The package documentation
// has the full rules.
//
// Errors are *ListError. Duplicates and suspicious lines are not errors; they
// are reported by List.Warnings.
func ParseList(r io.Reader, name string) (*List, error) {
	return parseReader(r, name, defaultLimits)
}

// limits are MaxFileSize and MaxEntries, smaller in tests.
type limits struct {
	size    int64
	entries int
}

var defaultLimits = limits{size: MaxFileSize, entries: MaxEntries}

// maxWarnings caps List.Warnings: a file that repeats one name a million
// times deserves a hundred messages, not a million.
const maxWarnings = 100

func parseReader(r io.Reader, name string, lim limits) (*List, error) {
	data, err := io.ReadAll(io.LimitReader(r, lim.size+1))
	if err != nil {
		return nil, &ListError{File: name, Err: unwrapPath(err)}
	}
	if int64(len(data)) > lim.size {
		return nil, &ListError{File: name, Err: tooLarge(lim.size)}
	}
	return parse(data, name, lim.entries)
}

func tooLarge(limit int64) error {
	size := fmt.Sprintf("%d bytes", limit)
	if limit%(1<<20) == 0 {
		size = fmt.Sprintf("%d MiB", limit>>20)
	}
	return fmt.Errorf("%w (more than %s); is it really a list of Safe names?", ErrTooLarge, size)
}

// unwrapPath drops the *fs.PathError layer, whose message would repeat the
// path that ListError already shows; errors.Is(err, fs.ErrNotExist) still
// holds on the result.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

func parse(data []byte, file string, maxEntries int) (*List, error) {
	if bytes.HasPrefix(data, utf16LEBOM) || bytes.HasPrefix(data, utf16BEBOM) {
		return nil, &ListError{File: file, Err: fmt.Errorf("%w; save it as UTF-8", ErrUTF16)}
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	l := &List{file: file, index: make(map[string]int)}
	entries := 0
	for n := 1; len(data) > 0; n++ {
		line := data
		data = nil
		if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
			end := i + 1
			if line[i] == '\r' && end < len(line) && line[end] == '\n' {
				end++ // CRLF is one line end
			}
			line, data = line[:i], line[end:]
		}
		name, err := checkLine(line)
		if err == nil && name != "" {
			if entries++; entries > maxEntries {
				err = fmt.Errorf("%w (more than %d)", ErrTooManyEntries, maxEntries)
			}
		}
		if err != nil {
			return nil, &ListError{File: file, Line: n, Err: err}
		}
		if name != "" {
			l.add(name, n)
		}
	}
	if l.nWarnings > maxWarnings {
		l.warnings = append(l.warnings, at(l.file, 0, fmt.Sprintf("%d more warnings not shown", l.nWarnings-maxWarnings)))
	}
	l.hits = make([]atomic.Bool, len(l.names))
	return l, nil
}

// checkLine returns the Safe name on one line (without its line end), or ""
// for a blank or comment line.
func checkLine(line []byte) (string, error) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		return "", fmt.Errorf("%w (NUL byte at column %d); is the file UTF-16, or not a text file?",
			ErrBinary, utf8.RuneCount(line[:i])+1)
	}
	if !utf8.Valid(line) {
		i := invalidUTF8At(line)
		return "", fmt.Errorf("%w (byte 0x%02X at column %d); save the file as UTF-8",
			ErrInvalidUTF8, line[i], utf8.RuneCount(line[:i])+1)
	}
	s := string(line)
	name := strings.TrimSpace(s)
	if name == "" || name[0] == '#' {
		return "", nil
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLength {
		return "", fmt.Errorf("%w (%d characters, at most %d)", ErrNameTooLong, n, MaxNameLength)
	}
	lead := len(s) - len(strings.TrimLeftFunc(s, unicode.IsSpace))
	col := utf8.RuneCountInString(s[:lead])
	for _, r := range name {
		col++
		if what := forbidden(r); what != "" {
			return "", fmt.Errorf("%q: %w: %s at column %d", name, ErrInvalidChar, what, col)
		}
	}
	return name, nil
}

// invalidUTF8At returns the offset of the first byte of b that does not
// start a valid UTF-8 sequence; b must be invalid.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return 0
}

// forbidden describes r if no Safe name or pattern can contain it, else
// returns "". '*' and '?' are allowed: they make a pattern.
func forbidden(r rune) string {
	switch {
	case strings.ContainsRune(`\/:"<>|`, r):
		return "'" + string(r) + "'"
	case r == '\t':
		return "a tab"
	case r == '\uFEFF':
		// A byte order mark is only allowed at the very start; inside a
		// file it usually means two files were joined, and it would make
		// the name silently match nothing.
		return "a byte order mark (U+FEFF)"
	case unicode.IsControl(r):
		return fmt.Sprintf("control character U+%04X", r)
	}
	return ""
}

// add records name, first seen on line n, or warns about a repeat.
func (l *List) add(name string, n int) {
	key := fold(name)
	if i, dup := l.index[key]; dup {
		l.warnf(n, "%q repeats %q from line %d (names are compared ignoring case); ignored", name, l.names[i], l.lines[i])
		return
	}
	if strings.Contains(name, " #") {
		l.warnf(n, "%q contains \" #\"; only lines that start with # are comments, so all of it is read as one Safe name", name)
	}
	if p := NewPattern(name); p.IsGlob() {
		if p.MatchesAll() {
			l.warnf(n, "%q matches every Safe", name)
		}
		l.globs = append(l.globs, glob{i: len(l.names), p: p})
	}
	l.index[key] = len(l.names)
	l.names = append(l.names, name)
	l.lines = append(l.lines, n)
}

func (l *List) warnf(line int, format string, args ...any) {
	if l.nWarnings++; l.nWarnings > maxWarnings {
		return
	}
	l.warnings = append(l.warnings, at(l.file, line, fmt.Sprintf(format, args...)))
}

// File returns the name the list was parsed under (the path for
// ReadListFile).
func (l *List) File() string {
	if l == nil {
		return ""
	}
	return l.file
}

// Len returns how many distinct names and patterns (ignoring case) the list
// holds.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.names)
}

// Names returns the distinct names and patterns in file order, spelled as
// on the first line that named them. The caller owns the slice.
func (l *List) Names() []string {
	if l == nil {
		return nil
	}
	return slices.Clone(l.names)
}

// Warnings returns what was odd but accepted, one message per line
// concerned, each naming the file and line: a repeated name, a name that
// looks like it carries a trailing comment. The caller owns the slice.
func (l *List) Warnings() []string {
	if l == nil {
		return nil
	}
	return slices.Clone(l.warnings)
}

// Contains reports whether the list names safeName, ignoring case, or holds
// a pattern that matches it. The name is compared as given: it is not
// trimmed.
func (l *List) Contains(safeName string) bool {
	if l == nil {
		return false
	}
	key := fold(safeName)
	if _, ok := l.index[key]; ok {
		return true
	}
	for _, g := range l.globs {
		if g.p.MatchFolded(key) {
			return true
		}
	}
	return false
}

// Seen is Contains that also records the hit for Unmatched: on the plain
// name and on every pattern that matches safeName. Filter.Decide calls it
// for every Safe it is asked about.
func (l *List) Seen(safeName string) bool {
	if l == nil {
		return false
	}
	key := fold(safeName)
	i, ok := l.index[key]
	if ok {
		l.hits[i].Store(true)
	}
	for _, g := range l.globs {
		// A pattern already marked need not be tried once the answer is
		// known; every other one must, to be marked.
		if ok && l.hits[g.i].Load() {
			continue
		}
		if g.p.MatchFolded(key) {
			l.hits[g.i].Store(true)
			ok = true
		}
	}
	return ok
}

// Unmatched returns, in file order, the names and patterns no Seen call has
// matched: for an include list, names of Safes that do not exist or that the
// API user cannot see, and patterns that matched no Safe; for an exclude
// list, names and patterns that protect nothing, perhaps misspelt. It
// reflects the Seen calls that happened before it.
func (l *List) Unmatched() []string {
	if l == nil {
		return nil
	}
	var out []string
	for i := range l.names {
		if !l.hits[i].Load() {
			out = append(out, l.names[i])
		}
	}
	return out
}
