package cliconf

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Log holds the logging flags.
type Log struct {
	Level  string
	Format string
}

// Register defines --log-level and --log-format on fs.
func (l *Log) Register(fs *FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug|info|warn|error")
	fs.StringVar(&l.Format, "log-format", "auto", "log format: json|console|auto (console on a terminal)")
}

// Logger builds the logger writing to w (usually stderr), with a timestamp.
func (l *Log) Logger(w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(l.Level))
	if err != nil || l.Level == "" {
		return zerolog.Nop(), &UsageError{Err: &FieldError{Field: "log-level", Value: l.Level, Err: fmt.Errorf("want debug, info, warn or error")}}
	}
	switch strings.ToLower(l.Format) {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	case "auto", "":
		if isTerminal(w) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	default:
		return zerolog.Nop(), &UsageError{Err: &FieldError{Field: "log-format", Value: l.Format, Err: fmt.Errorf("want json, console or auto")}}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
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
