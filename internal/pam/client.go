package pam

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/secret"
)

// Log field names used by the client.
const (
	logKeyComponent = "component"
	logKeyRoute     = "route"
	logKeyStatus    = "status"
	logKeyAttempt   = "attempt"
	logKeyDuration  = "duration"
	logKeyAuth      = "auth"
	logKeyUser      = "user"
	logKeySession   = "session"
	logKeyCode      = "code"
)

// Limits on answers read into memory whole.
const (
	maxErrorBody  = 64 << 10 // error bodies: enough for any JSON error or IIS page
	maxSmallBody  = 1 << 20  // logon and single-object answers
	maxDrainBytes = 64 << 10 // read off before closing so the connection is reused
)

// Client talks to one PVWA (self-hosted or Privilege Cloud) as one user.
//
// A Client is safe for concurrent use by any number of goroutines, which
// share one session: it logs on lazily at the first call, and when the PVWA
// refuses the session (401, or ErrorCode PASWS006E, CASSM005E or CASTM006E)
// it logs on again once, however many calls saw the refusal at the same
// time, and each of those calls is replayed once. Identity tokens are renewed
// before they expire. Apart from that replay the client never retries; the
// caller decides with Classify.
//
// A Client holds no resources beyond its HTTP client's idle connections:
// when done, call Logoff to end the PVWA session, then CloseIdleConnections.
type Client struct {
	s            *settings
	username     string
	password     secret.Value
	clientID     string
	clientSecret secret.Value
	log          zerolog.Logger
	limiter      Limiter
	observe      func(CallInfo)
	now          func() time.Time

	mu        sync.Mutex
	token     secret.Value // the Authorization header value
	gen       uint64       // bumped at every logon and logoff
	renewAt   time.Time    // identity: renew from here on; zero = never
	expiresAt time.Time    // identity: the token is dead from here on
	flight    *logonFlight // the logon in progress, if any

	waitHook func() // tests: called when a caller waits for another's logon
}

// logonFlight is one logon shared by every caller that needs it.
type logonFlight struct {
	done chan struct{}
	err  error
}

// New validates cfg and returns a Client. It does not contact the PVWA; the
// first call (or Logon) does. On invalid configuration the error is a
// *ConfigError listing every problem.
func New(cfg Config) (*Client, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Client{
		s:            s,
		username:     strings.TrimSpace(cfg.Username),
		password:     cfg.Password,
		clientID:     strings.TrimSpace(cfg.ClientID),
		clientSecret: cfg.ClientSecret,
		log:          cfg.Logger.With().Str(logKeyComponent, "pam").Logger(),
		limiter:      cfg.Limiter,
		observe:      cfg.Observe,
		now:          cfg.Now,
	}
	if c.now == nil {
		c.now = time.Now
	}
	for _, w := range s.warnings {
		c.log.Warn().Msg(w)
	}
	return c, nil
}

// Format prints a summary of the client with every verb, so that %+v and
// %#v, which would otherwise print unexported fields raw, show no secret.
func (c *Client) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "pam.Client{base: %s, auth: %s, user: %q}", c.s.base, c.s.authType, c.user())
}

// CloseIdleConnections closes the HTTP connections kept for reuse that are
// idle now. Call it when done with the client (after Logoff); the client
// stays usable and opens new connections as needed.
func (c *Client) CloseIdleConnections() { c.s.httpClient.CloseIdleConnections() }

// BaseURL returns the normalized PVWA base, e.g.
// "https://pvwa.example.com/PasswordVault".
func (c *Client) BaseURL() string { return c.s.base.String() }

// request is one HTTP exchange the client makes.
type request struct {
	op     string   // what the caller asked for, for errors
	method string   // HTTP method
	route  string   // path template for metrics, e.g. "/API/Safes/{id}"
	origin *url.URL // scheme and host; nil means the PVWA
	path   string   // escaped path, sent verbatim
	query  string   // encoded query, sent verbatim
	body   []byte   // JSON (or form) body, nil for none
	form   bool     // body is application/x-www-form-urlencoded
	target target   // what the path names; decides what a 404 means
}

// apiPath returns the escaped path of an API route under the PVWA base.
func (c *Client) apiPath(parts ...string) string {
	return c.s.base.EscapedPath() + "/API/" + strings.Join(parts, "/")
}

// do sends an authenticated request: it logs on first if needed and, when
// the session is refused, logs on again once and replays.
func (c *Client) do(ctx context.Context, rq *request, onOK func(*http.Response) error) error {
	hdr, gen, err := c.session(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", rq.op, err)
	}
	err = c.send(ctx, rq, hdr, 1, onOK)
	ae, ok := err.(*APIError)
	if !ok || !ae.sessionRefused() {
		return err
	}
	c.log.Info().Str(logKeyRoute, rq.method+" "+rq.route).Int(logKeyStatus, ae.Status).
		Str(logKeyCode, ae.Code).Msg("session refused; logging on again")
	hdr, _, err = c.relogon(ctx, gen)
	if err != nil {
		return fmt.Errorf("%s: %w", rq.op, err)
	}
	return c.send(ctx, rq, hdr, 2, onOK)
}

// sessionRefused reports whether the answer means the token is not (or no
// longer) accepted.
func (e *APIError) sessionRefused() bool {
	return e.Status == http.StatusUnauthorized || IsSessionExpiredCode(e.Code)
}

// send makes one HTTP exchange. onOK reads a 2xx answer; anything else
// becomes an *APIError. The body is always drained and closed.
func (c *Client) send(ctx context.Context, rq *request, authHdr string, attempt int, onOK func(*http.Response) error) (err error) {
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", rq.op, ctx.Err())
			}
			return fmt.Errorf("%s: wait for rate limiter: %w", rq.op, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, c.s.timeout)
	defer cancel()
	req, err := c.newRequest(rctx, rq, authHdr)
	if err != nil {
		return fmt.Errorf("%s: build request: %w", rq.op, err)
	}

	start := time.Now()
	status := 0
	defer func() { c.called(rq, status, time.Since(start), attempt, err) }()

	resp, err := c.s.httpClient.Do(req)
	if err != nil {
		return c.transportError(ctx, rctx, rq, err)
	}
	defer drainClose(resp.Body)
	status = resp.StatusCode
	if status < 200 || status > 299 {
		return c.apiError(rq, resp)
	}
	if onOK == nil {
		return nil
	}
	if err := onOK(resp); err != nil {
		return c.answerError(ctx, rctx, rq, status, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, rq *request, authHdr string) (*http.Request, error) {
	origin := c.s.base
	if rq.origin != nil {
		origin = rq.origin
	}
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, origin.Scheme+"://"+origin.Host+"/", body)
	if err != nil {
		return nil, err
	}
	// Path holds the decoded form and RawPath the exact bytes to send;
	// RawPath is a valid encoding of Path, so net/url sends it untouched.
	req.URL.Path = unescapePath(rq.path)
	req.URL.RawPath = rq.path
	req.URL.RawQuery = rq.query
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.s.userAgent)
	if rq.body != nil {
		if rq.form {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if authHdr != "" {
		req.Header.Set("Authorization", authHdr)
	}
	return req, nil
}

// called reports a finished exchange to the debug log and to Observe.
func (c *Client) called(rq *request, status int, d time.Duration, attempt int, err error) {
	route := rq.method + " " + rq.route
	c.log.Debug().Str(logKeyRoute, route).Int(logKeyStatus, status).Dur(logKeyDuration, d).
		Int(logKeyAttempt, attempt).Err(err).Msg("pvwa call")
	if c.observe != nil {
		c.observe(CallInfo{Route: route, Status: status, Duration: d, Attempt: attempt, Err: err})
	}
}

// transportError turns a failed exchange into a ctx error (the caller gave
// up) or a *TransportError (anything else).
func (c *Client) transportError(ctx, rctx context.Context, rq *request, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", rq.op, ctx.Err())
	}
	// *url.Error would repeat the URL with its query; keep the cause only.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if rctx.Err() != nil {
		err = fmt.Errorf("no answer within %s", c.s.timeout)
	}
	return &TransportError{Op: rq.op, Method: rq.method, Path: rq.path, Err: detachDeadline(err)}
}

// detachDeadline keeps the text of a request timeout but drops its chain:
// net/http's timeouts match context.DeadlineExceeded, which callers read as
// "my own deadline passed", and this one is not.
func detachDeadline(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New(err.Error())
	}
	return err
}

// answerError classifies a failure to read a 2xx answer: cut short or
// timed out is a *TransportError, unusable content a *ResponseError.
func (c *Client) answerError(ctx, rctx context.Context, rq *request, status int, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", rq.op, ctx.Err())
	case rctx.Err() != nil:
		return &TransportError{Op: rq.op, Method: rq.method, Path: rq.path, Err: fmt.Errorf("answer not read within %s", c.s.timeout)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne):
		return &TransportError{Op: rq.op, Method: rq.method, Path: rq.path, Err: fmt.Errorf("read answer: %w", detachDeadline(err))}
	}
	return &ResponseError{Op: rq.op, Method: rq.method, Path: rq.path, Status: status, Err: err}
}

// apiError reads a non-2xx answer into an *APIError.
func (c *Client) apiError(rq *request, resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	code, msg, details := parseErrorBody(b)
	e := &APIError{
		Op:         rq.op,
		Method:     rq.method,
		Path:       rq.path,
		Status:     resp.StatusCode,
		Code:       code,
		Message:    c.redact(msg),
		Details:    details,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
		target:     rq.target,
	}
	for i := range e.Details {
		e.Details[i].Message = c.redact(e.Details[i].Message)
	}
	return e
}

// redact removes the credentials and the current token from text the server
// sent, in case a server echoes them into an error message.
func (c *Client) redact(s string) string {
	if s == "" {
		return s
	}
	c.mu.Lock()
	tok := strings.TrimPrefix(c.token.Reveal(), "Bearer ")
	c.mu.Unlock()
	for _, v := range [...]string{tok, c.password.Reveal(), c.clientSecret.Reveal()} {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, secret.Redacted)
		}
	}
	return s
}

func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrainBytes)
	_ = body.Close()
}

// readSmall reads an answer that is expected to be small.
func readSmall(resp *http.Response) ([]byte, error) {
	return io.ReadAll(io.LimitReader(resp.Body, maxSmallBody))
}

// encodeQuery encodes key/value pairs, skipping empty values, with spaces as
// %20 (the PVWA is a .NET server; "+" is ambiguous in paths and avoided
// throughout).
func encodeQuery(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	// Values.Encode escapes "+" as %2B, so every "+" left is a space.
	return strings.ReplaceAll(v.Encode(), "+", "%20")
}

// LoggedOn reports whether the client holds a session (a logon succeeded
// and the session was not refused since). For readiness probes; it makes
// no request.
func (c *Client) LoggedOn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.token.IsZero()
}
