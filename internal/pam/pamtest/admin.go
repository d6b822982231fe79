package pamtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/safeperm/safeperm/internal/pam"
)

// MemberState is one member of a Safe as SafeState and the admin API show
// it, and as SetMember takes it.
type MemberState struct {
	// Name is memberName (mandatory for SetMember).
	Name string `json:"memberName"`
	// Type is memberType; SetMember defaults it to the directory's type,
	// or User for a name the directory does not know.
	Type string `json:"memberType,omitempty"`
	// ID is memberId as text; SetMember defaults it to the directory's id.
	ID string `json:"memberId,omitempty"`
	// Permissions are the flags held. In JSON a list of names; SetMember
	// also accepts the PVWA object form.
	Permissions pam.PermSet `json:"permissions"`
	// Expiration is membershipExpirationDate in Unix seconds, nil for none.
	Expiration *int64 `json:"membershipExpirationDate"`
	// Predefined is isPredefinedUser.
	Predefined bool `json:"isPredefinedUser"`
}

func (m *member) state() MemberState {
	s := MemberState{Name: m.p.name, Type: memberTypeName(m.p.typ), ID: m.p.id, Permissions: m.perms, Predefined: m.p.predefined}
	if m.hasExpiry {
		e := m.expiry
		s.Expiration = &e
	}
	return s
}

// SafeState is the current state of one Safe.
type SafeState struct {
	// Index is the Safe's index (its place in listings).
	Index int `json:"index"`
	// Name, URLID, Number and ManagingCPM are safeName, safeUrlId,
	// safeNumber and managingCPM.
	Name        string `json:"safeName"`
	URLID       string `json:"safeUrlId"`
	Number      int64  `json:"safeNumber"`
	ManagingCPM string `json:"managingCPM"`
	// Internal is true for a built-in Safe.
	Internal bool `json:"internal"`
	// Class is the seeded class (it does not follow changes).
	Class Class `json:"class"`
	// Changed is true when the Safe was changed since start (through the
	// API or the admin mutations), even if changed back.
	Changed bool `json:"changed"`
	// Deleted is true for a deleted Safe, which has no members.
	Deleted bool `json:"deleted"`
	// Members are the current members, predefined users included, in
	// listing order.
	Members []MemberState `json:"members"`
}

// Member returns the member named name (case-insensitively).
func (s SafeState) Member(name string) (MemberState, bool) {
	for _, m := range s.Members {
		if strings.EqualFold(m.Name, name) {
			return m, true
		}
	}
	return MemberState{}, false
}

// snapshot returns the current members of Safe i and its flags.
func (h *Handler) snapshot(info *SafeInfo, dst []member) (members []member, changed, deleted bool) {
	sh := h.st.shard(info.Index)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ov := sh.m[int32(info.Index)]
	if ov != nil && ov.deleted {
		return dst, true, true
	}
	return h.st.membersLocked(info, ov, dst), ov != nil, false
}

// SafeStateAt returns the current state of Safe i; it panics if i is out
// of range.
func (h *Handler) SafeStateAt(i int) SafeState {
	info := h.v.info(i, true)
	ms, changed, deleted := h.snapshot(&info, nil)
	s := SafeState{Index: i, Name: info.Name, URLID: info.URLID, Number: info.Number, ManagingCPM: info.ManagingCPM,
		Internal: info.Internal, Class: info.Class, Changed: changed, Deleted: deleted, Members: make([]MemberState, 0, len(ms))}
	for k := range ms {
		s.Members = append(s.Members, ms[k].state())
	}
	return s
}

// SafeState returns the current state of the Safe named name (matched
// case-insensitively; deleted Safes included). ok is false for a name the
// vault never had.
func (h *Handler) SafeState(name string) (SafeState, bool) {
	i, ok := h.v.Lookup(name)
	if !ok {
		return SafeState{}, false
	}
	return h.SafeStateAt(i), true
}

// SetMember makes m a member of the Safe named safe with exactly m's
// permissions and expiry, adding it or replacing it, without any
// permission check. It is not counted as a member write.
func (h *Handler) SetMember(safe string, m MemberState) error {
	if strings.TrimSpace(m.Name) == "" {
		return errors.New("pamtest: SetMember: empty member name")
	}
	i, ok := h.st.lookup(safe)
	if !ok {
		return fmt.Errorf("set member %q of %q: %w", m.Name, safe, ErrUnknownSafe)
	}
	p := h.v.directory[strings.ToLower(m.Name)]
	if p == nil {
		p = &principal{name: m.Name, id: guidOf(m.Name)}
	}
	if m.Type != "" || m.ID != "" {
		cp := *p
		if m.Type != "" {
			t, ok := parseMemberType(m.Type)
			if !ok {
				return fmt.Errorf("pamtest: SetMember: memberType %q: want User, Group or Role", m.Type)
			}
			cp.typ = t
		}
		if m.ID != "" {
			cp.id, cp.idNum = m.ID, false
		}
		if cp != *p {
			p = &cp
		}
	}
	nm := member{p: p, perms: m.Permissions}
	if m.Expiration != nil {
		nm.expiry, nm.hasExpiry = *m.Expiration, true
	}
	info := h.v.info(i, true)
	sh := h.st.shard(i)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ov := sh.m[int32(i)]
	if ov != nil && ov.deleted {
		return fmt.Errorf("set member %q of %q: %w", m.Name, safe, ErrUnknownSafe)
	}
	_, _, seeded := h.st.memberLocked(&info, ov, p.name)
	h.st.setLocked(sh, i, nm, false, seeded)
	return nil
}

// RemoveMember removes member from the Safe named safe without any
// permission check. It is not counted as a member write.
func (h *Handler) RemoveMember(safe, name string) error {
	i, ok := h.st.lookup(safe)
	if !ok {
		return fmt.Errorf("remove member %q of %q: %w", name, safe, ErrUnknownSafe)
	}
	info := h.v.info(i, true)
	sh := h.st.shard(i)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ov := sh.m[int32(i)]
	if ov != nil && ov.deleted {
		return fmt.Errorf("remove member %q of %q: %w", name, safe, ErrUnknownSafe)
	}
	cur, found, seeded := h.st.memberLocked(&info, ov, name)
	if !found {
		return fmt.Errorf("remove member %q of %q: %w", name, safe, ErrNotMember)
	}
	h.st.setLocked(sh, i, cur, true, seeded)
	return nil
}

// DeleteSafe deletes the Safe named name: afterwards every API route
// answers 404 SFWS0007 for it and it leaves every listing.
func (h *Handler) DeleteSafe(name string) error {
	i, ok := h.st.lookup(name)
	if !ok {
		return fmt.Errorf("delete safe %q: %w", name, ErrUnknownSafe)
	}
	sh := h.st.shard(i)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ov := sh.m[int32(i)]; ov != nil && ov.deleted {
		return fmt.Errorf("delete safe %q: %w", name, ErrUnknownSafe)
	}
	h.st.deleteLocked(sh, i)
	return nil
}

// StateQuery selects what WriteState writes.
type StateQuery struct {
	// Safe limits the output to the Safe of that name.
	Safe string
	// Changed limits the output to Safes changed since start.
	Changed bool
	// Member limits each line's members to the one of that name.
	Member string
}

// WriteState writes the state as JSON Lines, one SafeState per line in
// index order, streaming: memory use does not grow with the vault.
func (h *Handler) WriteState(ctx context.Context, w io.Writer, q StateQuery) error {
	var indexes []int
	switch {
	case q.Safe != "":
		i, ok := h.v.Lookup(q.Safe)
		if !ok {
			return fmt.Errorf("state of %q: %w", q.Safe, ErrUnknownSafe)
		}
		indexes = []int{i}
	case q.Changed:
		indexes = h.st.touched()
	}
	n := h.v.n
	if indexes != nil {
		n = len(indexes)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	ms := make([]member, 0, 16)
	for k := 0; k < n; k++ {
		i := k
		if indexes != nil {
			i = indexes[k]
		}
		if k%4096 == 0 && ctx.Err() != nil {
			return fmt.Errorf("write state: %w", ctx.Err())
		}
		info := h.v.info(i, true)
		var changed, deleted bool
		ms, changed, deleted = h.snapshot(&info, ms[:0])
		line = appendStateLine(line[:0], &info, ms, changed, deleted, q.Member)
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// appendStateLine appends one SafeState as a JSON line.
func appendStateLine(dst []byte, info *SafeInfo, ms []member, changed, deleted bool, only string) []byte {
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, int64(info.Index), 10)
	dst = append(dst, `,"safeName":`...)
	dst = appendString(dst, info.Name)
	dst = append(dst, `,"safeUrlId":`...)
	dst = appendString(dst, info.URLID)
	dst = append(dst, `,"safeNumber":`...)
	dst = strconv.AppendInt(dst, info.Number, 10)
	dst = append(dst, `,"managingCPM":`...)
	dst = appendString(dst, info.ManagingCPM)
	dst = append(dst, `,"internal":`...)
	dst = appendBool(dst, info.Internal)
	dst = append(dst, `,"class":`...)
	dst = appendString(dst, string(info.Class))
	dst = append(dst, `,"changed":`...)
	dst = appendBool(dst, changed)
	dst = append(dst, `,"deleted":`...)
	dst = appendBool(dst, deleted)
	dst = append(dst, `,"members":[`...)
	first := true
	for k := range ms {
		m := &ms[k]
		if only != "" && !strings.EqualFold(m.p.name, only) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"memberName":`...)
		dst = appendString(dst, m.p.name)
		dst = append(dst, `,"memberType":`...)
		dst = appendString(dst, memberTypeName(m.p.typ))
		dst = append(dst, `,"memberId":`...)
		dst = appendString(dst, m.p.id)
		dst = append(dst, `,"permissions":`...)
		dst = appendPermNames(dst, m.perms)
		dst = append(dst, `,"membershipExpirationDate":`...)
		if m.hasExpiry {
			dst = strconv.AppendInt(dst, m.expiry, 10)
		} else {
			dst = append(dst, "null"...)
		}
		dst = append(dst, `,"isPredefinedUser":`...)
		dst = appendBool(dst, m.p.predefined)
		dst = append(dst, '}')
	}
	return append(dst, "]}\n"...)
}

// Census counts the seeded vault's Safes by kind.
type Census struct {
	// Safes is the number of Safes; Internal the number of built-in ones.
	Safes    int `json:"safes"`
	Internal int `json:"internal"`
	// Classes counts Safes by PSMAppUsers class (internal ones included
	// as ClassInternal).
	Classes map[Class]int `json:"classes"`
	// Access counts Safes by the admin user's access.
	Access map[Access]int `json:"access"`
	// Big counts the Safes with BigMemberCount members.
	Big int `json:"big"`
	// ManagingCPM counts account Safes by managingCPM value.
	ManagingCPM map[string]int `json:"managingCPM"`
}

// Census counts the Safes of the seeded vault by kind, in O(n).
func (v *Vault) Census() Census {
	c := Census{Safes: v.n, Internal: len(v.internal), Classes: map[Class]int{}, Access: map[Access]int{}, ManagingCPM: map[string]int{}}
	for i := 0; i < v.n; i++ {
		info := v.info(i, false)
		c.Classes[info.Class]++
		c.Access[info.Access]++
		if info.Big {
			c.Big++
		}
		if !info.Internal {
			c.ManagingCPM[info.ManagingCPM]++
		}
	}
	return c
}

// VaultInfo is the answer of GET /_admin/vault.
type VaultInfo struct {
	// Safes, Seed, Cloud, AdminUser, BigMemberCount and Mix are the
	// options in force (defaults filled in).
	Safes          int    `json:"safes"`
	Seed           uint64 `json:"seed"`
	Cloud          bool   `json:"cloud"`
	AdminUser      string `json:"adminUser"`
	BigMemberCount int    `json:"bigMemberCount"`
	Mix            Mix    `json:"mix"`
	// Users are the names that can log on, the admin user first.
	Users []string `json:"users"`
	// Census counts the seeded vault's Safes by kind.
	Census Census `json:"census"`
	// Visible is the number of Safes each user can see now.
	Visible map[string]int `json:"visible"`
}

// Info describes the vault: options, census and current visibility.
func (h *Handler) Info() VaultInfo {
	vi := VaultInfo{
		Safes: h.v.n, Seed: h.opts.Seed, Cloud: h.opts.Cloud, AdminUser: h.opts.AdminUser,
		BigMemberCount: h.opts.BigMemberCount, Mix: h.opts.Mix, Census: h.census(), Visible: map[string]int{},
	}
	for _, u := range h.v.users {
		vi.Users = append(vi.Users, u.name)
		vi.Visible[u.name] = h.st.vis[u.slot].count()
	}
	return vi
}

// ---- admin HTTP ----

const adminIndex = `pvwasim admin API (never requires a token)
GET    /_admin/stats[?perSafe=1]             counters (JSON)
POST   /_admin/reset-stats                   zero the counters
GET    /_admin/state[?safe=NAME][&changed=1][&member=NAME]   state as JSON Lines
GET    /_admin/vault                         options, census, visibility (JSON)
GET    /_admin/faults                        faults in force (JSON)
PUT    /_admin/faults                        change faults (partial JSON)
DELETE /_admin/sessions                      end every session
GET    /_admin/safes/{name}                  one Safe's state (JSON)
DELETE /_admin/safes/{name}                  delete a Safe
POST   /_admin/safes/{name}/members          set a member {"memberName","memberType","permissions":[...],"membershipExpirationDate"}
DELETE /_admin/safes/{name}/members/{member} remove a member
`

func adminJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func adminError(w http.ResponseWriter, status int, err error) {
	adminJSON(w, status, map[string]string{"error": err.Error()})
}

func (h *Handler) serveAdmin(w http.ResponseWriter, r *http.Request, segs []string) {
	method := r.Method
	route := ""
	if len(segs) > 0 {
		route = segs[0]
	}
	notAllowed := func() {
		adminError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s", method, r.URL.Path))
	}
	switch {
	case len(segs) == 0:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, adminIndex)
	case route == "stats" && len(segs) == 1:
		if method != http.MethodGet {
			notAllowed()
			return
		}
		adminJSON(w, http.StatusOK, h.stats(r.URL.Query().Get("perSafe") == "1"))
	case route == "reset-stats" && len(segs) == 1:
		if method != http.MethodPost {
			notAllowed()
			return
		}
		h.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	case route == "state" && len(segs) == 1:
		if method != http.MethodGet {
			notAllowed()
			return
		}
		q := r.URL.Query()
		sq := StateQuery{Safe: q.Get("safe"), Changed: q.Get("changed") == "1" || q.Get("changed") == "true", Member: q.Get("member")}
		if sq.Safe != "" {
			if _, ok := h.v.Lookup(sq.Safe); !ok {
				adminError(w, http.StatusNotFound, fmt.Errorf("no Safe named %q", sq.Safe))
				return
			}
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		_ = h.WriteState(r.Context(), w, sq) // a write error means the client left
	case route == "vault" && len(segs) == 1:
		adminJSON(w, http.StatusOK, h.Info())
	case route == "faults" && len(segs) == 1:
		switch method {
		case http.MethodGet:
			adminJSON(w, http.StatusOK, h.Faults())
		case http.MethodPut, http.MethodPost:
			f := h.Faults()
			if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&f); err != nil {
				adminError(w, http.StatusBadRequest, err)
				return
			}
			if err := h.SetFaults(f); err != nil {
				adminError(w, http.StatusBadRequest, err)
				return
			}
			adminJSON(w, http.StatusOK, h.Faults())
		default:
			notAllowed()
		}
	case route == "sessions" && len(segs) == 1:
		if method != http.MethodDelete {
			notAllowed()
			return
		}
		adminJSON(w, http.StatusOK, map[string]int{"ended": h.ExpireSessions()})
	case route == "safes" && len(segs) == 2:
		switch method {
		case http.MethodGet:
			s, ok := h.SafeState(segs[1])
			if !ok {
				adminError(w, http.StatusNotFound, fmt.Errorf("no Safe named %q", segs[1]))
				return
			}
			adminJSON(w, http.StatusOK, s)
		case http.MethodDelete:
			if err := h.DeleteSafe(segs[1]); err != nil {
				adminError(w, http.StatusNotFound, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			notAllowed()
		}
	case route == "safes" && len(segs) == 3 && segs[2] == "members":
		if method != http.MethodPost && method != http.MethodPut {
			notAllowed()
			return
		}
		var m MemberState
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&m); err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("decode member: %w", err))
			return
		}
		if err := h.SetMember(segs[1], m); err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, ErrUnknownSafe) {
				status = http.StatusNotFound
			}
			adminError(w, status, err)
			return
		}
		s, _ := h.SafeState(segs[1])
		adminJSON(w, http.StatusOK, s)
	case route == "safes" && len(segs) == 4 && segs[2] == "members":
		if method != http.MethodDelete {
			notAllowed()
			return
		}
		if err := h.RemoveMember(segs[1], segs[3]); err != nil {
			adminError(w, http.StatusNotFound, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		adminError(w, http.StatusNotFound, fmt.Errorf("no admin route %s", r.URL.Path))
	}
}
