package pam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The PVWA is a .NET server: JSON keys are matched case-insensitively
// (encoding/json does that for struct fields), and some fields change type
// between versions. The flex types below absorb that.

// flexInt is an integer sent as a number or a quoted number. Anything else
// (null, "", garbage) reads as 0: it is used for informational fields only.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	n, ok, _ := parseJSONInt(b)
	if ok {
		*f = flexInt(n)
	} else {
		*f = 0
	}
	return nil
}

// parseJSONInt reads a JSON number or quoted number. ok is false for null,
// "" and non-numbers; bad is true for values that are present but not
// numbers.
func parseJSONInt(b []byte) (n int64, ok, bad bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return 0, false, false
	}
	s := string(b)
	if b[0] == '"' {
		if json.Unmarshal(b, &s) != nil {
			return 0, false, true
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return 0, false, false
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true, false
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) &&
		f >= math.MinInt64 && f <= math.MaxInt64 {
		return int64(f), true, false
	}
	return 0, false, true
}

// flexString is text sent as a string, or as a number or boolean (memberId
// is 217 in some versions, "65" or a GUID in others). null reads as "".
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		// Fast path: no escapes to undo.
		if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 {
			*f = flexString(b[1 : len(b)-1])
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '{' || b[0] == '[':
		return fmt.Errorf("want text, got %s", jsonKind(b))
	default:
		*f = flexString(b) // a number or a boolean, as written
	}
	return nil
}

// flexBool is a boolean sent as true/false or "true"/"false". Anything else
// reads as false.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"`)
	*f = flexBool(strings.EqualFold(s, "true"))
	return nil
}

// flexExpiry is membershipExpirationDate: null, Unix seconds as a number or
// a quoted number. Unlike flexInt it refuses anything else, because a
// misread expiry would be written back by an update.
type flexExpiry struct{ v *int64 }

func (f *flexExpiry) UnmarshalJSON(b []byte) error {
	n, ok, bad := parseJSONInt(b)
	switch {
	case bad:
		return fmt.Errorf("membershipExpirationDate: want Unix seconds or null, got %s", jsonKind(b))
	case ok:
		f.v = &n
	default:
		f.v = nil
	}
	return nil
}

// jsonKind names the JSON type of b for error messages, without quoting it.
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// pageInfo is what a list answer says besides its items.
type pageInfo struct {
	nextLink string
	count    int64
	hasCount bool
	hasList  bool
	items    int
}

// decodePage reads a list answer item by item without holding the body:
// {"value":[...],"count":N,"nextLink":"..."}, the old {"Safes":[...],
// "Total":N}, or a bare list. Keys match case-insensitively; listKeys name
// the array; unknown keys are skipped. item decodes one element.
func decodePage(r io.Reader, listKeys []string, item func(*json.Decoder) error) (pageInfo, error) {
	var pi pageInfo
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err == io.EOF {
		return pi, errors.New("empty answer")
	}
	if err != nil {
		return pi, err
	}
	readList := func() error {
		pi.hasList = true
		for dec.More() {
			if err := item(dec); err != nil {
				return fmt.Errorf("item %d: %w", pi.items, err)
			}
			pi.items++
		}
		_, err := dec.Token() // ']'
		return err
	}
	switch tok {
	case json.Delim('['):
		return pi, readList()
	case json.Delim('{'):
	default:
		return pi, errors.New("answer is not a JSON object")
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return pi, err
		}
		key, _ := kt.(string)
		switch {
		case foldIn(key, listKeys):
			t, err := dec.Token()
			if err != nil {
				return pi, err
			}
			switch t {
			case nil:
				pi.hasList = true
			case json.Delim('['):
				if err := readList(); err != nil {
					return pi, err
				}
			default:
				return pi, fmt.Errorf("%q is not a list", key)
			}
		case strings.EqualFold(key, "nextLink"):
			var s flexString
			if err := dec.Decode(&s); err != nil {
				return pi, fmt.Errorf("nextLink: %w", err)
			}
			pi.nextLink = strings.TrimSpace(string(s))
		case strings.EqualFold(key, "count"), strings.EqualFold(key, "total"):
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return pi, err
			}
			if n, ok, _ := parseJSONInt(raw); ok {
				pi.count, pi.hasCount = n, true
			}
		default:
			if err := skipValue(dec); err != nil {
				return pi, err
			}
		}
	}
	_, err = dec.Token() // '}'
	return pi, err
}

// skipValue reads past one JSON value without keeping it.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

func foldIn(s string, list []string) bool {
	for _, l := range list {
		if strings.EqualFold(s, l) {
			return true
		}
	}
	return false
}

// parseErrorBody reads an error answer: the PVWA's {"ErrorCode",
// "ErrorMessage","Details"}, Identity's OAuth {"error","error_description"},
// {"code","message"}, a JSON string, or text/HTML (an IIS error page), of
// which a short plain-text excerpt is kept.
func parseErrorBody(b []byte) (code, msg string, details []ErrorDetail) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", "", nil
	}
	switch b[0] {
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			break
		}
		found := false
		for k, v := range m {
			switch strings.ToLower(k) {
			case "errorcode", "error", "code":
				if c := jsonText(v); c != "" && (code == "" || strings.EqualFold(k, "errorcode")) {
					code, found = c, true
				}
			case "errormessage", "error_description", "message":
				if s := jsonText(v); s != "" && (msg == "" || strings.EqualFold(k, "errormessage")) {
					msg, found = s, true
				}
			case "details":
				var d []ErrorDetail
				if json.Unmarshal(v, &d) == nil && len(d) > 0 {
					details, found = d, true
				}
			}
		}
		if found {
			return code, shorten(msg, maxMessage), details
		}
	case '"':
		var s string
		if json.Unmarshal(b, &s) == nil {
			return "", shorten(s, maxMessage), nil
		}
	}
	return "", shorten(plainText(b), maxExcerpt), nil
}

const (
	maxMessage = 1000 // a PVWA ErrorMessage, kept nearly whole
	maxExcerpt = 100  // an excerpt of an HTML or text page
)

// jsonText returns a JSON string's text, or a scalar as written.
func jsonText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return strings.TrimSpace(s)
	}
	t := strings.TrimSpace(string(v))
	if t == "null" || strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		return ""
	}
	return t
}

// plainText strips tags (and the contents of head, style and script
// elements) from an HTML page and collapses white space.
func plainText(b []byte) string {
	s := string(b)
	if strings.Contains(s, "<") {
		s = stripTags(s)
	}
	return strings.Join(strings.Fields(s), " ")
}

func stripTags(s string) string {
	var out strings.Builder
	skipUntil := ""
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			if skipUntil == "" {
				out.WriteString(s)
			}
			break
		}
		if skipUntil == "" {
			out.WriteString(s[:i])
		}
		s = s[i:]
		j := strings.IndexByte(s, '>')
		if j < 0 {
			break
		}
		tag := strings.ToLower(s[1:j])
		s = s[j+1:]
		closing := strings.HasPrefix(tag, "/")
		name := strings.TrimPrefix(tag, "/")
		if k := strings.IndexAny(name, " \t\r\n/"); k >= 0 {
			name = name[:k]
		}
		switch {
		case skipUntil != "":
			if closing && name == skipUntil {
				skipUntil = ""
			}
		case !closing && (name == "style" || name == "script"):
			skipUntil = name
		default:
			out.WriteByte(' ') // tags separate words
		}
	}
	return out.String()
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n])) + "…"
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}
