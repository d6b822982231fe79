package policy

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/scope"
)

// BuiltinUsers are the Vault's own users and groups. No rule may name
// them: changing their membership can break the Vault's operation.
var BuiltinUsers = []string{"Master", "Batch", "Backup Users", "DR Users", "Notification Engines", "Operators"}

// memberForbidden are the characters the PVWA refuses in member names
// (Add/Update Safe member documentation).
const memberForbidden = `\/:*<>"|?%&+`

// memberNameForbidden describes the first character of name that the
// PVWA refuses in a member name, or returns "".
func memberNameForbidden(name string) string {
	for _, r := range name {
		switch {
		case strings.ContainsRune(memberForbidden, r):
			return "'" + string(r) + "'"
		case unicode.IsControl(r):
			return fmt.Sprintf("control character U+%04X", r)
		}
	}
	return ""
}

// checkRules runs the checks that look at several rules or at Options:
// unique names, member names the PVWA accepts, and no rule naming the
// API user, a built-in user or a CPM user. Rules whose fields could not be
// read are checked as far as they were.
func checkRules(rules []Rule, opt Options, add func(Pos, string, ...any)) {
	cpms := append([]string{scope.DefaultCPM}, opt.CPMs...)
	for i := range rules {
		cpms = append(cpms, rules[i].ManagedBy...)
	}
	reserved := func(name string) string {
		switch {
		case opt.APIUser != "" && SameMember(name, opt.APIUser):
			return "is the API user safeperm logs on as; a run must not change its own access"
		case containsFold(BuiltinUsers, name):
			return "is a built-in Vault user; safeperm does not change built-in users"
		case containsFold(cpms, name):
			return "is a CPM user; safeperm does not change CPM users"
		}
		return ""
	}
	firstName := map[string]int{} // folded name -> index of the first rule
	for i := range rules {
		r := &rules[i]
		label := r.label(i)
		if r.Name != "" {
			key := scope.Fold(r.Name)
			if first, dup := firstName[key]; dup {
				where := fmt.Sprintf("first at line %d", rules[first].at("name").Line)
				if rules[first].keyAt == nil {
					where = fmt.Sprintf("first as rule %d", first+1)
				}
				add(r.at("name"), "duplicate rule name %q (%s); rule names are compared ignoring case", r.Name, where)
			} else {
				firstName[key] = i
			}
		}
		for _, m := range []struct{ key, name string }{{"member", r.Member.Name}, {"copyFrom", r.Source}} {
			if m.name == "" {
				continue
			}
			if what := memberNameForbidden(m.name); what != "" {
				add(r.at(m.key), "%s %q in %s holds %s, which the PVWA does not accept in member names", m.key, m.name, label, what)
			} else if why := reserved(m.name); why != "" {
				add(r.at(m.key), "%s %q in %s %s", m.key, m.name, label, why)
			}
		}
		if r.Source != "" && r.Member.Name != "" && SameMember(r.Source, r.Member.Name) {
			add(r.at("copyFrom"), "copyFrom %q in %s names the rule's own member", r.Source, label)
		}
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if SameMember(x, s) {
			return true
		}
	}
	return false
}

// gen1Permissions are the flag names of the old (Gen1, PrivateArk) Safe
// member API, which people still type, with the Gen2 flag each became.
var gen1Permissions = map[string]string{
	"listcontent":         "listAccounts",
	"retrieve":            "retrieveAccounts",
	"restrictedretrieve":  "useAccounts",
	"add":                 "addAccounts",
	"update":              "updateAccountContent",
	"updatemetadata":      "updateAccountProperties",
	"rename":              "renameAccounts",
	"delete":              "deleteAccounts",
	"unlock":              "unlockAccounts",
	"viewaudit":           "viewAuditLog",
	"viewmembers":         "viewSafeMembers",
	"addrenamefolder":     "createFolders",
	"deletefolder":        "deleteFolders",
	"movefilesandfolders": "moveAccountsAndFolders",
	"validatesafecontent": "accessWithoutConfirmation",
}

// suggestPermission returns `; did you mean "unlockAccounts"?` for a
// misspelt, mis-cased or Gen1 flag name, or the list of flag names.
func suggestPermission(name string) string {
	s := gen1Permissions[strings.ToLower(name)]
	if s == "" {
		s = closest(name, pam.PermissionNames())
	}
	if s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return "; the permissions are " + strings.Join(pam.PermissionNames(), ", ")
}

// closest returns the candidate nearest to s, ignoring case: the only one
// s is a prefix of, or the one at the smallest edit distance if that is at
// most a third of its length (at least 1). "" when none is close.
func closest(s string, candidates []string) string {
	ls := strings.ToLower(s)
	if len(ls) >= 3 {
		var prefixed []string
		for _, c := range candidates {
			if strings.HasPrefix(strings.ToLower(c), ls) {
				prefixed = append(prefixed, c)
			}
		}
		if len(prefixed) == 1 {
			return prefixed[0]
		}
	}
	best, bestD := "", -1
	for _, c := range candidates {
		d := distance(ls, strings.ToLower(c))
		if d <= max(1, len([]rune(c))/3) && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours each cost 1.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
