package jobs

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/policy"
)

// The planner encodes up to millions of jobs per run, so Job has a
// hand-written encoder: about 4x faster than encoding/json and one
// allocation. It produces exactly the bytes json.Marshal would (the tests
// and FuzzDecodeJob check this), so the struct tags stay the schema.

// appendJob appends the JSON encoding of j to b.
func appendJob(b []byte, j *Job) ([]byte, error) {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(j.V), 10)
	b = append(b, `,"run":`...)
	b = appendString(b, j.Run)
	b = append(b, `,"mode":`...)
	b = appendString(b, string(j.Mode))
	b = append(b, `,"safe":{"urlId":`...)
	b = appendString(b, j.Safe.URLID)
	b = append(b, `,"name":`...)
	b = appendString(b, j.Safe.Name)
	b = append(b, '}')
	if len(j.Rules) > 0 {
		b = append(b, `,"rules":[`...)
		for i := range j.Rules {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendDirective(b, &j.Rules[i])
		}
		b = append(b, ']')
	}
	if len(j.Restore) > 0 {
		b = append(b, `,"restore":[`...)
		for i := range j.Restore {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendRestore(b, &j.Restore[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"created":"`...)
	b, err := j.Created.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, `"}`...), nil
}

func appendDirective(b []byte, d *policy.Directive) []byte {
	b = append(b, `{"rule":`...)
	b = appendString(b, d.Rule)
	b = append(b, `,"member":`...)
	b = appendMember(b, &d.Member)
	b = append(b, `,"action":`...)
	b = appendString(b, string(d.Action))
	if d.Permissions != 0 {
		b = append(b, `,"permissions":`...)
		b = appendPerms(b, d.Permissions)
	}
	if d.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, d.Source)
	}
	if d.RemoveSource {
		b = append(b, `,"removeSource":true`...)
	}
	return append(b, '}')
}

func appendMember(b []byte, m *policy.Member) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, m.Name)
	b = append(b, `,"type":`...)
	b = appendString(b, m.Type)
	if m.SearchIn != "" {
		b = append(b, `,"searchIn":`...)
		b = appendString(b, m.SearchIn)
	}
	return append(b, '}')
}

func appendRestore(b []byte, r *Restore) []byte {
	b = append(b, '{')
	if r.Rule != "" {
		b = append(b, `"rule":`...)
		b = appendString(b, r.Rule)
		b = append(b, ',')
	}
	b = append(b, `"member":`...)
	b = appendMember(b, &r.Member)
	b = append(b, `,"to":`...)
	b = appendStateOrNull(b, r.To)
	b = append(b, `,"expect":`...)
	b = appendStateOrNull(b, r.Expect)
	return append(b, '}')
}

func appendStateOrNull(b []byte, s *MemberState) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendMemberState(b, s)
}

func appendMemberState(b []byte, s *MemberState) []byte {
	b = append(b, `{"permissions":`...)
	b = appendPerms(b, s.Permissions)
	if s.Expiration != nil {
		b = append(b, `,"expiration":`...)
		b = strconv.AppendInt(b, *s.Expiration, 10)
	}
	return append(b, '}')
}

// appendPerms writes the list form of pam.PermSet's MarshalJSON.
func appendPerms(b []byte, s pam.PermSet) []byte {
	b = append(b, '[')
	first := true
	for p := pam.Permission(0); p < pam.NumPermissions; p++ {
		if !s.Has(p) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, p.String()...) // flag names need no escaping
		b = append(b, '"')
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json does
// with its default HTML escaping: <, > and & as \u003c etc., control
// characters escaped, invalid UTF-8 replaced by \ufffd, U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jobSizeHint estimates the encoded size of j to allocate once.
func jobSizeHint(j *Job) int {
	n := 120 + len(j.Run) + len(j.Safe.URLID) + len(j.Safe.Name) + len(time.RFC3339Nano)
	for i := range j.Rules {
		d := &j.Rules[i]
		n += 100 + len(d.Rule) + len(d.Member.Name) + len(d.Member.Type) + len(d.Member.SearchIn) + len(d.Source) + 24*d.Permissions.Len()
	}
	for i := range j.Restore {
		r := &j.Restore[i]
		n += 80 + len(r.Rule) + len(r.Member.Name) + len(r.Member.Type) + len(r.Member.SearchIn) + 2*(64+24*pam.NumPermissions)
	}
	return n
}
