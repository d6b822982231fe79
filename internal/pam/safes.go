package pam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// SafesOptions narrows and pages GET /API/Safes.
type SafesOptions struct {
	// Limit is the page size (default Config.SafesPageSize, 1000). The
	// PVWA may cap it.
	Limit int
	// Offset is where the first page starts (default 0), to resume a
	// listing.
	Offset int
	// Search is the PVWA "search" filter (Safe name contains). It is sent
	// again on pages whose nextLink drops it.
	Search string
}

// safeListKeys name the array of Safes in a list answer: "value" (12.x and
// later) or "Safes" (older).
var safeListKeys = []string{"value", "Safes"}

// wireSafe is a Safe as the PVWA sends it, in any key casing.
type wireSafe struct {
	URLID        flexString `json:"safeUrlId"`
	Name         flexString `json:"safeName"`
	Number       flexInt    `json:"safeNumber"`
	Description  flexString `json:"description"`
	ManagingCPM  flexString `json:"managingCPM"`
	CreationTime flexInt    `json:"creationTime"`
}

func (w *wireSafe) safe() (Safe, error) {
	s := Safe{
		URLID:        string(w.URLID),
		Name:         string(w.Name),
		Number:       int64(w.Number),
		Description:  string(w.Description),
		ManagingCPM:  string(w.ManagingCPM),
		CreationTime: int64(w.CreationTime),
	}
	switch {
	case s.URLID == "" && s.Name == "":
		return Safe{}, errors.New("a Safe without safeUrlId and safeName")
	case s.URLID == "":
		s.URLID = EscapeSafeName(s.Name)
	case s.Name == "":
		s.Name = unescapePath(s.URLID)
	}
	return s, nil
}

// Safes lists the Safes the user is a member of, following nextLink page by
// page (GET /API/Safes?limit=…). Range over it:
//
//	for safe, err := range c.Safes(ctx, pam.SafesOptions{}) {
//		if err != nil { return err } // the last value; the listing stopped
//		...
//	}
//
// An error is yielded once, as the last value. At most one page is held in
// memory, decoded as it streams in; the HTTP answer is closed before the
// page's Safes are yielded, so the loop body may take its time. Each range
// starts a new listing from SafesOptions.Offset. A nextLink may be relative
// to /PasswordVault/ in any casing, an absolute path or an absolute URL on
// the same host; a link that repeats, goes back, points to another host or
// comes with an empty page ends the listing with a *ResponseError.
// Safes without safeUrlId get one derived from the name (EscapeSafeName).
func (c *Client) Safes(ctx context.Context, opt SafesOptions) iter.Seq2[Safe, error] {
	return func(yield func(Safe, error) bool) {
		limit := orDefault(opt.Limit, c.s.safesLimit)
		st := &pageState{limit: limit, offset: int64(max(opt.Offset, 0)), search: opt.Search}
		rq := &request{
			op:     "list safes",
			method: http.MethodGet,
			route:  "/API/Safes",
			path:   c.apiPath("Safes"),
			query:  st.query(),
		}
		listPages(ctx, c, rq, st, safeListKeys, false, func(dec *json.Decoder) (Safe, error) {
			var w wireSafe
			if err := dec.Decode(&w); err != nil {
				return Safe{}, err
			}
			return w.safe()
		}, yield)
	}
}

// SafesPage is one page of the Safe list.
type SafesPage struct {
	// Safes are the page's Safes, in listing order.
	Safes []Safe
	// Count is the total number of Safes the caller can see, when the
	// PVWA said (HasCount).
	Count    int
	HasCount bool
	// More is true when the PVWA says more pages follow (a nextLink).
	More bool
}

// SafesPage fetches the one page of the Safe list that starts at
// opt.Offset (GET /API/Safes?offset&limit), for callers that fetch pages
// side by side: the first page's Count and the number of Safes it holds
// (the PVWA may cap the limit) give every other page's offset. Safes with
// a nextLink is the way to read the list in order.
func (c *Client) SafesPage(ctx context.Context, opt SafesOptions) (SafesPage, error) {
	limit := orDefault(opt.Limit, c.s.safesLimit)
	st := &pageState{limit: limit, offset: int64(max(opt.Offset, 0)), search: opt.Search}
	rq := &request{op: "list safes", method: http.MethodGet, route: "/API/Safes", path: c.apiPath("Safes"), query: st.query()}
	var out SafesPage
	err := c.do(ctx, rq, func(resp *http.Response) error {
		out.Safes = out.Safes[:0] // a replayed request starts over
		pi, err := decodePage(resp.Body, safeListKeys, func(dec *json.Decoder) error {
			var w wireSafe
			if err := dec.Decode(&w); err != nil {
				return err
			}
			s, err := w.safe()
			if err == nil {
				out.Safes = append(out.Safes, s)
			}
			return err
		})
		if err == nil && !pi.hasList {
			err = fmt.Errorf("answer has no list (%s)", strings.Join(safeListKeys, " or "))
		}
		out.Count, out.HasCount, out.More = int(pi.count), pi.hasCount, pi.nextLink != ""
		return err
	})
	return out, err
}

// listPages runs a paged listing for an iterator: it fetches a page with
// rq, decodes its items with item (holding that page only), yields them,
// and goes on with the next page (see nextPage) until the end, an error
// (yielded last) or the consumer stops.
func listPages[T any](ctx context.Context, c *Client, rq *request, st *pageState, listKeys []string, byOffset bool,
	item func(*json.Decoder) (T, error), yield func(T, error) bool) {
	var zero T
	page := make([]T, 0, min(st.limit, 1000))
	for rq != nil {
		var pi pageInfo
		err := c.do(ctx, rq, func(resp *http.Response) error {
			page = page[:0] // a replayed request starts over
			var err error
			pi, err = decodePage(resp.Body, listKeys, func(dec *json.Decoder) error {
				v, err := item(dec)
				if err == nil {
					page = append(page, v)
				}
				return err
			})
			if err == nil && !pi.hasList {
				err = fmt.Errorf("answer has no list (%s)", strings.Join(listKeys, " or "))
			}
			return err
		})
		if err != nil {
			yield(zero, err)
			return
		}
		for _, v := range page {
			if !yield(v, nil) {
				return
			}
		}
		if rq, err = c.nextPage(rq, pi, st, byOffset); err != nil {
			yield(zero, err)
			return
		}
	}
}

// Safe returns one Safe by its safeUrlId (GET /API/Safes/{id}/).
func (c *Client) Safe(ctx context.Context, urlID string) (Safe, error) {
	op := fmt.Sprintf("get safe %q", urlID)
	seg, err := safeSegment(op, urlID)
	if err != nil {
		return Safe{}, err
	}
	rq := &request{
		op:     op,
		method: http.MethodGet,
		route:  "/API/Safes/{id}",
		path:   c.apiPath("Safes", seg) + "/",
	}
	var s Safe
	err = c.do(ctx, rq, func(resp *http.Response) error {
		var w wireSafe
		if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
			return err
		}
		s, err = w.safe()
		return err
	})
	return s, err
}

// pageState tracks a paged listing to build the next request and to stop a
// server that sends us in circles.
type pageState struct {
	limit    int
	offset   int64  // offset of the current page
	search   string // sent again if a nextLink drops it
	filter   string // likewise
	prevLink string
}

func (st *pageState) query() string {
	off := ""
	if st.offset > 0 {
		off = strconv.FormatInt(st.offset, 10)
	}
	return encodeQuery("limit", strconv.Itoa(st.limit), "offset", off, "search", st.search, "filter", st.filter)
}

// nextPage returns the request for the page after rq, or nil at the end.
// A nextLink is always followed; without one, byOffset pages on with
// offset+limit while the count (or a full page, without count) says there
// is more.
func (c *Client) nextPage(rq *request, pi pageInfo, st *pageState, byOffset bool) (*request, error) {
	bad := func(format string, a ...any) error {
		return &ResponseError{Op: rq.op, Method: rq.method, Path: rq.path, Status: http.StatusOK, Err: fmt.Errorf(format, a...)}
	}
	next := *rq
	if pi.nextLink != "" {
		switch {
		case pi.items == 0:
			return nil, bad("empty page with nextLink %q", pi.nextLink)
		case pi.nextLink == st.prevLink:
			return nil, bad("nextLink %q repeats", pi.nextLink)
		}
		path, query, err := c.resolveLink(pi.nextLink)
		if err != nil {
			return nil, bad("%w", err)
		}
		if st.search != "" && !hasQueryKey(query, "search") {
			query = joinQuery(query, encodeQuery("search", st.search))
		}
		if st.filter != "" && !hasQueryKey(query, "filter") {
			query = joinQuery(query, encodeQuery("filter", st.filter))
		}
		if off, ok := queryInt(query, "offset"); ok {
			if off <= st.offset {
				return nil, bad("nextLink %q goes back to offset %d", pi.nextLink, off)
			}
			st.offset = off
		}
		st.prevLink = pi.nextLink
		next.path, next.query = path, query
		return &next, nil
	}
	if !byOffset || pi.items == 0 {
		return nil, nil
	}
	st.offset += int64(pi.items)
	if pi.hasCount && st.offset >= pi.count || !pi.hasCount && pi.items < st.limit {
		return nil, nil
	}
	next.query = st.query()
	return &next, nil
}

// resolveLink turns a nextLink into the escaped path and query to request.
// The PVWA sends it relative to the /PasswordVault/ base ("api/safes?…",
// "API/Safes?…"); an absolute path or an absolute URL on the same host is
// accepted too. The link's own encoding is kept.
func (c *Client) resolveLink(link string) (path, query string, err error) {
	if i := strings.IndexByte(link, '#'); i >= 0 {
		link = link[:i]
	}
	path, query, _ = strings.Cut(link, "?")
	base := c.s.base.EscapedPath()                  // "/…/PasswordVault"
	prefix := base[:len(base)-len("PasswordVault")] // "/…/"
	// An absolute URL must point at the PVWA itself: following it elsewhere
	// would send the session token to another host.
	if i := strings.Index(path, "://"); i >= 0 && !strings.Contains(path[:i], "/") {
		scheme, rest := path[:i], path[i+3:]
		host, p, _ := strings.Cut(rest, "/")
		if !strings.EqualFold(scheme, c.s.base.Scheme) || !sameHost(host, c.s.base.Host, c.s.base.Scheme) {
			return "", "", fmt.Errorf("nextLink points to %s://%s, not to the PVWA %s", scheme, host, c.s.base.Host)
		}
		path = "/" + p
	}
	switch {
	case hasPrefixFold(path, base+"/"):
		// absolute path under the base
	case hasPrefixFold(path, "/PasswordVault/"):
		path = prefix + path[1:]
	case strings.HasPrefix(path, "/"):
		path = base + path
	case hasPrefixFold(path, "PasswordVault/"):
		path = prefix + path
	default:
		path = base + "/" + strings.TrimPrefix(path, "./")
	}
	return cleanEncoded(path, encPath), cleanEncoded(query, encQuery), nil
}

// sameHost compares two host[:port] values of the given scheme, with the
// default port implied when absent.
func sameHost(a, b, scheme string) bool {
	def := ":443"
	if scheme == "http" {
		def = ":80"
	}
	norm := func(h string) string {
		h = strings.ToLower(h)
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			h = strings.TrimSuffix(h, ":") + def
		}
		return h
	}
	return norm(a) == norm(b)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// hasQueryKey reports whether the raw query has the key, in any case.
func hasQueryKey(query, key string) bool {
	_, ok := queryValue(query, key)
	return ok
}

func queryValue(query, key string) (string, bool) {
	for part := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(part, "=")
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

func queryInt(query, key string) (int64, bool) {
	v, ok := queryValue(query, key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

func joinQuery(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "&" + b
}

// safeSegment returns the safeUrlId as a path segment: verbatim, because it
// is already percent-encoded, with only bytes that cannot appear in a path
// segment escaped.
func safeSegment(op, urlID string) (string, error) {
	if urlID == "" || urlID == "." || urlID == ".." {
		return "", &argError{op: op, msg: "invalid Safe URL id"}
	}
	return cleanEncoded(urlID, encSegment), nil
}

// argError is a call refused before anything is sent. It is ErrPermanent.
type argError struct{ op, msg string }

func (e *argError) Error() string        { return e.op + ": " + e.msg }
func (e *argError) Is(target error) bool { return target == ErrPermanent }
