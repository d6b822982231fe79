package pam

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/secret"
)

// TestConfigAndClientNeverPrintSecrets prints a Config and a logged-on
// Client every way a caller might log them, including by reflection (an
// unexported field of the caller's struct, or %+v of the Client's own
// fields, which bypasses Client.Format), and checks that no password,
// client secret or token shows.
func TestConfigAndClientNeverPrintSecrets(t *testing.T) {
	t.Parallel()
	f := newFakePVWA(t, okMember)
	pwCfg := testConfig(f.srv.URL, nil)
	idCfg := Config{
		BaseURL:      f.srv.URL,
		Auth:         AuthIdentity,
		IdentityURL:  f.srv.URL,
		ClientID:     testClientID,
		ClientSecret: secret.New(testSecret),
	}
	c, _ := newTestClient(t, f, nil)
	if _, err := c.Member(ctxT(t), "S", "PSMAppUsers"); err != nil { // holds a token now
		t.Fatal(err)
	}
	if c.token.IsZero() {
		t.Fatal("client holds no token; the check below proves nothing")
	}
	type holder struct {
		cfg    Config  // unexported: fmt prints it by reflection
		client *Client // a nested pointer prints as an address
	}
	zlog := func(v any) string {
		var b bytes.Buffer
		log := zerolog.New(&b)
		log.Info().Interface("v", v).Msg("x")
		return b.String()
	}
	tests := []struct {
		name    string
		out     string
		redacts bool // the output must show secret.Redacted
	}{
		{"password config %v", fmt.Sprintf("%v", pwCfg), true},
		{"password config %+v", fmt.Sprintf("%+v", pwCfg), true},
		{"password config %#v", fmt.Sprintf("%#v", pwCfg), true},
		{"*config %+v", fmt.Sprintf("%+v", &pwCfg), true},
		{"identity config %+v", fmt.Sprintf("%+v", idCfg), true},
		{"identity config %#v", fmt.Sprintf("%#v", idCfg), true},
		{"config in unexported field %+v", fmt.Sprintf("%+v", holder{cfg: pwCfg, client: c}), true},
		{"config in unexported field %#v", fmt.Sprintf("%#v", holder{cfg: idCfg, client: c}), true},
		{"client %v %+v %#v %s", fmt.Sprintf("%v %+v %#v %s", c, c, c, c), false},
		{"client fields by reflection", fmt.Sprintf("%+v", reflect.ValueOf(c).Elem()), true},
		{"client fields by reflection %#v", fmt.Sprintf("%#v", reflect.ValueOf(c).Elem()), true},
		{"zerolog Interface of config", zlog(idCfg), false},
		{"error wrapping the config", fmt.Errorf("start with %+v: %w", pwCfg, ErrUnauthorized).Error(), true},
	}
	// Verbs vet would flag for a struct, which fmt's bad-verb message
	// prints in full.
	for _, verb := range []string{"%s", "%q", "%x", "%d"} {
		tests = append(tests, struct {
			name    string
			out     string
			redacts bool
		}{"config in unexported field " + verb, fmt.Sprintf(verb, holder{cfg: idCfg}), false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkNoSecrets(t, tt.name, tt.out)
			c.mu.Lock()
			tok := strings.TrimPrefix(c.token.Reveal(), "Bearer ")
			c.mu.Unlock()
			if strings.Contains(tt.out, tok) {
				t.Errorf("%s shows the session token:\n%s", tt.name, tt.out)
			}
			if tt.redacts && !strings.Contains(tt.out, secret.Redacted) {
				t.Errorf("%s does not show %s:\n%s", tt.name, secret.Redacted, tt.out)
			}
		})
	}
}
