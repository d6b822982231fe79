package pam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"
)

// Permission is one of the 22 Gen2 Safe member permission flags.
type Permission uint8

// The 22 Gen2 permission flags, in the order psPAS and ark-sdk send them
// (pam-api.md §3.3). The order is part of the wire format of PUT bodies.
const (
	UseAccounts Permission = iota
	RetrieveAccounts
	ListAccounts
	AddAccounts
	UpdateAccountContent
	UpdateAccountProperties
	InitiateCPMAccountManagementOperations
	SpecifyNextAccountContent
	RenameAccounts
	DeleteAccounts
	UnlockAccounts
	ManageSafe
	ManageSafeMembers
	BackupSafe
	ViewAuditLog
	ViewSafeMembers
	AccessWithoutConfirmation
	CreateFolders
	DeleteFolders
	MoveAccountsAndFolders
	RequestsAuthorizationLevel1
	RequestsAuthorizationLevel2

	// NumPermissions is the number of Gen2 permission flags.
	NumPermissions = 22
)

var permissionNames = [NumPermissions]string{
	"useAccounts",
	"retrieveAccounts",
	"listAccounts",
	"addAccounts",
	"updateAccountContent",
	"updateAccountProperties",
	"initiateCPMAccountManagementOperations",
	"specifyNextAccountContent",
	"renameAccounts",
	"deleteAccounts",
	"unlockAccounts",
	"manageSafe",
	"manageSafeMembers",
	"backupSafe",
	"viewAuditLog",
	"viewSafeMembers",
	"accessWithoutConfirmation",
	"createFolders",
	"deleteFolders",
	"moveAccountsAndFolders",
	"requestsAuthorizationLevel1",
	"requestsAuthorizationLevel2",
}

// permissionByLower maps the lower-cased flag name to the flag. The server
// reads JSON keys case-insensitively, so we do too.
var permissionByLower = func() map[string]Permission {
	m := make(map[string]Permission, NumPermissions)
	for i, n := range permissionNames {
		m[strings.ToLower(n)] = Permission(i)
	}
	return m
}()

// String returns the camelCase wire name of the flag, e.g. "unlockAccounts".
func (p Permission) String() string {
	if int(p) < NumPermissions {
		return permissionNames[p]
	}
	return fmt.Sprintf("Permission(%d)", uint8(p))
}

// PermissionNames returns the 22 wire names in their canonical order.
func PermissionNames() []string {
	out := make([]string, NumPermissions)
	copy(out, permissionNames[:])
	return out
}

// ErrUnknownPermission is wrapped by ParsePermission and ParsePermSet when a
// name is not one of the 22 Gen2 flags.
var ErrUnknownPermission = fmt.Errorf("unknown permission")

// ParsePermission returns the flag named s, matched case-insensitively.
func ParsePermission(s string) (Permission, error) {
	p, ok := permissionByLower[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return 0, fmt.Errorf("%w %q (valid: %s)", ErrUnknownPermission, s, strings.Join(permissionNames[:], ", "))
	}
	return p, nil
}

// PermSet is a set of permission flags. The zero value is the empty set.
// It is a value type, safe to copy and compare with ==.
//
// In JSON (job and result messages, reports) a PermSet is a list of flag
// names in canonical order, e.g. ["listAccounts","unlockAccounts"]. It also
// decodes the PVWA object form {"listAccounts":true,...} so that either shape
// is accepted. The PVWA wire object with all 22 keys is produced by
// PermSet.Object.
type PermSet uint32

// allPerms has one bit for each of the 22 flags.
const allPerms PermSet = 1<<NumPermissions - 1

// Perms returns the set holding exactly ps.
func Perms(ps ...Permission) PermSet {
	var s PermSet
	for _, p := range ps {
		s = s.With(p)
	}
	return s
}

// ParsePermSet parses a comma-separated list of flag names ("listAccounts,
// unlockAccounts"). Names are matched case-insensitively and blanks are
// trimmed; an empty list or an unknown name is an error.
func ParsePermSet(list string) (PermSet, error) {
	var s PermSet
	n := 0
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := ParsePermission(part)
		if err != nil {
			return 0, err
		}
		s = s.With(p)
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("empty permission list")
	}
	return s, nil
}

// Has reports whether p is in s.
func (s PermSet) Has(p Permission) bool { return int(p) < NumPermissions && s&(1<<p) != 0 }

// With returns s plus p.
func (s PermSet) With(p Permission) PermSet {
	if int(p) >= NumPermissions {
		return s
	}
	return s | 1<<p
}

// Union returns every flag in s or o.
func (s PermSet) Union(o PermSet) PermSet { return s | o }

// Contains reports whether every flag of o is in s.
func (s PermSet) Contains(o PermSet) bool { return s&o == o }

// Missing returns the flags of want that s lacks.
func (s PermSet) Missing(want PermSet) PermSet { return want &^ s }

// Len returns the number of flags in s.
func (s PermSet) Len() int { return bits.OnesCount32(uint32(s & allPerms)) }

// List returns the flags of s in canonical order.
func (s PermSet) List() []Permission {
	out := make([]Permission, 0, s.Len())
	for p := Permission(0); p < NumPermissions; p++ {
		if s.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// Names returns the wire names of the flags of s in canonical order.
func (s PermSet) Names() []string {
	out := make([]string, 0, s.Len())
	for _, p := range s.List() {
		out = append(out, p.String())
	}
	return out
}

// String returns the names joined by commas ("listAccounts,unlockAccounts"),
// or "" for the empty set. ParsePermSet reads it back.
func (s PermSet) String() string { return strings.Join(s.Names(), ",") }

// Object returns the PVWA wire object with all 22 keys, true for the flags in
// s and false for the rest, in canonical order. A PUT must always send it
// whole, because PUT replaces every flag.
func (s PermSet) Object() PermObject { return PermObject(s) }

// MarshalJSON encodes s as a list of flag names.
func (s PermSet) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.Names())
}

// UnmarshalJSON accepts a list of flag names or a PVWA permissions object.
// Unknown names in a list are an error; unknown keys in an object are ignored
// (use Member.ExtraPermissions to keep them).
func (s *PermSet) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = 0
		return nil
	}
	if len(b) > 0 && b[0] == '{' {
		set, _, err := decodePermObject(b)
		if err != nil {
			return err
		}
		*s = set
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("permissions: want a list of names or an object: %w", err)
	}
	var set PermSet
	for _, n := range names {
		p, err := ParsePermission(n)
		if err != nil {
			return err
		}
		set = set.With(p)
	}
	*s = set
	return nil
}

// PermObject is a PermSet that encodes as the PVWA permissions object: all 22
// keys in canonical order, each true or false.
type PermObject PermSet

// MarshalJSON writes the 22-key object.
func (o PermObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(NumPermissions * 32)
	b.WriteByte('{')
	for i, n := range permissionNames {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(n)
		b.WriteString(`":`)
		if PermSet(o).Has(Permission(i)) {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a permissions object with keys in any case.
func (o *PermObject) UnmarshalJSON(b []byte) error {
	set, _, err := decodePermObject(b)
	if err != nil {
		return err
	}
	*o = PermObject(set)
	return nil
}

// DecodePermObject reads a PVWA permissions object with keys in any case. It
// returns the known flags that are true and, separately, any keys that are not
// one of the 22 flags (with their boolean values), so a read-modify-write can
// send back flags this client does not know. Non-boolean values of unknown
// keys are ignored; a non-boolean value for a known flag is an error.
func DecodePermObject(b []byte) (PermSet, map[string]bool, error) {
	return decodePermObject(b)
}

func decodePermObject(b []byte) (PermSet, map[string]bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return 0, nil, fmt.Errorf("permissions object: %w", err)
	}
	var set PermSet
	var extra map[string]bool
	for k, v := range raw {
		p, known := permissionByLower[strings.ToLower(k)]
		var on bool
		if err := json.Unmarshal(v, &on); err != nil {
			if known {
				return 0, nil, fmt.Errorf("permission %q: want true or false, got %s", k, v)
			}
			continue
		}
		if !known {
			if extra == nil {
				extra = make(map[string]bool)
			}
			extra[k] = on
			continue
		}
		if on {
			set = set.With(p)
		}
	}
	return set, extra, nil
}
