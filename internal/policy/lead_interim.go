package policy

// Interim definitions the lead uses until the policy file loader lands;
// dropped in favour of the loader's at merge.

import (
	"strings"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/scope"
)

// Policy is a policy file as read.
type Policy struct {
	File    string
	Version int
	Rules   []Rule
}

// FromFlags returns the one-rule policy of --member and --permissions.
func FromFlags(member Member, perms pam.PermSet) *Policy {
	return &Policy{Version: Version, Rules: []Rule{{Name: "flags", Safes: []scope.Pattern{scope.NewPattern("*")},
		Member: member, Action: ActionGrant, Permissions: perms}}}
}

// Applies returns the directives of the rules that apply to the Safe.
func (p *Policy) Applies(safeName, managingCPM string) []Directive {
	var out []Directive
	for i := range p.Rules {
		r := &p.Rules[i]
		if matchAny(r.Safes, safeName) && !matchAny(r.Except, safeName) && managed(r.ManagedBy, managingCPM) {
			out = append(out, r.Directive())
		}
	}
	return out
}

func matchAny(ps []scope.Pattern, name string) bool {
	for _, p := range ps {
		if p.Match(name) {
			return true
		}
	}
	return false
}

func managed(by []string, managingCPM string) bool {
	if len(by) == 0 {
		return true
	}
	for _, c := range strings.Split(managingCPM, ",") {
		for _, b := range by {
			if strings.EqualFold(strings.TrimSpace(c), b) {
				return true
			}
		}
	}
	return false
}

// Removals names the rules that remove members.
func (p *Policy) Removals() []string {
	var out []string
	for i := range p.Rules {
		if p.Rules[i].Directive().Removes() {
			out = append(out, p.Rules[i].Name)
		}
	}
	return out
}

// Options says which members a policy may not name.
type Options struct {
	APIUser string
	CPMs    []string
}

// Load reads a policy file (interim: the loader lands separately).
func Load(path string, opt Options) (*Policy, error) {
	return nil, errNotYet
}

var errNotYet = errorString("policy files are not supported yet")

type errorString string

func (e errorString) Error() string { return string(e) }
