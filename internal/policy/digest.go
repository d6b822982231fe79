package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/safeperm/safeperm/internal/scope"
)

// Digest identifies the policy's meaning: two policies with the same rules
// (names, patterns, members, actions and flags, in the same order) have the
// same digest, whatever their files' formatting. A run resumed with the
// same --run-id must have the same digest.
func (p *Policy) Digest() string {
	type rule struct {
		Name         string
		Safes        []string
		Except       []string
		ManagedBy    []string
		Directive    Directive
		RemoveSource bool
	}
	rules := make([]rule, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		rules[i] = rule{Name: r.Name, Safes: patternStrings(r.Safes), Except: patternStrings(r.Except),
			ManagedBy: r.ManagedBy, Directive: r.Directive(), RemoveSource: r.RemoveSource}
	}
	b, _ := json.Marshal(rules) // plain data: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func patternStrings(ps []scope.Pattern) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
