package pam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxExpiry is the latest membershipExpirationDate sent (9999-12-31T23:59:59Z);
// later values, zero and negative ones are sent as null (no expiry), as psPAS
// does, because the PVWA rejects them as out of range.
const maxExpiry = 253402300799

// memberListKeys name the array of members in a list answer.
var memberListKeys = []string{"value"}

// wireMember is a Safe member as the PVWA sends it, in any key casing.
type wireMember struct {
	SafeURLID    flexString      `json:"safeUrlId"`
	SafeName     flexString      `json:"safeName"`
	ID           flexString      `json:"memberId"`
	Name         flexString      `json:"memberName"`
	Type         flexString      `json:"memberType"`
	Expiration   flexExpiry      `json:"membershipExpirationDate"`
	IsExpired    flexBool        `json:"isExpiredMembershipEnable"`
	IsPredefined flexBool        `json:"isPredefinedUser"`
	IsReadOnly   flexBool        `json:"isReadOnly"`
	Permissions  json.RawMessage `json:"permissions"`
}

// member converts w. Without a permissions object it fails unless fallback
// is given: a member read with no permissions and written back by an update
// would lose them all.
func (w *wireMember) member(safeURLID string, fallback *Member) (Member, error) {
	m := Member{
		SafeURLID:    string(w.SafeURLID),
		SafeName:     string(w.SafeName),
		ID:           string(w.ID),
		Name:         string(w.Name),
		Type:         string(w.Type),
		Expiration:   w.Expiration.v,
		IsPredefined: bool(w.IsPredefined),
		IsReadOnly:   bool(w.IsReadOnly),
		IsExpired:    bool(w.IsExpired),
	}
	if p := bytes.TrimSpace(w.Permissions); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		set, extra, err := DecodePermObject(p)
		if err != nil {
			return Member{}, err
		}
		m.Permissions, m.ExtraPermissions = set, extra
	} else if fallback != nil {
		m.Permissions, m.ExtraPermissions = fallback.Permissions, fallback.ExtraPermissions
	} else {
		return Member{}, errors.New("member has no permissions object")
	}
	if m.SafeURLID == "" {
		m.SafeURLID = safeURLID
	}
	if fallback != nil {
		if m.Name == "" {
			m.Name = fallback.Name
		}
		if m.Type == "" {
			m.Type = fallback.Type
		}
	}
	if m.Name == "" {
		return Member{}, errors.New("member has no memberName")
	}
	return m, nil
}

// memberPath returns the escaped path of a member item, with the trailing
// slash the PVWA needs for names containing a dot.
func (c *Client) memberPath(op, safeURLID, name string) (string, error) {
	seg, err := safeSegment(op, safeURLID)
	if err != nil {
		return "", err
	}
	if name == "" || name == "." || name == ".." {
		return "", &argError{op: op, msg: "invalid member name"}
	}
	return c.apiPath("Safes", seg, "Members", escapeMemberName(name)) + "/", nil
}

// Member returns one member of a Safe (GET /API/Safes/{id}/Members/{name}/).
// A 404 matches ErrMemberNotFound, or ErrSafeNotFound for SFWS0007.
func (c *Client) Member(ctx context.Context, safeURLID, name string) (Member, error) {
	op := fmt.Sprintf("get member %q on safe %q", name, safeURLID)
	path, err := c.memberPath(op, safeURLID, name)
	if err != nil {
		return Member{}, err
	}
	rq := &request{op: op, method: http.MethodGet, route: "/API/Safes/{id}/Members/{name}", path: path, target: targetMember}
	var m Member
	err = c.do(ctx, rq, func(resp *http.Response) error {
		var w wireMember
		if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
			return err
		}
		m, err = w.member(safeURLID, nil)
		return err
	})
	return m, err
}

// MembersOptions select the members Members lists.
type MembersOptions struct {
	// IncludePredefined asks for the predefined users (Master, Batch, ...)
	// too, with the filter "includePredefinedUsers eq true" (psPAS's form).
	// Whether a PVWA honours it is not documented: a caller must not take
	// a member missing from the list for absent without a check.
	IncludePredefined bool
}

// Members lists the members of a Safe (GET /API/Safes/{id}/Members), page
// by page (Config.MembersPageSize), following nextLink when the PVWA sends
// one and offset/count otherwise. A 404 matches ErrSafeNotFound. Like
// Safes, it yields an error once, as the last value, holds one page at
// most and starts over at each range. opt is optional (at most one).
func (c *Client) Members(ctx context.Context, safeURLID string, opt ...MembersOptions) iter.Seq2[Member, error] {
	return func(yield func(Member, error) bool) {
		op := fmt.Sprintf("list members of safe %q", safeURLID)
		seg, err := safeSegment(op, safeURLID)
		if err != nil {
			yield(Member{}, err)
			return
		}
		st := &pageState{limit: c.s.membersLim}
		if len(opt) > 0 && opt[0].IncludePredefined {
			st.filter = "includePredefinedUsers eq true"
		}
		rq := &request{
			op:     op,
			method: http.MethodGet,
			route:  "/API/Safes/{id}/Members",
			path:   c.apiPath("Safes", seg, "Members"),
			query:  st.query(),
			target: targetSafe, // the list names only the Safe
		}
		listPages(ctx, c, rq, st, memberListKeys, true, func(dec *json.Decoder) (Member, error) {
			var w wireMember
			if err := dec.Decode(&w); err != nil {
				return Member{}, err
			}
			return w.member(safeURLID, nil)
		}, yield)
	}
}

// addMemberBody is the POST body. memberType is always sent: Privilege
// Cloud refuses an add without it (PASWS167E).
type addMemberBody struct {
	MemberName string     `json:"memberName"`
	MemberType string     `json:"memberType"`
	SearchIn   string     `json:"searchIn"`
	Expiration *int64     `json:"membershipExpirationDate"`
	Perms      PermObject `json:"permissions"`
}

// AddMember adds a member to a Safe (POST /API/Safes/{id}/Members/) with
// exactly m.Permissions (all 22 flags sent, the others false) and returns
// the member as the PVWA created it. m.Type is required (User, Group or
// Role, any case); m.SearchIn defaults to "Vault". A member already there
// matches ErrAlreadyMember (409 SFWS0012): read it and UpdateMember instead.
// A name the vault (or the searchIn directory) does not know matches
// ErrUnknownPrincipal, never ErrMemberNotFound; a missing Safe matches
// ErrSafeNotFound (SFWS0007). Not idempotent: do not replay blindly after a transient error; read first.
func (c *Client) AddMember(ctx context.Context, safeURLID string, m NewMember) (Member, error) {
	op := fmt.Sprintf("add member %q to safe %q", m.Name, safeURLID)
	// The item path validates the names; the POST goes to the collection.
	if _, err := c.memberPath(op, safeURLID, m.Name); err != nil {
		return Member{}, err
	}
	typ, ok := memberType(m.Type)
	if !ok {
		return Member{}, &argError{op: op, msg: fmt.Sprintf("member type %q: want User, Group or Role", m.Type)}
	}
	searchIn := strings.TrimSpace(m.SearchIn)
	if searchIn == "" {
		searchIn = "Vault"
	}
	body, err := json.Marshal(addMemberBody{
		MemberName: m.Name,
		MemberType: typ,
		SearchIn:   searchIn,
		Expiration: expiryOrNull(m.Expiration),
		Perms:      m.Permissions.Object(),
	})
	if err != nil {
		return Member{}, fmt.Errorf("%s: encode request: %w", op, err)
	}
	seg, _ := safeSegment(op, safeURLID)
	rq := &request{
		op:     op,
		method: http.MethodPost,
		route:  "/API/Safes/{id}/Members",
		path:   c.apiPath("Safes", seg, "Members") + "/",
		body:   body,
		target: targetMemberAdd,
	}
	sent := Member{SafeURLID: safeURLID, Name: m.Name, Type: typ, Expiration: expiryOrNull(m.Expiration), Permissions: m.Permissions}
	return c.memberAnswer(ctx, rq, safeURLID, sent)
}

// updateMemberBody is the PUT body: the complete new state.
type updateMemberBody struct {
	Expiration *int64    `json:"membershipExpirationDate"`
	Perms      permsBody `json:"permissions"`
}

// permsBody is the 22 flags followed by the extra keys that were read, so
// that a PUT (which replaces every flag) loses nothing it did not mean to.
type permsBody struct {
	set   PermSet
	extra map[string]bool
}

func (p permsBody) MarshalJSON() ([]byte, error) {
	b, err := p.set.Object().MarshalJSON()
	if err != nil || len(p.extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(p.extra))
	for k := range p.extra {
		if _, known := permissionByLower[strings.ToLower(k)]; !known {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = b[:len(b)-1] // '}'
	for _, k := range keys {
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b = append(b, ',')
		b = append(b, kb...)
		b = append(b, ':')
		b = strconv.AppendBool(b, p.extra[k])
	}
	return append(b, '}'), nil
}

// UpdateMember replaces a member's permissions and expiry
// (PUT /API/Safes/{id}/Members/{name}/) and returns the member as the PVWA
// stored it. The PUT replaces everything: the body carries all 22 flags
// (u.Permissions true, the rest false), u.ExtraPermissions, and u.Expiration
// (nil, zero, negative or after year 9999 is sent as null). Build u with
// UpdateOf from a fresh read. Idempotent: replaying it is safe.
func (c *Client) UpdateMember(ctx context.Context, safeURLID, name string, u MemberUpdate) (Member, error) {
	op := fmt.Sprintf("update member %q on safe %q", name, safeURLID)
	path, err := c.memberPath(op, safeURLID, name)
	if err != nil {
		return Member{}, err
	}
	exp := expiryOrNull(u.Expiration)
	body, err := json.Marshal(updateMemberBody{Expiration: exp, Perms: permsBody{set: u.Permissions, extra: u.ExtraPermissions}})
	if err != nil {
		return Member{}, fmt.Errorf("%s: encode request: %w", op, err)
	}
	rq := &request{
		op:     op,
		method: http.MethodPut,
		route:  "/API/Safes/{id}/Members/{name}",
		path:   path,
		body:   body,
		target: targetMember,
	}
	sent := Member{SafeURLID: safeURLID, Name: name, Expiration: exp, Permissions: u.Permissions, ExtraPermissions: u.ExtraPermissions}
	return c.memberAnswer(ctx, rq, safeURLID, sent)
}

// DeleteMember removes a member from a Safe
// (DELETE /API/Safes/{id}/Members/{name}/). A member already gone matches
// ErrMemberNotFound.
func (c *Client) DeleteMember(ctx context.Context, safeURLID, name string) error {
	op := fmt.Sprintf("delete member %q from safe %q", name, safeURLID)
	path, err := c.memberPath(op, safeURLID, name)
	if err != nil {
		return err
	}
	rq := &request{op: op, method: http.MethodDelete, route: "/API/Safes/{id}/Members/{name}", path: path, target: targetMember}
	return c.do(ctx, rq, nil)
}

// memberAnswer sends an add or update and reads the member in the answer.
// An empty answer, or one without permissions, is filled from what was sent.
func (c *Client) memberAnswer(ctx context.Context, rq *request, safeURLID string, sent Member) (Member, error) {
	var m Member
	err := c.do(ctx, rq, func(resp *http.Response) error {
		raw, err := readSmall(resp)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			m = sent
			return nil
		}
		var w wireMember
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("decode member: %w", err)
		}
		m, err = w.member(safeURLID, &sent)
		return err
	})
	return m, err
}

// memberType returns the PVWA spelling of a member type.
func memberType(t string) (string, bool) {
	for _, v := range [...]string{MemberTypeUser, MemberTypeGroup, MemberTypeRole} {
		if strings.EqualFold(strings.TrimSpace(t), v) {
			return v, true
		}
	}
	return "", false
}

// expiryOrNull returns exp if it is a usable expiry, else nil (null).
func expiryOrNull(exp *int64) *int64 {
	if exp == nil || *exp <= 0 || *exp > maxExpiry {
		return nil
	}
	v := *exp
	return &v
}
