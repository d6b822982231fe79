package pamtest

import (
	"strings"

	"github.com/safeperm/safeperm/internal/pam"
)

// Names of the principals Options.PolicyMembers seeds, for the policy
// migrations of docs/policy.md: a group rename (Domain Ops Admins to NEWCORP
// Ops Admins), auditors on database Safes, the help desk, a Linux team on
// Safes of a second CPM, and a departed user.
const (
	SecurityAuditors = "Security Auditors"
	HelpDesk         = "HelpDesk"
	LinuxAdmins      = "LinuxAdmins"
	DomainOpsAdmins  = "Domain Ops Admins"
	NewcorpOpsAdmins = "NEWCORP Ops Admins"
	DepartedUser     = "jdoe"
	// CPMLinux is the second CPM user: it manages half of the Linux
	// Safes.
	CPMLinux = "PasswordManager_Linux"
)

// Salts of the policy members (after the vault's own).
const (
	saltPolicy uint64 = 64 + iota
	saltPolicyLinuxCPM
	saltPolicyHelpDesk
	saltPolicyLinuxAdmins
	saltPolicyAuditors
	saltPolicyDomainOps
	saltPolicyNewcorp
	saltPolicyJdoe
	saltPolicyVariant
)

// policyPatterns are the Safe names added with PolicyMembers: "DB-0042"
// for the auditors' "DB-*", "db.test.007" for their except "db.test.*"
// ("db.prod.017" already matches "db.*"; "Linux_Root_0001" matches
// "Linux*", "Help Desk 5 (Tier 2)" matches "Help Desk*").
func policyPatterns() []namePattern {
	return []namePattern{{prefix: "DB-", width: 4}, {prefix: "db.test.", width: 3}}
}

// policyPrincipals are the directory entries PolicyMembers adds.
func policyPrincipals() []*principal {
	return []*principal{
		{name: SecurityAuditors, typ: typeGroup, id: "201"},
		{name: HelpDesk, typ: typeGroup, id: "202"},
		{name: LinuxAdmins, typ: typeGroup, id: "203"},
		{name: DomainOpsAdmins, typ: typeGroup, id: "204"},
		{name: NewcorpOpsAdmins, typ: typeGroup, id: "205"},
		{name: DepartedUser, typ: typeUser, id: "206", idNum: true},
		{name: CPMLinux, typ: typeUser, id: guidOf(CPMLinux)},
	}
}

// Permission sets of the policy members.
const (
	permsHelpDesk      = permsListUseRet
	permsHelpDeskAudit = permsListUseRet | 1<<pam.ViewAuditLog
	permsLinuxSmall    = pam.PermSet(1<<pam.ListAccounts | 1<<pam.UseAccounts)
	permsLinuxWide     = permsListUseRet | 1<<pam.ViewAuditLog | 1<<pam.AccessWithoutConfirmation
	permsOpsManage     = pam.PermSet(1<<pam.ListAccounts | 1<<pam.ViewAuditLog | 1<<pam.ViewSafeMembers | 1<<pam.ManageSafeMembers)
)

// patternPrefix returns the name pattern prefix of account Safe i.
func (v *Vault) patternPrefix(i int) string { return v.patterns[v.pattern(i)].prefix }

// policyCPM returns the managingCPM of account Safe i under PolicyMembers:
// half of the Linux Safes are managed by CPMLinux.
func (v *Vault) policyCPM(i int, cpm string) string {
	if v.patternPrefix(i) == "Linux_Root_" && v.hash(i, saltPolicyLinuxCPM)&1 == 0 {
		return CPMLinux
	}
	return cpm
}

// policyMembers appends the policy principals seeded on account Safe i.
func (v *Vault) policyMembers(i int, dst []member) []member {
	prefix := v.patternPrefix(i)
	variant := v.hash(i, saltPolicyVariant)
	expiry := func(k uint64) (int64, bool) {
		if (variant>>k)%10 < 3 {
			return expiryBase + int64((variant>>(k+4))%1826)*86400, true
		}
		return 0, false
	}
	add := func(name string, perms pam.PermSet, exp int64, has bool) []member {
		return append(dst, member{p: v.directory[strings.ToLower(name)], perms: perms, expiry: exp, hasExpiry: has})
	}
	u := func(salt uint64) float64 { return unit(v.hash(i, salt)) }
	switch {
	case prefix == "Help Desk " && u(saltPolicyHelpDesk) < 0.8:
		perms := permsHelpDesk
		if variant&1 == 1 {
			perms = permsHelpDeskAudit
		}
		dst = add(HelpDesk, perms, 0, false)
	case prefix != "Help Desk " && u(saltPolicyHelpDesk) < 0.05:
		dst = add(HelpDesk, permsHelpDesk, 0, false)
	}
	if prefix == "Linux_Root_" && u(saltPolicyLinuxAdmins) < 0.7 {
		perms := []pam.PermSet{permsLinuxSmall, permsLinuxWide, permsListUseRet}[(variant>>1)%3]
		exp, has := expiry(8)
		dst = add(LinuxAdmins, perms, exp, has)
	}
	if (prefix == "DB-" || prefix == "db.prod." || prefix == "db.test.") && u(saltPolicyAuditors) < 0.25 {
		dst = add(SecurityAuditors, permsListOnly, 0, false)
	}
	if u(saltPolicyDomainOps) < 0.35 {
		perms := []pam.PermSet{permsListUseRet, permsOpsManage, permsLinuxSmall}[(variant>>3)%3]
		exp, has := expiry(16)
		dst = add(DomainOpsAdmins, perms, exp, has)
	}
	if u(saltPolicyNewcorp) < 0.08 {
		dst = add(NewcorpOpsAdmins, permsListOnly, 0, false)
	}
	if u(saltPolicyJdoe) < 0.15 {
		dst = add(DepartedUser, permsListUseRet, 0, false)
	}
	return dst
}
