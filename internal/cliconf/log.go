package cliconf

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// TimeFormat is the "time" of every JSON log line: RFC 3339 with
// milliseconds and the local offset.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// One log convention for every safeperm process (planner, worker,
// pvwasim), set once before any logger exists: durations are Go duration
// strings ("retry_in":"1.2s", "took":"350ms"), which say their unit
// whatever the key, and times carry milliseconds. zerolog's defaults
// (milliseconds as a bare float, whole seconds) read ambiguously in a log
// pipeline.
func init() {
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
	zerolog.TimeFieldFormat = TimeFormat
}

// Log holds the logging flags.
type Log struct {
	Level  string
	Format string
	// MachineOutput is set by commands whose --json was given: then "auto"
	// means JSON logs, so that a program reading JSON on stdout gets
	// JSON on stderr too, terminal or not.
	MachineOutput bool
}

// Register defines --log-level and --log-format on fs.
func (l *Log) Register(fs *FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug|info|warn|error")
	fs.StringVar(&l.Format, "log-format", "auto", "log format: json|console|auto (console on a terminal, JSON otherwise and with --json)")
}

// Logger builds the logger writing to w (usually stderr), with a timestamp.
// Format "auto" (or empty) is JSON when MachineOutput is set or w is not a
// terminal, the console format otherwise.
func (l *Log) Logger(w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(l.Level))
	if err != nil || l.Level == "" {
		return zerolog.Nop(), &UsageError{Err: &FieldError{Field: "log-level", Value: l.Level, Err: fmt.Errorf("want debug, info, warn or error")}}
	}
	console := false
	switch strings.ToLower(l.Format) {
	case "json":
	case "console":
		console = true
	case "auto", "":
		console = !l.MachineOutput && isTerminal(w)
	default:
		return zerolog.Nop(), &UsageError{Err: &FieldError{Field: "log-format", Value: l.Format, Err: fmt.Errorf("want json, console or auto")}}
	}
	return NewLogger(w, lvl, console), nil
}

// NewLogger returns a logger writing to w at lvl with a timestamp: one JSON
// object per line, or, when console is true, zerolog's console format
// (coloured only on a terminal). Every safeperm command builds its logger
// here, so the conventions above hold for all of them.
func NewLogger(w io.Writer, lvl zerolog.Level, console bool) zerolog.Logger {
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// IsTerminal reports whether w is a terminal; commands use it to choose
// between a live progress display and plain lines.
func IsTerminal(w io.Writer) bool { return isTerminal(w) }
