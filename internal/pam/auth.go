package pam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/safeperm/safeperm/internal/secret"
)

// defaultTokenTTL is the Identity token lifetime assumed when the answer has
// no expires_in (pam-api.md §1.2).
const defaultTokenTTL = time.Hour

// Identity tokens are renewed once renewFraction of their lifetime has
// passed, so calls never carry a token about to expire.
const renewFraction = 0.8

// Logon logs on now, replacing any current session, and returns an error
// matching ErrUnauthorized when the credentials are refused (the *APIError
// of the logon is kept in the chain). Calls log on by themselves when needed,
// so calling Logon is optional; it is useful to check credentials at start.
// Concurrent Logon calls and re-logons share one request.
//
// Self-hosted PVWA: POST /API/Auth/{type}/Logon with concurrentSession true,
// so that several workers logged on as the same user do not end each other's
// sessions. Identity: POST <IdentityURL>/oauth2/platformtoken with the
// client credentials.
func (c *Client) Logon(ctx context.Context) error {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	_, _, err := c.relogon(ctx, gen)
	return err
}

// Logoff ends the session, best effort: it forgets the token at once, then
// posts /API/Auth/Logoff (not for Identity tokens, which the PVWA cannot
// revoke). The returned error is for logging only; the session ends at its
// timeout anyway. A later call logs on again. Call it after in-flight calls
// have finished.
func (c *Client) Logoff(ctx context.Context) error {
	c.mu.Lock()
	tok := c.token
	c.token = secret.Value{}
	c.gen++
	c.renewAt, c.expiresAt = time.Time{}, time.Time{}
	c.mu.Unlock()
	if tok.IsZero() || c.s.authType == AuthIdentity {
		return nil
	}
	rq := &request{
		op:     "log off",
		method: http.MethodPost,
		route:  "/API/Auth/Logoff",
		path:   c.apiPath("Auth", "Logoff"),
	}
	err := c.send(ctx, rq, tok.Reveal(), 1, nil)
	if err != nil {
		c.log.Debug().Err(err).Msg("log off failed; the session ends at its timeout")
	}
	return err
}

// session returns the Authorization header value to use and its
// generation, logging on first when there is no usable token.
func (c *Client) session(ctx context.Context) (string, uint64, error) {
	c.mu.Lock()
	if !c.token.IsZero() {
		now := c.now()
		// A token past its renewal point is still used while another
		// caller renews it, as long as it has not expired.
		if c.renewAt.IsZero() || now.Before(c.renewAt) || (c.flight != nil && now.Before(c.expiresAt)) {
			h, g := c.token.Reveal(), c.gen
			c.mu.Unlock()
			return h, g, nil
		}
		c.log.Debug().Msg("identity token due for renewal")
	}
	gen := c.gen
	c.mu.Unlock()
	return c.relogon(ctx, gen)
}

// relogon makes sure there is a session newer than generation seen, logging
// on unless another caller already did. Concurrent callers share one logon
// request; if the caller leading it gives up (its context ends), a waiting
// caller whose context is still alive takes over.
func (c *Client) relogon(ctx context.Context, seen uint64) (string, uint64, error) {
	for {
		c.mu.Lock()
		if c.gen != seen && !c.token.IsZero() {
			h, g := c.token.Reveal(), c.gen
			c.mu.Unlock()
			return h, g, nil
		}
		if f := c.flight; f != nil {
			c.mu.Unlock()
			if c.waitHook != nil {
				c.waitHook()
			}
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", 0, fmt.Errorf("wait for logon: %w", ctx.Err())
			}
			if f.err != nil && !(isContextError(f.err) && ctx.Err() == nil) {
				return "", 0, f.err
			}
			continue // the new session is there, or the leader gave up
		}
		f := &logonFlight{done: make(chan struct{})}
		c.flight = f
		c.mu.Unlock()

		issued := c.now()
		tok, ttl, err := c.logon(ctx)

		c.mu.Lock()
		if err == nil {
			c.token = tok
			c.gen++
			c.renewAt, c.expiresAt = time.Time{}, time.Time{}
			if ttl > 0 {
				c.renewAt = issued.Add(time.Duration(float64(ttl) * renewFraction))
				c.expiresAt = issued.Add(ttl)
			}
		}
		f.err = err
		c.flight = nil
		close(f.done)
		h, g := c.token.Reveal(), c.gen
		c.mu.Unlock()
		if err != nil {
			return "", 0, err
		}
		c.log.Info().Str(logKeyAuth, c.s.authType).Str(logKeyUser, c.user()).Uint64(logKeySession, g).Msg("logged on")
		return h, g, nil
	}
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// user names the account that logs on, for logs and errors.
func (c *Client) user() string {
	if c.s.authType == AuthIdentity {
		return c.clientID
	}
	return c.username
}

// logon makes one logon request and returns the Authorization header value
// and, for Identity tokens, their lifetime (0 for PVWA session tokens, whose
// lifetime the server does not tell). Failures other than the caller's
// context ending are *LogonError.
func (c *Client) logon(ctx context.Context) (secret.Value, time.Duration, error) {
	var (
		tok secret.Value
		ttl time.Duration
		err error
	)
	if c.s.authType == AuthIdentity {
		tok, ttl, err = c.identityToken(ctx)
	} else {
		tok, err = c.pvwaLogon(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return secret.Value{}, 0, err
		}
		return secret.Value{}, 0, &LogonError{Err: err}
	}
	return tok, ttl, nil
}

// logonBody is the Gen2 Logon request. Windows sends concurrentSession only.
type logonBody struct {
	Username          string `json:"username,omitempty"`
	Password          string `json:"password,omitempty"`
	ConcurrentSession bool   `json:"concurrentSession"`
}

func (c *Client) pvwaLogon(ctx context.Context) (secret.Value, error) {
	body := logonBody{ConcurrentSession: true}
	op := "log on with Windows"
	if c.s.authType != AuthWindows {
		body.Username, body.Password = c.username, c.password.Reveal()
		op = fmt.Sprintf("log on as %q with %s", c.username, c.s.authPath)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return secret.Value{}, fmt.Errorf("%s: encode request: %w", op, err)
	}
	rq := &request{
		op:     op,
		method: http.MethodPost,
		route:  "/API/Auth/" + c.s.authPath + "/Logon",
		path:   c.apiPath("Auth", c.s.authPath, "Logon"),
		body:   b,
	}
	var tok string
	err = c.send(ctx, rq, "", 1, func(resp *http.Response) error {
		raw, err := readSmall(resp)
		if err != nil {
			return err
		}
		tok, err = parseSessionToken(raw)
		return err
	})
	if err != nil {
		return secret.Value{}, err
	}
	return secret.New(tok), nil
}

// parseSessionToken reads the Logon answer: a JSON string literal, or
// (tolerated) the bare token. Errors never quote the answer.
func parseSessionToken(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	var tok string
	switch {
	case len(raw) == 0:
		return "", errors.New("empty answer instead of a session token")
	case raw[0] == '"':
		if json.Unmarshal(raw, &tok) != nil {
			return "", errors.New("answer is not a valid JSON string")
		}
	case raw[0] == '{' || raw[0] == '[':
		return "", errors.New("answer is a JSON object, not a session token (two-step Windows/PKI logon is not supported)")
	default:
		tok = string(raw)
	}
	if err := checkToken(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// checkToken makes sure a token can go into a header as it is.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("empty session token")
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return errors.New("session token holds characters a header cannot carry")
		}
	}
	return nil
}

// platformToken is the Identity answer.
type platformToken struct {
	AccessToken string  `json:"access_token"`
	TokenType   string  `json:"token_type"`
	ExpiresIn   flexInt `json:"expires_in"`
}

func (c *Client) identityToken(ctx context.Context) (secret.Value, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {c.clientID},
		"client_secret": {c.clientSecret.Reveal()},
	}
	rq := &request{
		op:     fmt.Sprintf("get identity token for %q", c.clientID),
		method: http.MethodPost,
		route:  "/oauth2/platformtoken",
		origin: c.s.tokenURL,
		path:   c.s.tokenURL.EscapedPath(),
		body:   []byte(form.Encode()),
		form:   true,
	}
	var pt platformToken
	err := c.send(ctx, rq, "", 1, func(resp *http.Response) error {
		raw, err := readSmall(resp)
		if err != nil {
			return err
		}
		if json.Unmarshal(raw, &pt) != nil {
			return errors.New("answer is not a JSON token object")
		}
		if pt.AccessToken == "" {
			return errors.New("answer has no access_token")
		}
		return checkToken(pt.AccessToken)
	})
	if err != nil {
		return secret.Value{}, 0, err
	}
	ttl := time.Duration(pt.ExpiresIn) * time.Second
	if ttl <= 0 {
		ttl = defaultTokenTTL
	}
	return secret.New("Bearer " + pt.AccessToken), ttl, nil
}
