package scope

import (
	"slices"
	"strconv"
	"strings"
	"sync"
)

// DefaultCPM is the default CPM user name. Its Safes are always internal,
// whether or not any Safe names it as its managingCPM.
const DefaultCPM = "PasswordManager"

// builtinInternal lists the Vault's own Safes, spelled as CyberArk spells
// them (pam-api.md §5). Each group says where the names come from.
var builtinInternal = slices.Concat(
	// $SystemSafes of cyberark/epv-api-scripts
	// Safe Management/Safe-Management.ps1.
	[]string{
		"System", "VaultInternal", "Notification Engine", "SharedAuth_Internal",
		"PVWAUserPrefs", "PVWAConfig", "PVWAReports", "PVWATaskDefinitions",
		"PVWAPrivateUserPrefs", "PVWAPublicData", "PVWATicketingSystem",
		"AccountsFeed", "PSM", "xRay", "PIMSuRecordings", "xRay_Config",
		"AccountsFeedADAccounts", "AccountsFeedDiscoveryLogs",
		"PSMSessions", "PSMLiveSessions", "PSMUniversalConnectors", "PSMPConf",
		"PSMNotifications", "PSMUnmanagedSessionAccounts", "PSMRecordings",
		"PSMPADBridgeConf", "PSMPADBUserProfile", "PSMPADBridgeCustom",
		"AppProviderConf", "PasswordManagerTemp", "PasswordManager_Pending",
		"PasswordManagerShared", "TelemetryConfig",
	},
	// Reports/Safes/Get-SafeReport.ps1 and Migration via EVD/Generate
	// Files.ps1 of the same repository.
	[]string{"SCIM Config", "Pictures", "PSMPLiveSessions"},
	// Named as system Safes elsewhere but in none of CyberArk's lists
	// (pam-api.md §5, "sometimes named too"): skipped to be safe.
	[]string{"Reports", "AppProviderCacheSafe"},
)

// cpmSuffixes are the Safes every CPM user <CPM> owns: <CPM>, <CPM>_Accounts,
// ... The first five are CyberArk's (Safe-Management.ps1, Convert-VEMFiles);
// _Pending generalizes PasswordManager_Pending to every CPM.
var cpmSuffixes = []string{"", "_Accounts", "_ADInternal", "_Info", "_workspace", "_Pending"}

// Reasons IsInternal gives for the names it did not learn from a CPM.
const (
	reasonBuiltin    = "built-in internal Safe"
	reasonConfigured = "configured internal Safe"
)

// Internal recognizes the Safes safeperm must never touch: the Vault's
// built-in Safes, the Safes of every known CPM user, and extra names from
// the configuration. Names are compared ignoring case.
//
// All methods are safe for concurrent use. A Safe is judged by the CPMs known
// at the moment IsInternal is called, so the planner must call AddCPMsFrom
// for every Safe before it decides about any: a CPM's own Safes may be
// listed before the Safe that reveals the CPM.
type Internal struct {
	mu      sync.RWMutex
	byName  map[string]string   // fold(Safe name) -> reason
	cpms    []string            // CPM user names, first spelling seen
	cpmKeys map[string]struct{} // fold(cpms[i])
}

// NewInternal returns the built-in internal Safes plus extra (more Safe
// names, e.g. from configuration) plus the Safes of DefaultCPM and of every
// CPM user in cpms. A cpms entry may be a comma-separated list, like a
// managingCPM value; blank names are ignored.
func NewInternal(cpms []string, extra []string) *Internal {
	in := &Internal{byName: make(map[string]string), cpmKeys: make(map[string]struct{})}
	for _, name := range builtinInternal {
		in.addName(name, reasonBuiltin)
	}
	for _, name := range extra {
		if name = strings.TrimSpace(name); name != "" {
			in.addName(name, reasonConfigured)
		}
	}
	in.addCPM(DefaultCPM)
	for _, c := range cpms {
		in.AddCPMsFrom(c)
	}
	return in
}

// AddCPMsFrom learns the CPM user names in a Safe's managingCPM value, which
// may be empty, one name or a comma-separated list such as
// "PasswordManager,cyberark-connec"; names are trimmed. Adding a known CPM
// again does nothing. It splits like pam.Safe.CPMs, which scope does not
// call so as not to depend on the PVWA client.
func (in *Internal) AddCPMsFrom(managingCPM string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for c := range strings.SplitSeq(managingCPM, ",") {
		if c = strings.TrimSpace(c); c != "" {
			in.addCPM(c)
		}
	}
}

// addCPM records the Safes of CPM user c; the caller holds mu or owns in.
func (in *Internal) addCPM(c string) {
	key := fold(c)
	if _, known := in.cpmKeys[key]; known {
		return
	}
	in.cpmKeys[key] = struct{}{}
	in.cpms = append(in.cpms, c)
	reason := "CPM Safe of " + strconv.Quote(c)
	for _, suffix := range cpmSuffixes {
		in.addName(c+suffix, reason)
	}
}

// addName records name unless it is known already: a name that is both
// built-in and a CPM's (PasswordManager_Pending) keeps the first reason.
func (in *Internal) addName(name, reason string) {
	key := fold(name)
	if _, ok := in.byName[key]; !ok {
		in.byName[key] = reason
	}
}

// CPMs returns the CPM user names known so far, DefaultCPM first, spelled as
// first seen. The caller owns the slice.
func (in *Internal) CPMs() []string {
	in.mu.RLock()
	defer in.mu.RUnlock()
	return slices.Clone(in.cpms)
}

// IsInternal reports whether safeName (compared ignoring case, not trimmed)
// is an internal Safe, and why: "built-in internal Safe", "configured
// internal Safe" or `CPM Safe of "PasswordManager"`.
func (in *Internal) IsInternal(safeName string) (bool, string) {
	key := fold(safeName)
	in.mu.RLock()
	defer in.mu.RUnlock()
	reason, ok := in.byName[key]
	return ok, reason
}
