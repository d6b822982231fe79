package pamtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
)

// Error codes and messages the simulator answers with (pam-api.md §4).
const (
	codeSafeNotFound   = "SFWS0007"
	codeNotMember      = "SFWS0008"
	codeAlreadyMember  = "SFWS0012"
	codeNoSession      = "PASWS006E"
	codeInvalidParams  = "PASWS167E"
	codePropNotFound   = "PASWS179E"
	codeMissingParam   = "PASWS011E"
	codeWebService     = "CAWS00001E"
	codeAuthFailure    = "ITATS004E"
	msgInvalidParams   = "There are some invalid parameters"
	msgNoSession       = "No session token was provided or the session has expired."
	msgTooManyRequests = "Too Many Requests"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Handler is the simulated PVWA as an http.Handler, for serving on a
// listener of one's own (NewServer wraps it in an HTTP server). It serves
// the API under /PasswordVault/, the Identity token endpoint at
// /oauth2/platformtoken (Cloud mode) and the admin API under /_admin/.
// All its methods are safe for concurrent use.
type Handler struct {
	opts Options
	v    *Vault
	st   *store
	ss   *sessions
	inj  *injector
	q    *slots
	c    counters

	done      chan struct{}
	closeOnce sync.Once
	bufs      sync.Pool
	census    func() Census
}

// NewHandler validates opts and returns the simulated PVWA they describe.
// A vault of a million Safes is ready in well under a second.
func NewHandler(opts Options) (*Handler, error) {
	v, err := NewVault(opts)
	if err != nil {
		return nil, err
	}
	opts = v.opts
	h := &Handler{
		opts: opts,
		v:    v,
		st:   newStore(v),
		inj:  newInjector(opts.Faults, opts.FaultSeed),
		q:    newSlots(opts.Faults.Slots),
		done: make(chan struct{}),
	}
	h.ss = newSessions(opts.TokenTTL, opts.IdleTimeout, opts.Now, &h.c.ended)
	h.c.since.Store(opts.Now().UnixNano())
	h.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	h.census = sync.OnceValue(v.Census)
	return h, nil
}

// Vault returns the seeded vault (the state before any change).
func (h *Handler) Vault() *Vault { return h.v }

// Faults returns the faults in force.
func (h *Handler) Faults() Faults { return h.inj.load().f }

// SetFaults replaces the faults in force, at once, for the requests that
// arrive afterwards.
func (h *Handler) SetFaults(f Faults) error {
	if err := f.validate("Faults."); err != nil {
		return err
	}
	h.inj.set(f)
	h.q.setCap(f.Slots)
	return nil
}

// ExpireSessions ends every session, as a PVWA restart would, and returns
// how many there were.
func (h *Handler) ExpireSessions() int { return h.ss.endAll() }

// Close makes requests waiting out an injected latency give up at once.
// It does not stop a server; the Handler still answers afterwards.
func (h *Handler) Close() { h.closeOnce.Do(func() { close(h.done) }) }

// recorder remembers the status written.
type recorder struct {
	http.ResponseWriter
	status int
	// onStatus is called once with the status, before the answer is
	// sent: a client that has its answer finds the request counted.
	onStatus func(status int)
}

func (r *recorder) setStatus(code int) {
	if r.status == 0 {
		r.status = code
		if r.onStatus != nil {
			r.onStatus(code)
		}
	}
}

func (r *recorder) WriteHeader(code int) {
	r.setStatus(code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.setStatus(http.StatusOK)
	return r.ResponseWriter.Write(b)
}

// pathKind is what a path names, before the method is considered.
type pathKind uint8

const (
	pathUnknown pathKind = iota
	pathLogon
	pathLogoff
	pathToken
	pathSafes
	pathSafe
	pathMembers
	pathMember
)

// call is one API request being served.
type call struct {
	h          *Handler
	w          *recorder
	r          *http.Request
	route      routeID
	safe       string // decoded Safe id (name)
	member     string // decoded member name
	user       *vaultUser
	sess       *session
	applied500 bool
}

// splitPath splits an escaped path into decoded segments, dropping empty
// ones. ok is false when an escape is invalid.
func splitPath(escaped string) (segs []string, ok bool) {
	for _, s := range strings.Split(escaped, "/") {
		if s == "" {
			continue
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		segs = append(segs, d)
	}
	return segs, true
}

func eq(a, b string) bool { return strings.EqualFold(a, b) }

// match classifies the decoded segments of a path.
func (h *Handler) match(segs []string) (kind pathKind, safe, member string) {
	if len(segs) == 2 && eq(segs[0], "oauth2") && eq(segs[1], "platformtoken") {
		if h.opts.Cloud {
			return pathToken, "", ""
		}
		return pathUnknown, "", ""
	}
	if len(segs) < 3 || !eq(segs[0], "PasswordVault") || !eq(segs[1], "API") {
		return pathUnknown, "", ""
	}
	s := segs[2:]
	switch {
	case eq(s[0], "Auth"):
		switch {
		case len(s) == 2 && eq(s[1], "Logoff"):
			return pathLogoff, "", ""
		case len(s) == 3 && eq(s[2], "Logon") && !h.opts.Cloud:
			for _, t := range []string{"CyberArk", "LDAP", "RADIUS", "Windows"} {
				if eq(s[1], t) {
					return pathLogon, "", ""
				}
			}
		}
	case eq(s[0], "Safes"):
		switch {
		case len(s) == 1:
			return pathSafes, "", ""
		case len(s) == 2:
			return pathSafe, s[1], ""
		case len(s) == 3 && eq(s[2], "Members"):
			return pathMembers, s[1], ""
		case len(s) == 4 && eq(s[2], "Members"):
			return pathMember, s[1], s[3]
		}
	}
	return pathUnknown, "", ""
}

// routeOf maps a path kind and method to a route; ok is false for a
// method the path does not support.
func routeOf(kind pathKind, method string) (routeID, bool) {
	switch kind {
	case pathLogon:
		return routeLogon, method == http.MethodPost
	case pathLogoff:
		return routeLogoff, method == http.MethodPost
	case pathToken:
		return routeToken, method == http.MethodPost
	case pathSafes:
		return routeSafes, method == http.MethodGet
	case pathSafe:
		return routeSafe, method == http.MethodGet
	case pathMembers:
		switch method {
		case http.MethodGet:
			return routeMembers, true
		case http.MethodPost:
			return routeAddMember, true
		}
	case pathMember:
		switch method {
		case http.MethodGet:
			return routeMember, true
		case http.MethodPut:
			return routeUpdateMember, true
		case http.MethodDelete:
			return routeDeleteMember, true
		}
	}
	return routeOther, false
}

// ServeHTTP serves the API, the token endpoint and the admin API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	segs, ok := splitPath(escaped)
	if ok && len(segs) > 0 && segs[0] == "_admin" {
		h.serveAdmin(w, r, segs[1:])
		return
	}
	c := &call{h: h, r: r}
	// The request is counted, and leaves the in-flight count, when its
	// status is set, before the answer is sent: a client that has its
	// answer finds the stats up to date.
	c.w = &recorder{ResponseWriter: w, onStatus: func(status int) {
		h.c.count(c.route, status)
		h.c.inFlight.Add(-1)
	}}
	cur := h.c.inFlight.Add(1)
	defer c.w.setStatus(0) // counted as status 0 if nothing was written
	kind := pathUnknown
	if ok {
		kind, c.safe, c.member = h.match(segs)
	}
	if kind == pathUnknown {
		c.error(http.StatusNotFound, "", fmt.Sprintf("No HTTP resource was found that matches the request URI '%s'.", r.URL.Path))
		return
	}
	route, allowed := routeOf(kind, r.Method)
	if !allowed {
		c.error(http.StatusMethodNotAllowed, "", fmt.Sprintf("The requested resource does not support http method '%s'.", r.Method))
		return
	}
	if h.opts.StrictDots && !strings.HasSuffix(escaped, "/") && strings.Contains(segs[len(segs)-1], ".") {
		c.html(http.StatusNotFound, iisError404)
		return
	}
	c.route = route
	fs := h.inj.load()
	faulty := route >= routeSafes || fs.f.IncludeAuth
	if faulty && !h.refuse(c, fs, cur) {
		return
	}
	if route != routeToken {
		// Every PVWA request waits for a slot (Faults.Slots), logon and
		// logoff included: IIS queues them like any other. The Identity
		// token endpoint is another service.
		release, ok := h.q.acquire(r.Context(), h.done)
		if !ok {
			c.w.setStatus(499) // client gone while queued; nothing can be written
			return
		}
		defer release()
		fs = h.inj.load() // the faults in force when its service starts
	}
	if faulty && !h.inject(c, fs) {
		return
	}
	h.c.admit(cur)
	switch route {
	case routeLogon:
		c.logon()
	case routeLogoff:
		c.logoff()
	case routeToken:
		c.token()
	default:
		if !c.authenticate() {
			return
		}
		switch route {
		case routeSafes:
			c.listSafes()
		case routeSafe:
			c.getSafe()
		case routeMembers:
			c.listMembers()
		case routeMember:
			c.getMember()
		case routeAddMember:
			c.addMember()
		case routeUpdateMember:
			c.updateMember()
		case routeDeleteMember:
			c.deleteMember()
		}
	}
}

// refuse applies the faults decided when a request arrives, before it
// queues for a slot: MaxInFlight and RateLimit. It returns false when it
// answered.
func (h *Handler) refuse(c *call, fs *faultState, cur int64) bool {
	f := &fs.f
	if f.MaxInFlight > 0 && cur > int64(f.MaxInFlight) {
		h.c.inFlight429.Add(1)
		c.tooMany(f)
		return false
	}
	if fs.limiter != nil && !fs.limiter.Allow() {
		h.c.rate429.Add(1)
		c.tooMany(f)
		return false
	}
	return true
}

// inject applies the faults of a request holding its slot: the latency
// (the service time), then the drawn failures. It returns false when it
// answered.
func (h *Handler) inject(c *call, fs *faultState) bool {
	f := &fs.f
	if d := f.Latency; d > 0 || f.Jitter > 0 {
		if f.Jitter > 0 {
			d += time.Duration(h.inj.draw() * float64(f.Jitter))
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.r.Context().Done():
			t.Stop()
			c.w.setStatus(499) // client gone; nothing can be written
			return false
		case <-h.done:
			t.Stop()
		}
	}
	if f.P500+f.P429+f.P403 > 0 {
		switch u := h.inj.draw(); {
		case u < f.P500:
			h.c.random500.Add(1)
			c.html(http.StatusInternalServerError, iisError500)
			return false
		case u < f.P500+f.P429:
			h.c.random429.Add(1)
			c.tooMany(f)
			return false
		case u < f.P500+f.P429+f.P403:
			h.c.random403.Add(1)
			c.error(http.StatusForbidden, codeWebService, "")
			return false
		}
	}
	if f.PWriteApplied500 > 0 && (c.route == routeAddMember || c.route == routeUpdateMember || c.route == routeDeleteMember) {
		c.applied500 = h.inj.draw() < f.PWriteApplied500
	}
	return true
}

// ---- responses ----

func (c *call) buf() *[]byte {
	b := c.h.bufs.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

func (c *call) release(b *[]byte) {
	if cap(*b) <= 1<<20 {
		c.h.bufs.Put(b)
	}
}

func (c *call) send(status int, body []byte) {
	hd := c.w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hd.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body)
}

func (c *call) error(status int, code, msg string) { c.errorDetails(status, code, msg, nil) }

func (c *call) errorDetails(status int, code, msg string, details []errorDetail) {
	b := c.buf()
	*b = appendError(*b, code, msg, details)
	c.send(status, *b)
	c.release(b)
}

func (c *call) html(status int, page string) {
	hd := c.w.Header()
	hd.Set("Content-Type", "text/html")
	hd.Set("Content-Length", strconv.Itoa(len(page)))
	c.w.WriteHeader(status)
	_, _ = io.WriteString(c.w, page)
}

func (c *call) tooMany(f *Faults) {
	if ra := c.h.inj.retryAfter(f); ra != "" {
		c.w.Header().Set("Retry-After", ra)
	}
	c.error(http.StatusTooManyRequests, "", msgTooManyRequests)
}

func (c *call) invalidParams(details ...errorDetail) {
	c.errorDetails(http.StatusBadRequest, codeInvalidParams, msgInvalidParams, details)
}

func (c *call) missingParam(name string) {
	c.invalidParams(
		errorDetail{codePropNotFound, fmt.Sprintf("Property [%s] not found", name)},
		errorDetail{codeMissingParam, fmt.Sprintf("Missing mandatory parameter [%s].", name)},
	)
}

func (c *call) safeNotFound(name string) {
	c.error(http.StatusNotFound, codeSafeNotFound, fmt.Sprintf("Safe %s has been deleted or does not exist.", name))
}

func (c *call) forbidden() { c.error(http.StatusForbidden, codeWebService, "") }

// ---- request helpers ----

// body reads the request body as a JSON object with case-insensitive keys.
func (c *call) body() (ciObject, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return decodeObject(b)
}

// query returns the query parameters with lower-cased names (first value
// wins), as the .NET binder reads them case-insensitively.
func (c *call) query() map[string]string {
	q, _ := url.ParseQuery(c.r.URL.RawQuery)
	out := make(map[string]string, len(q))
	for k, vs := range q {
		lk := strings.ToLower(k)
		if _, dup := out[lk]; !dup && len(vs) > 0 {
			out[lk] = vs[0]
		}
	}
	return out
}

// paging reads offset and limit: limit defaults to DefaultLimit and is
// clamped to MaxLimit; limit=0 means the default.
func paging(q map[string]string) (offset, limit int, err error) {
	limit = DefaultLimit
	if s, ok := q["offset"]; ok && s != "" {
		if offset, err = strconv.Atoi(strings.TrimSpace(s)); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q", s)
		}
	}
	if s, ok := q["limit"]; ok && s != "" {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("limit %q", s)
		}
		if n > 0 {
			limit = min(n, MaxLimit)
		}
	}
	return offset, limit, nil
}

// queryEscape escapes a query value with %20 for space, never "+".
func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// ---- authentication ----

func (c *call) authenticate() bool {
	tok := tokenFrom(c.r.Header.Get("Authorization"), c.h.opts.Cloud)
	s, ok := c.h.ss.lookup(tok)
	if !ok {
		c.error(http.StatusUnauthorized, codeNoSession, msgNoSession)
		return false
	}
	c.sess, c.user = s, s.user
	return true
}

func (c *call) logon() {
	obj, err := c.body()
	if err != nil {
		c.invalidParams(errorDetail{codePropNotFound, "The request body is not a valid JSON object."})
		return
	}
	name, _ := obj.str("username")
	pass, _ := obj.str("password")
	concurrent, _ := obj.boolean("concurrentsession")
	u := c.h.v.userByKey[strings.ToLower(name)]
	if name == "" || u == nil || u.password != pass {
		c.h.c.logonFailures.Add(1)
		c.error(http.StatusForbidden, codeAuthFailure, fmt.Sprintf("Authentication failure for User [%s].", name))
		return
	}
	tok, err := newPVWAToken()
	if err != nil {
		c.html(http.StatusInternalServerError, iisError500)
		return
	}
	c.h.ss.logon(u, concurrent, tok)
	c.h.c.logons.Add(1)
	c.send(http.StatusOK, []byte(`"`+tok+`"`))
}

func (c *call) logoff() {
	if !c.authenticate() {
		return
	}
	c.h.ss.logoff(c.sess)
	c.w.Header().Set("Content-Length", "0")
	c.w.WriteHeader(http.StatusOK)
}

// token serves the Identity client-credentials token endpoint.
func (c *call) token() {
	oauthErr := func(status int, code, desc string) {
		b := c.buf()
		*b = append(*b, `{"error":`...)
		*b = appendString(*b, code)
		*b = append(*b, `,"error_description":`...)
		*b = appendString(*b, desc)
		*b = append(*b, '}')
		c.send(status, *b)
		c.release(b)
	}
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, maxBody)
	if err := c.r.ParseForm(); err != nil {
		oauthErr(http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	if gt := c.r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported", gt))
		return
	}
	id, secret := c.r.PostForm.Get("client_id"), c.r.PostForm.Get("client_secret")
	if id == "" {
		if bid, bsecret, ok := c.r.BasicAuth(); ok {
			id, secret = bid, bsecret
		}
	}
	u := c.h.v.userByKey[strings.ToLower(id)]
	if id == "" || u == nil || u.password != secret {
		c.h.c.logonFailures.Add(1)
		oauthErr(http.StatusUnauthorized, "access_denied", "invalid client creds or client not allowed")
		return
	}
	life := c.h.opts.TokenTTL
	if life == 0 {
		life = CloudTokenLifetime
	}
	tok, err := newCloudToken(u.name, c.h.opts.Now(), life)
	if err != nil {
		c.html(http.StatusInternalServerError, iisError500)
		return
	}
	c.h.ss.logon(u, true, tok)
	c.h.c.logons.Add(1)
	b := c.buf()
	*b = append(*b, `{"access_token":`...)
	*b = appendString(*b, tok)
	*b = append(*b, `,"token_type":"Bearer","expires_in":`...)
	*b = strconv.AppendInt(*b, int64(life/time.Second), 10)
	*b = append(*b, '}')
	c.send(http.StatusOK, *b)
	c.release(b)
}

// ---- Safes ----

func (c *call) listSafes() {
	q := c.query()
	offset, limit, err := paging(q)
	if err != nil {
		c.invalidParams(errorDetail{codePropNotFound, fmt.Sprintf("Invalid query parameter: %v.", err)})
		return
	}
	x := c.h.st.vis[c.user.slot]
	search := q["search"]
	idx := make([]int32, 0, min(limit, 1024))
	var total int
	if search == "" {
		idx, total = x.page(offset, limit, idx)
	} else {
		idx, total = c.h.searchSafes(x, strings.ToLower(search), offset, limit, idx)
	}
	b := c.buf()
	*b = append(*b, `{"value":[`...)
	n := 0
	for _, i := range idx {
		if c.h.st.deleted(int(i)) {
			continue
		}
		if n > 0 {
			*b = append(*b, ',')
		}
		n++
		info := c.h.v.info(int(i), true)
		*b = c.h.v.appendSafe(*b, &info)
	}
	*b = append(*b, `],"count":`...)
	*b = strconv.AppendInt(*b, int64(total), 10)
	if offset+limit < total {
		next := fmt.Sprintf("%s?offset=%d&limit=%d&useCache=False", c.h.opts.NextLinkPrefix, offset+limit, limit)
		if search != "" {
			next += "&search=" + queryEscape(search)
		}
		*b = append(*b, `,"nextLink":`...)
		*b = appendString(*b, next)
	}
	*b = append(*b, '}')
	c.send(http.StatusOK, *b)
	c.release(b)
}

// searchSafes pages through the Safes of x whose lower-cased name holds
// needle. It scans every visible Safe (O(n), no allocation per Safe).
func (h *Handler) searchSafes(x *visIndex, needle string, offset, limit int, dst []int32) ([]int32, int) {
	words := x.snapshot()
	nb := []byte(needle)
	var name []byte
	total := 0
	for w, word := range words {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			word &= word - 1
			i := w*64 + t
			name = h.v.appendName(name[:0], i, true)
			if !bytes.Contains(name, nb) {
				continue
			}
			if total >= offset && total < offset+limit {
				dst = append(dst, int32(i))
			}
			total++
		}
	}
	return dst, total
}

// visibleSafe resolves the Safe of the path for the caller; it answers 404
// SFWS0007 for a Safe that does not exist, was deleted, or that the caller
// is not a member of (the vault does not reveal such Safes).
func (c *call) visibleSafe() (SafeInfo, bool) {
	i, ok := c.h.st.lookup(c.safe)
	if !ok || !c.h.st.vis[c.user.slot].has(i) {
		c.safeNotFound(c.safe)
		return SafeInfo{}, false
	}
	return c.h.v.info(i, true), true
}

func (c *call) getSafe() {
	info, ok := c.visibleSafe()
	if !ok {
		return
	}
	b := c.buf()
	*b = c.h.v.appendSafe(*b, &info)
	c.send(http.StatusOK, *b)
	c.release(b)
}

// ---- members ----

// memberFilter is the parsed filter of GET members.
type memberFilter struct {
	typ           string // "" = any
	expired       *bool
	includePredef bool
	search        string // lower-cased
	offset, limit int
	echo          string // query to repeat in nextLink
}

func parseBool(s string) (bool, bool) {
	b, err := strconv.ParseBool(strings.Trim(strings.TrimSpace(s), `"'`))
	return b, err == nil
}

func (c *call) memberFilter() (memberFilter, error) {
	q := c.query()
	var f memberFilter
	var err error
	if f.offset, f.limit, err = paging(q); err != nil {
		return f, err
	}
	var echo []string
	if v, ok := q["includepredefinedusers"]; ok {
		f.includePredef, _ = parseBool(v)
		echo = append(echo, "includePredefinedUsers="+queryEscape(v))
	}
	if s := q["search"]; s != "" {
		f.search = strings.ToLower(s)
		echo = append(echo, "search="+queryEscape(s))
	}
	if flt := strings.TrimSpace(q["filter"]); flt != "" {
		echo = append(echo, "filter="+queryEscape(flt))
		for _, clause := range splitAnd(flt) {
			parts := strings.Fields(clause)
			if len(parts) < 3 || !eq(parts[1], "eq") {
				continue
			}
			val := strings.Trim(strings.Join(parts[2:], " "), `"'`)
			switch strings.ToLower(parts[0]) {
			case "membertype":
				f.typ = val
			case "membershipexpired":
				if b, ok := parseBool(val); ok {
					f.expired = &b
				}
			case "includepredefinedusers":
				f.includePredef, _ = parseBool(val)
			}
		}
	}
	f.echo = strings.Join(echo, "&")
	return f, nil
}

// splitAnd splits a filter on " AND " in any case.
func splitAnd(s string) []string {
	var out []string
	low := strings.ToLower(s)
	for {
		k := strings.Index(low, " and ")
		if k < 0 {
			return append(out, s)
		}
		out = append(out, s[:k])
		s, low = s[k+5:], low[k+5:]
	}
}

func (f *memberFilter) keep(m *member, now int64) bool {
	if m.p.predefined && !f.includePredef {
		return false
	}
	if f.typ != "" && !eq(f.typ, memberTypeName(m.p.typ)) {
		return false
	}
	if f.expired != nil && m.expired(now) != *f.expired {
		return false
	}
	return f.search == "" || strings.Contains(strings.ToLower(m.p.name), f.search)
}

// lockSafe resolves the visible Safe of the path and locks its shard (for
// writing with write). It answers and returns ok=false on failure.
func (c *call) lockSafe(write bool) (info SafeInfo, sh *shard, ov *safeOverlay, ok bool) {
	info, ok = c.visibleSafe()
	if !ok {
		return info, nil, nil, false
	}
	sh = c.h.st.shard(info.Index)
	if write {
		sh.mu.Lock()
	} else {
		sh.mu.RLock()
	}
	ov = sh.m[int32(info.Index)]
	if ov != nil && ov.deleted {
		unlock(sh, write)
		c.safeNotFound(c.safe)
		return info, nil, nil, false
	}
	return info, sh, ov, true
}

func unlock(sh *shard, write bool) {
	if write {
		sh.mu.Unlock()
	} else {
		sh.mu.RUnlock()
	}
}

func (c *call) listMembers() {
	f, err := c.memberFilter()
	if err != nil {
		c.invalidParams(errorDetail{codePropNotFound, fmt.Sprintf("Invalid query parameter: %v.", err)})
		return
	}
	info, sh, ov, ok := c.lockSafe(false)
	if !ok {
		return
	}
	perms, isMember := c.h.st.permsLocked(&info, ov, c.user)
	if !isMember || !perms.Has(pam.ViewSafeMembers) {
		sh.mu.RUnlock()
		c.forbidden()
		return
	}
	members := c.h.st.membersLocked(&info, ov, make([]member, 0, 16))
	sh.mu.RUnlock()

	now := c.h.opts.Now().Unix()
	b := c.buf()
	*b = append(*b, `{"value":[`...)
	total, n := 0, 0
	for k := range members {
		m := &members[k]
		if !f.keep(m, now) {
			continue
		}
		if total >= f.offset && total < f.offset+f.limit {
			if n > 0 {
				*b = append(*b, ',')
			}
			n++
			*b = appendMember(*b, &info, m, now)
		}
		total++
	}
	*b = append(*b, `],"count":`...)
	*b = strconv.AppendInt(*b, int64(total), 10)
	if f.offset+f.limit < total {
		word := "members"
		if strings.ToLower(c.h.opts.NextLinkPrefix) != c.h.opts.NextLinkPrefix {
			word = "Members"
		}
		next := fmt.Sprintf("%s/%s/%s?offset=%d&limit=%d&useCache=False", c.h.opts.NextLinkPrefix, info.URLID, word, f.offset+f.limit, f.limit)
		if f.echo != "" {
			next += "&" + f.echo
		}
		*b = append(*b, `,"nextLink":`...)
		*b = appendString(*b, next)
	}
	*b = append(*b, '}')
	c.send(http.StatusOK, *b)
	c.release(b)
}

func (c *call) memberNotFound() {
	c.error(http.StatusNotFound, c.h.opts.MemberNotFoundCode,
		fmt.Sprintf("Failed to get member %s of safe %s. Reason: User or Group was not found.", c.member, c.safe))
}

func (c *call) notMember(name, safe string) {
	c.error(http.StatusNotFound, codeNotMember, fmt.Sprintf("%s is not a member of safe %s.", name, safe))
}

func (c *call) sendMember(status int, info *SafeInfo, m *member) {
	if c.applied500 {
		c.h.c.applied500.Add(1)
		c.html(http.StatusInternalServerError, iisError500)
		return
	}
	b := c.buf()
	*b = appendMember(*b, info, m, c.h.opts.Now().Unix())
	c.send(status, *b)
	c.release(b)
}

func (c *call) getMember() {
	info, sh, ov, ok := c.lockSafe(false)
	if !ok {
		return
	}
	perms, isMember := c.h.st.permsLocked(&info, ov, c.user)
	if !isMember || !perms.Has(pam.ViewSafeMembers) {
		sh.mu.RUnlock()
		c.forbidden()
		return
	}
	m, found, _ := c.h.st.memberLocked(&info, ov, c.member)
	sh.mu.RUnlock()
	if !found {
		c.memberNotFound()
		return
	}
	c.sendMember(http.StatusOK, &info, &m)
}

// writeBody holds the decoded body of a POST or PUT member.
type writeBody struct {
	name      string
	typ       uint8
	typGiven  bool
	perms     pam.PermSet
	permsErr  error
	expiry    int64
	hasExpiry bool
	expiryKey bool // membershipExpirationDate present (even null)
	expiryErr bool
}

// readWriteBody decodes the body; it answers 400 PASWS167E itself for
// problems the .NET model binder catches before the action runs.
func (c *call) readWriteBody(add bool) (writeBody, bool) {
	var wb writeBody
	obj, err := c.body()
	if err != nil {
		c.invalidParams(errorDetail{codePropNotFound, "The request body is not a valid JSON object."})
		return wb, false
	}
	if add {
		name, _ := obj.str("membername")
		if strings.TrimSpace(name) == "" {
			c.missingParam("MemberName")
			return wb, false
		}
		wb.name = name
		if t, ok := obj.str("membertype"); ok {
			typ, valid := parseMemberType(t)
			if !valid {
				c.invalidParams(errorDetail{codePropNotFound, fmt.Sprintf("Property [MemberType] has an invalid value [%s].", t)})
				return wb, false
			}
			wb.typ, wb.typGiven = typ, true
		} else if c.h.opts.Cloud {
			c.missingParam("MemberType")
			return wb, false
		}
	}
	raw, _ := obj.get("permissions")
	wb.perms, wb.permsErr = decodePermissions(raw)
	if wb.permsErr == nil && c.h.opts.AddImpliesUpdateProperties && wb.perms.Has(pam.AddAccounts) {
		wb.perms = wb.perms.With(pam.UpdateAccountProperties)
	}
	wb.expiryKey = obj.has("membershipexpirationdate")
	if raw, ok := obj.get("membershipexpirationdate"); ok {
		wb.expiry, wb.hasExpiry = decodeExpiry(raw)
		wb.expiryErr = !wb.hasExpiry
	}
	return wb, true
}

// checkValues returns a 400 CAWS00001E answer for invalid permissions or
// expiry, or nil.
func (c *call) checkValues(wb *writeBody, verb, name string) answer {
	param := ""
	switch {
	case wb.permsErr != nil:
		param = "Permissions"
	case wb.expiryErr:
		param = "MembershipExpirationDate"
	default:
		return nil
	}
	return func() {
		c.error(http.StatusBadRequest, codeWebService,
			fmt.Sprintf("Failed to %s User or Group %s. Reason: Input parameter for [%s] value is invalid.", verb, name, param))
	}
}

// answer is a response decided under a shard lock and written after it.
type answer func()

func (c *call) addMember() {
	wb, ok := c.readWriteBody(true)
	if !ok {
		return
	}
	info, sh, ov, ok := c.lockSafe(true)
	if !ok {
		return
	}
	m, fail := c.addLocked(&info, sh, ov, &wb)
	sh.mu.Unlock()
	if fail != nil {
		fail()
		return
	}
	c.h.c.adds.Add(1)
	c.sendMember(http.StatusCreated, &info, &m)
}

func (c *call) addLocked(info *SafeInfo, sh *shard, ov *safeOverlay, wb *writeBody) (member, answer) {
	if perms, ok := c.h.st.permsLocked(info, ov, c.user); !ok || !perms.Has(pam.ManageSafeMembers) {
		return member{}, c.forbidden
	}
	if fail := c.checkValues(wb, "add", wb.name); fail != nil {
		return member{}, fail
	}
	p := c.h.v.directory[strings.ToLower(wb.name)]
	if p == nil || (wb.typGiven && p.typ != wb.typ) {
		return member{}, func() {
			c.error(http.StatusNotFound, codeWebService,
				fmt.Sprintf("Failed to add User or Group %s. Reason: User or Group was not found.", wb.name))
		}
	}
	_, exists, seeded := c.h.st.memberLocked(info, ov, p.name)
	if exists {
		return member{}, func() {
			c.error(http.StatusConflict, codeAlreadyMember, fmt.Sprintf("%s is already a member of safe %s.", p.name, info.Name))
		}
	}
	m := member{p: p, perms: wb.perms, expiry: wb.expiry, hasExpiry: wb.hasExpiry}
	c.h.st.setLocked(sh, info.Index, m, false, seeded).writes++
	return m, nil
}

func (c *call) updateMember() {
	wb, ok := c.readWriteBody(false)
	if !ok {
		return
	}
	info, sh, ov, ok := c.lockSafe(true)
	if !ok {
		return
	}
	m, changed, fail := c.updateLocked(&info, sh, ov, &wb)
	sh.mu.Unlock()
	if fail != nil {
		fail()
		return
	}
	if changed {
		c.h.c.updates.Add(1)
	}
	c.sendMember(http.StatusOK, &info, &m)
}

func (c *call) updateLocked(info *SafeInfo, sh *shard, ov *safeOverlay, wb *writeBody) (member, bool, answer) {
	if perms, ok := c.h.st.permsLocked(info, ov, c.user); !ok || !perms.Has(pam.ManageSafeMembers) {
		return member{}, false, c.forbidden
	}
	if fail := c.checkValues(wb, "update", c.member); fail != nil {
		return member{}, false, fail
	}
	cur, found, seeded := c.h.st.memberLocked(info, ov, c.member)
	if !found {
		return member{}, false, func() { c.notMember(c.member, info.Name) }
	}
	m := cur
	m.perms = wb.perms
	if wb.expiryKey {
		m.expiry, m.hasExpiry = wb.expiry, wb.hasExpiry
	}
	if m == cur {
		return m, false, nil
	}
	c.h.st.setLocked(sh, info.Index, m, false, seeded).writes++
	return m, true, nil
}

func (c *call) deleteMember() {
	info, sh, ov, ok := c.lockSafe(true)
	if !ok {
		return
	}
	fail := c.deleteLocked(&info, sh, ov)
	sh.mu.Unlock()
	if fail != nil {
		fail()
		return
	}
	c.h.c.deletes.Add(1)
	if c.applied500 {
		c.h.c.applied500.Add(1)
		c.html(http.StatusInternalServerError, iisError500)
		return
	}
	c.w.WriteHeader(http.StatusNoContent)
}

func (c *call) deleteLocked(info *SafeInfo, sh *shard, ov *safeOverlay) answer {
	if perms, ok := c.h.st.permsLocked(info, ov, c.user); !ok || !perms.Has(pam.ManageSafeMembers) {
		return c.forbidden
	}
	cur, found, seeded := c.h.st.memberLocked(info, ov, c.member)
	if !found {
		return func() { c.notMember(c.member, info.Name) }
	}
	c.h.st.setLocked(sh, info.Index, cur, true, seeded).writes++
	return nil
}

// Errors of the admin mutations.
var (
	// ErrUnknownSafe is returned for a Safe name that does not exist or
	// was deleted.
	ErrUnknownSafe = errors.New("pamtest: no such Safe")
	// ErrNotMember is returned by RemoveMember for a name that is not a
	// member of the Safe.
	ErrNotMember = errors.New("pamtest: not a member of the Safe")
)
