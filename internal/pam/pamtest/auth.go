package pamtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// session is one logged-on session.
type session struct {
	token    string
	user     *vaultUser
	created  time.Time
	lastUsed atomic.Int64 // Unix nanoseconds
}

// sessions holds the live sessions. Safe for concurrent use.
type sessions struct {
	ttl, idle time.Duration
	now       func() time.Time
	ended     *atomic.Int64 // stats counter of ended sessions

	mu      sync.RWMutex
	byToken map[string]*session
	byUser  map[*vaultUser]map[*session]struct{}
	logons  int
}

func newSessions(ttl, idle time.Duration, now func() time.Time, ended *atomic.Int64) *sessions {
	return &sessions{
		ttl: ttl, idle: idle, now: now, ended: ended,
		byToken: make(map[string]*session),
		byUser:  make(map[*vaultUser]map[*session]struct{}),
	}
}

// logon starts a session for u. Without concurrent every other session of
// u ends, as the PVWA does.
func (ss *sessions) logon(u *vaultUser, concurrent bool, token string) *session {
	now := ss.now()
	s := &session{token: token, user: u, created: now}
	s.lastUsed.Store(now.UnixNano())
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !concurrent {
		for old := range ss.byUser[u] {
			ss.endLocked(old)
		}
	}
	ss.byToken[token] = s
	if ss.byUser[u] == nil {
		ss.byUser[u] = make(map[*session]struct{})
	}
	ss.byUser[u][s] = struct{}{}
	ss.logons++
	if ss.logons%256 == 0 {
		ss.sweepLocked(now)
	}
	return s
}

func (ss *sessions) endLocked(s *session) {
	if _, ok := ss.byToken[s.token]; !ok {
		return
	}
	delete(ss.byToken, s.token)
	delete(ss.byUser[s.user], s)
	if len(ss.byUser[s.user]) == 0 {
		delete(ss.byUser, s.user)
	}
	ss.ended.Add(1)
}

// sweepLocked ends every expired session.
func (ss *sessions) sweepLocked(now time.Time) {
	for _, s := range ss.byToken {
		if ss.expired(s, now) {
			ss.endLocked(s)
		}
	}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	if ss.ttl > 0 && now.Sub(s.created) >= ss.ttl {
		return true
	}
	return ss.idle > 0 && now.UnixNano()-s.lastUsed.Load() >= int64(ss.idle)
}

// lookup returns the live session of token and marks it used.
func (ss *sessions) lookup(token string) (*session, bool) {
	if token == "" {
		return nil, false
	}
	ss.mu.RLock()
	s, ok := ss.byToken[token]
	ss.mu.RUnlock()
	if !ok {
		return nil, false
	}
	now := ss.now()
	if ss.expired(s, now) {
		ss.mu.Lock()
		ss.endLocked(s)
		ss.mu.Unlock()
		return nil, false
	}
	s.lastUsed.Store(now.UnixNano())
	return s, true
}

// logoff ends the session of token.
func (ss *sessions) logoff(s *session) {
	ss.mu.Lock()
	ss.endLocked(s)
	ss.mu.Unlock()
}

// endAll ends every session and returns how many there were.
func (ss *sessions) endAll() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := len(ss.byToken)
	for _, s := range ss.byToken {
		ss.endLocked(s)
	}
	return n
}

// active returns the number of live (not yet swept) sessions.
func (ss *sessions) active() int {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return len(ss.byToken)
}

// newPVWAToken returns a 180-character base64 session token, the length
// psPAS takes for a v10 token.
func newPVWAToken() (string, error) {
	b := make([]byte, 135)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session token: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// newCloudToken returns a JWT-shaped Identity access token for user (the
// signature is random: nothing verifies it).
func newCloudToken(user string, now time.Time, lifetime time.Duration) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","kid":"pvwasim","typ":"JWT"}`))
	claims, err := json.Marshal(map[string]any{
		"aud":             "__idaptive_cybr_user_oidc",
		"iss":             "https://aat4012.id.cyberark.cloud/__idaptive_cybr_user_oidc/",
		"sub":             guidOf(user),
		"unique_name":     user,
		"tenant_id":       "AAT4012",
		"subdomain":       "pvwasim",
		"platform_domain": "cyberark.cloud",
		"scope":           "openid api profile",
		"iat":             now.Unix(),
		"exp":             now.Add(lifetime).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	sig := make([]byte, 256)
	if _, err := rand.Read(sig); err != nil {
		return "", fmt.Errorf("token signature: %w", err)
	}
	return header + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString(sig), nil
}

// tokenFrom extracts the token of the Authorization header: the raw value
// on a self-hosted PVWA, the value after "Bearer " in Cloud mode.
func tokenFrom(header string, cloud bool) string {
	header = strings.TrimSpace(header)
	if !cloud {
		return header
	}
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(header[len(scheme):])
}
