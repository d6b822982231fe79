package pamtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/safeperm/safeperm/internal/pam"
)

const hexDigits = "0123456789ABCDEF"

// escapeSafeName builds safeUrlId the way JavaScript's encodeURIComponent
// does (and pam.EscapeSafeName): letters, digits and -_.!~*'() stay, every
// other byte of the UTF-8 encoding becomes %XX, so a space is %20.
func escapeSafeName(name string) string {
	var b strings.Builder
	b.Grow(len(name) + 8)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// appendString appends s as a JSON string the way .NET writes it: UTF-8
// kept as is, only quotes, backslashes and control characters escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, `\"`...)
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}

// appendPermObject appends the 22-key permissions object.
func appendPermObject(dst []byte, s pam.PermSet) []byte {
	dst = append(dst, '{')
	for p := pam.Permission(0); p < pam.NumPermissions; p++ {
		if p > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, p.String()...)
		dst = append(dst, `":`...)
		dst = appendBool(dst, s.Has(p))
	}
	return append(dst, '}')
}

// appendPermNames appends the flags of s as a JSON list of names.
func appendPermNames(dst []byte, s pam.PermSet) []byte {
	dst = append(dst, '[')
	first := true
	for p := pam.Permission(0); p < pam.NumPermissions; p++ {
		if !s.Has(p) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, p.String()...)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

func appendIntOrNull(dst []byte, v int) []byte {
	if v == 0 {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, int64(v), 10)
}

// appendSafe appends the Safe object of GET /API/Safes.
func (v *Vault) appendSafe(dst []byte, info *SafeInfo) []byte {
	e := v.extras(info)
	dst = append(dst, `{"safeUrlId":`...)
	dst = appendString(dst, info.URLID)
	dst = append(dst, `,"safeName":`...)
	dst = appendString(dst, info.Name)
	dst = append(dst, `,"safeNumber":`...)
	dst = strconv.AppendInt(dst, info.Number, 10)
	dst = append(dst, `,"description":`...)
	dst = appendString(dst, e.description)
	dst = append(dst, `,"location":"\\","creator":{"id":`...)
	dst = appendString(dst, e.creatorID)
	dst = append(dst, `,"name":`...)
	dst = appendString(dst, e.creatorName)
	dst = append(dst, `},"olacEnabled":`...)
	dst = appendBool(dst, e.olac)
	dst = append(dst, `,"managingCPM":`...)
	dst = appendString(dst, info.ManagingCPM)
	dst = append(dst, `,"numberOfVersionsRetention":`...)
	dst = appendIntOrNull(dst, e.versions)
	dst = append(dst, `,"numberOfDaysRetention":`...)
	dst = appendIntOrNull(dst, e.days)
	dst = append(dst, `,"autoPurgeEnabled":false,"creationTime":`...)
	if info.QuotedCreationTime {
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, info.CreationTime, 10)
		dst = append(dst, '"')
	} else {
		dst = strconv.AppendInt(dst, info.CreationTime, 10)
	}
	dst = append(dst, `,"lastModificationTime":`...)
	dst = strconv.AppendInt(dst, e.lastModification, 10)
	dst = append(dst, `,"isExpiredMember":false}`...)
	return dst
}

// appendMember appends the member object of the Safe members API.
func appendMember(dst []byte, info *SafeInfo, m *member, now int64) []byte {
	dst = append(dst, `{"safeUrlId":`...)
	dst = appendString(dst, info.URLID)
	dst = append(dst, `,"safeName":`...)
	dst = appendString(dst, info.Name)
	dst = append(dst, `,"safeNumber":`...)
	dst = strconv.AppendInt(dst, info.Number, 10)
	dst = append(dst, `,"memberId":`...)
	if m.p.idNum {
		dst = append(dst, m.p.id...)
	} else {
		dst = appendString(dst, m.p.id)
	}
	dst = append(dst, `,"memberName":`...)
	dst = appendString(dst, m.p.name)
	dst = append(dst, `,"memberType":`...)
	dst = appendString(dst, memberTypeName(m.p.typ))
	dst = append(dst, `,"membershipExpirationDate":`...)
	if m.hasExpiry {
		dst = strconv.AppendInt(dst, m.expiry, 10)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"isExpiredMembershipEnable":`...)
	dst = appendBool(dst, m.expired(now))
	dst = append(dst, `,"isPredefinedUser":`...)
	dst = appendBool(dst, m.p.predefined)
	dst = append(dst, `,"isReadOnly":`...)
	dst = appendBool(dst, m.p.readOnly)
	dst = append(dst, `,"permissions":`...)
	dst = appendPermObject(dst, m.perms)
	return append(dst, '}')
}

// expired reports whether the membership has expired at Unix time now.
func (m *member) expired(now int64) bool { return m.hasExpiry && m.expiry <= now }

// errorDetail is one entry of Details.
type errorDetail struct {
	Code    string `json:"ErrorCode"`
	Message string `json:"ErrorMessage"`
}

// appendError appends {"ErrorCode","ErrorMessage"[,"Details"]}.
func appendError(dst []byte, code, msg string, details []errorDetail) []byte {
	if len(details) > 0 {
		dst = append(dst, `{"Details":[`...)
		for k, d := range details {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"ErrorCode":`...)
			dst = appendString(dst, d.Code)
			dst = append(dst, `,"ErrorMessage":`...)
			dst = appendString(dst, d.Message)
			dst = append(dst, '}')
		}
		dst = append(dst, `],"ErrorCode":`...)
	} else {
		dst = append(dst, `{"ErrorCode":`...)
	}
	dst = appendString(dst, code)
	dst = append(dst, `,"ErrorMessage":`...)
	dst = appendString(dst, msg)
	return append(dst, '}')
}

// ciObject is a JSON object whose keys are matched case-insensitively, as
// the .NET server binds request bodies.
type ciObject map[string]json.RawMessage

// errNotObject is returned by decodeObject for a body that is not an object.
var errNotObject = errors.New("request body is not a JSON object")

// decodeObject reads a JSON object; keys are lower-cased (a later key wins
// over an earlier one that differs only in case).
func decodeObject(b []byte) (ciObject, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, errNotObject
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("decode request body: %w", err)
	}
	out := make(ciObject, len(raw))
	for k, v := range raw {
		out[strings.ToLower(k)] = v
	}
	return out, nil
}

// get returns the value of key (lower-case) unless it is absent or null.
func (o ciObject) get(key string) (json.RawMessage, bool) {
	v, ok := o[key]
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

// has reports whether key is present, even as null.
func (o ciObject) has(key string) bool {
	_, ok := o[key]
	return ok
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// str returns the string value of key; ok is false when it is absent, null
// or not a string.
func (o ciObject) str(key string) (string, bool) {
	v, ok := o.get(key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// boolean returns the value of key read as .NET would: true/false or the
// strings "true"/"false" in any case.
func (o ciObject) boolean(key string) (value, ok bool) {
	v, present := o.get(key)
	if !present {
		return false, false
	}
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return b, true
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return b, true
		}
	}
	return false, false
}

// decodePermissions reads a permissions object with keys in any case.
// Missing keys are false; an unknown key, a non-boolean value or a
// non-object is an error.
func decodePermissions(v json.RawMessage) (pam.PermSet, error) {
	if v == nil || isNull(v) {
		return 0, nil
	}
	obj, err := decodeObject(v)
	if err != nil {
		return 0, err
	}
	var set pam.PermSet
	for k, raw := range obj {
		p, err := pam.ParsePermission(k)
		if err != nil {
			return 0, err
		}
		var on bool
		if err := json.Unmarshal(raw, &on); err != nil {
			return 0, fmt.Errorf("permission %q: %w", k, err)
		}
		if on {
			set = set.With(p)
		}
	}
	return set, nil
}

// decodeExpiry reads membershipExpirationDate: a non-negative integer (or a
// string holding one). It returns ok=false for any other value.
func decodeExpiry(v json.RawMessage) (int64, bool) {
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return 0, false
	}
	switch t := x.(type) {
	case json.Number:
		n = t
	case string:
		n = json.Number(strings.TrimSpace(t))
	default:
		return 0, false
	}
	e, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || e < 0 {
		return 0, false
	}
	return e, true
}
