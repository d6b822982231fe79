package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
)

// Format is the encoding of a report.
type Format string

// The report formats.
const (
	// FormatCSV is comma-separated values with a header row.
	FormatCSV Format = "csv"
	// FormatJSONL is JSON Lines: one JSON object per line.
	FormatJSONL Format = "json"
)

// String returns the format's flag name ("csv" or "json").
func (f Format) String() string { return string(f) }

// extensions maps the accepted file extensions (lower case) to formats.
var extensions = map[string]Format{
	".csv":    FormatCSV,
	".jsonl":  FormatJSONL,
	".ndjson": FormatJSONL,
	".json":   FormatJSONL,
}

// acceptedExtensions lists the keys of extensions for error messages.
const acceptedExtensions = ".csv, .jsonl, .ndjson, .json"

// FormatFromPath returns the format a report file's extension asks for,
// ignoring case: ".csv" is FormatCSV; ".jsonl", ".ndjson" and ".json" are
// FormatJSONL. Any other extension, or none, is an error naming it and the
// accepted ones.
func FormatFromPath(path string) (Format, error) {
	ext := filepath.Ext(path)
	if f, ok := extensions[strings.ToLower(ext)]; ok {
		return f, nil
	}
	if ext == "" {
		return "", fmt.Errorf("report file %q has no extension: want one of %s (or set the format explicitly)", path, acceptedExtensions)
	}
	return "", fmt.Errorf("report file %q: unknown extension %q: want one of %s (or set the format explicitly)", path, ext, acceptedExtensions)
}

// ParseFormat parses a --format value: "csv" or "json", ignoring case and
// surrounding space; "jsonl" and "ndjson" are accepted for "json".
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "csv":
		return FormatCSV, nil
	case "json", "jsonl", "ndjson":
		return FormatJSONL, nil
	}
	return "", fmt.Errorf("unknown report format %q: want csv or json", s)
}

// notMember is the CSV cell for an absent member state.
const notMember = "-"

// Header is the CSV header row, and the order of Row's JSON fields.
var Header = []string{
	"run", "mode", "safe", "safeUrlId", "rule", "member", "memberType", "status", "change",
	"permissionsBefore", "permissionsAfter", "expirationBefore", "expirationAfter",
	"added", "removed", "errorCode", "error", "reason", "attempts", "worker", "time",
}

// Row is one line of a report, about one member of one Safe: the JSON
// Lines object, and the CSV row in the order of Header. See the package
// documentation for each field.
type Row struct {
	Run       string `json:"run"`
	Mode      string `json:"mode"`
	Safe      string `json:"safe"`
	SafeURLID string `json:"safeUrlId"`
	// Rule names the rule(s) concerning the member, comma-separated; ""
	// on the row of a Safe without member entries (skipped by the
	// planner).
	Rule       string `json:"rule"`
	Member     string `json:"member"`
	MemberType string `json:"memberType"`
	// Status is the member's outcome, or the Safe's on a row without a
	// member.
	Status string `json:"status"`
	// Change is add, update, remove or "".
	Change string `json:"change"`
	// PermissionsBefore and PermissionsAfter are nil when the state is
	// absent (not a member, or not read).
	PermissionsBefore []string `json:"permissionsBefore"`
	PermissionsAfter  []string `json:"permissionsAfter"`
	// ExpirationBefore and ExpirationAfter are RFC 3339 times, nil when the
	// membership does not expire or the state is absent.
	ExpirationBefore *string `json:"expirationBefore"`
	ExpirationAfter  *string `json:"expirationAfter"`
	// Added and Removed are never nil.
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	ErrorCode string   `json:"errorCode"`
	Error     string   `json:"error"`
	Reason    string   `json:"reason"`
	Attempts  int      `json:"attempts"`
	Worker    string   `json:"worker"`
	// Time is RFC 3339 with fractional seconds, "" when unknown.
	Time string `json:"time"`
}

// RowsOf returns the report rows of one result: one per member entry, or
// one for the Safe when it has none (a Safe the planner skipped, or a job
// that failed before reading).
func RowsOf(r jobs.Result) []Row {
	base := Row{
		Run:       r.Run,
		Mode:      string(r.Mode),
		Safe:      r.Safe.Name,
		SafeURLID: r.Safe.URLID,
		Status:    string(r.Status),
		Added:     []string{},
		Removed:   []string{},
		ErrorCode: r.ErrorCode,
		Error:     r.Error,
		Reason:    r.Reason,
		Attempts:  r.Attempts,
		Worker:    r.Worker,
	}
	if !r.Time.IsZero() {
		base.Time = r.Time.UTC().Format(time.RFC3339Nano)
	}
	if len(r.Members) == 0 {
		return []Row{base}
	}
	rows := make([]Row, 0, len(r.Members))
	for _, m := range r.Members {
		row := base
		row.Rule, row.Member, row.MemberType = m.Rule, m.Member.Name, m.Member.Type
		row.Status, row.Change = string(m.Status), string(m.Change)
		row.Added, row.Removed = m.Added.Names(), m.Removed.Names()
		if m.ErrorCode != "" || m.Error != "" {
			row.ErrorCode, row.Error = m.ErrorCode, m.Error
		}
		if m.Reason != "" {
			row.Reason = m.Reason
		}
		row.PermissionsBefore, row.ExpirationBefore = state(m.Before)
		row.PermissionsAfter, row.ExpirationAfter = state(m.After)
		rows = append(rows, row)
	}
	return rows
}

// state splits a member state into its flag names (nil: absent) and
// expiration (nil: none).
func state(s *jobs.MemberState) ([]string, *string) {
	if s == nil {
		return nil, nil
	}
	var exp *string
	if s.Expiration != nil {
		t := time.Unix(*s.Expiration, 0).UTC().Format(time.RFC3339)
		exp = &t
	}
	return s.Permissions.Names(), exp
}

// record returns the CSV cells of row in the order of Header, guarding
// every cell that comes from outside safeperm against formula injection.
func (row Row) record() []string {
	return []string{
		guard(row.Run),
		row.Mode,
		guard(row.Safe),
		guard(row.SafeURLID),
		guard(row.Rule),
		guard(row.Member),
		row.MemberType,
		row.Status,
		row.Change,
		permCell(row.PermissionsBefore),
		permCell(row.PermissionsAfter),
		expCell(row.ExpirationBefore),
		expCell(row.ExpirationAfter),
		strings.Join(row.Added, " "),
		strings.Join(row.Removed, " "),
		guard(row.ErrorCode),
		guard(row.Error),
		guard(row.Reason),
		strconv.Itoa(row.Attempts),
		guard(row.Worker),
		row.Time,
	}
}

func permCell(names []string) string {
	if names == nil {
		return notMember
	}
	return strings.Join(names, " ")
}

func expCell(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// guard defuses a cell a spreadsheet would evaluate as a formula: one
// starting with '=', '+', '-', '@', tab or carriage return gets a leading
// single quote.
func guard(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// Writer writes report rows to an io.Writer in one Format. It buffers:
// call Flush at the end. It is not safe for concurrent use (watch.Options
// .OnResult and jobs.Follow call from one goroutine). The caller closes
// the underlying writer.
type Writer struct {
	format Format
	buf    *bufio.Writer
	csv    *csv.Writer
	json   *json.Encoder
	header bool // CSV header written
	err    error
}

// NewWriter returns a Writer of format f on w. An unknown format makes
// every Write and Flush fail.
func NewWriter(w io.Writer, f Format) *Writer {
	rw := &Writer{format: f, buf: bufio.NewWriter(w)}
	switch f {
	case FormatCSV:
		rw.csv = csv.NewWriter(rw.buf)
	case FormatJSONL:
		rw.json = json.NewEncoder(rw.buf)
		rw.json.SetEscapeHTML(false)
	default:
		rw.err = fmt.Errorf("report: unknown format %q: want csv or json", string(f))
	}
	return rw
}

// Write writes the rows of r (for CSV, after the header row on the first
// call). After an error, every later call returns it.
func (w *Writer) Write(r jobs.Result) error {
	if w.err != nil {
		return w.err
	}
	for _, row := range RowsOf(r) {
		switch w.format {
		case FormatCSV:
			w.writeHeader()
			if w.err == nil {
				w.setErr(w.csv.Write(row.record()))
			}
		case FormatJSONL:
			w.setErr(w.json.Encode(row))
		}
	}
	return w.err
}

// Flush writes any buffered rows to the underlying writer (for CSV, with
// the header row even when no row was written, so an empty report still
// names its columns) and returns the first error any call met.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.format == FormatCSV {
		w.writeHeader()
		if w.err != nil {
			return w.err
		}
		w.csv.Flush()
		w.setErr(w.csv.Error())
	}
	if w.err == nil {
		w.setErr(w.buf.Flush())
	}
	return w.err
}

func (w *Writer) writeHeader() {
	if w.header {
		return
	}
	w.header = true
	w.setErr(w.csv.Write(Header))
}

func (w *Writer) setErr(err error) {
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("write report: %w", err)
	}
}
