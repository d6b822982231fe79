package pamtest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/safeperm/safeperm/internal/pam"
)

// Defaults of Options. A zero field of Options means the default below.
const (
	// DefaultSafes is the number of Safes of a vault when Options.Safes is 0.
	DefaultSafes = 1000
	// MaxSafes is the largest vault NewServer accepts.
	MaxSafes = 10_000_000
	// InternalThreshold is the vault size from which InternalAuto includes
	// the built-in Safes.
	InternalThreshold = 100
	// DefaultBigMemberCount is the number of members (predefined users not
	// counted) of the "big" Safes, enough for three pages of 25.
	DefaultBigMemberCount = 60
	// DefaultAdminUser and DefaultAdminPassword are the credentials of the
	// vault's built-in API user.
	DefaultAdminUser     = "Administrator"
	DefaultAdminPassword = "Cyberark1"
	// DefaultMemberNotFoundCode is the ErrorCode of a 404 for GET one member
	// of a Safe the name is not a member of (pspete/psPAS#156).
	DefaultMemberNotFoundCode = "CAWS00001E"
	// DefaultRetryAfter is the Retry-After value sent with a 429 that
	// carries one.
	DefaultRetryAfter = time.Second
	// CloudTokenLifetime is the expires_in reported by the Identity token
	// endpoint when Options.TokenTTL is 0 (the tokens then never expire).
	CloudTokenLifetime = 900 * time.Second
	// DefaultLimit and MaxLimit are the page size when limit is absent and
	// the largest page size; a larger limit is clamped to MaxLimit.
	DefaultLimit = 25
	MaxLimit     = 1000
)

// InternalMode says whether the vault holds the built-in (system and CPM)
// Safes at its first indexes.
type InternalMode int

const (
	// InternalAuto includes the built-in Safes when the vault has at least
	// InternalThreshold Safes.
	InternalAuto InternalMode = iota
	// InternalOn always includes them (a vault smaller than their number
	// holds only the first ones).
	InternalOn
	// InternalOff never includes them: every Safe is an account Safe.
	InternalOff
)

// Options configure a simulated PVWA. The zero value is a valid,
// self-hosted, fault-free vault of DefaultSafes Safes with seed 0.
type Options struct {
	// Safes is the total number of Safes, built-in ones included
	// (default DefaultSafes, at most MaxSafes).
	Safes int
	// Seed selects the vault: the same seed gives the same names,
	// classes and members; another seed gives another vault.
	Seed uint64
	// Internal says whether the built-in Safes exist (default InternalAuto).
	Internal InternalMode
	// Mix gives the fractions of the account Safe kinds. An all-zero Mix
	// means DefaultMix(); otherwise it is used as given.
	Mix Mix
	// BigMemberCount is the number of non-predefined members of the "big"
	// Safes (default DefaultBigMemberCount).
	BigMemberCount int

	// AdminUser and AdminPassword are the credentials of the API user whose
	// rights follow the vault mix (defaults DefaultAdminUser and
	// DefaultAdminPassword).
	AdminUser     string
	AdminPassword string
	// Users are more vault users who can log on, each with its own rights.
	Users []User
	// Principals are more names the vault's directory knows, so that POST
	// member accepts them.
	Principals []Principal
	// PolicyMembers seeds the principals of the policy migrations (Security
	// Auditors, HelpDesk, LinuxAdmins, Domain Ops Admins, NEWCORP Ops
	// Admins, jdoe) on account Safes, adds "DB-NNNN" and "db.test.NNN"
	// Safe names, and has a second CPM user, PasswordManager_Linux, manage
	// half of the Linux Safes. It changes which name each Safe gets.
	PolicyMembers bool

	// Cloud switches to Privilege Cloud (ISPSS) behaviour: tokens come from
	// POST /oauth2/platformtoken and are sent as "Bearer <token>", the PVWA
	// logon routes do not exist, memberType is mandatory on POST member and
	// nextLink is spelled "API/Safes".
	Cloud bool
	// TokenTTL is the absolute lifetime of a session token from its logon;
	// 0 means tokens never expire.
	TokenTTL time.Duration
	// IdleTimeout ends a session that made no request for that long; 0
	// means no idle timeout.
	IdleTimeout time.Duration
	// NextLinkPrefix is the path written at the start of the Safes list's
	// nextLink (default "api/safes", or "API/Safes" with Cloud).
	NextLinkPrefix string
	// MemberNotFoundCode is the ErrorCode of GET one member for a name that
	// is not a member (default DefaultMemberNotFoundCode; "SFWS0008" is the
	// other plausible value).
	MemberNotFoundCode string
	// StrictDots makes a URL whose last segment holds a dot and has no
	// trailing slash fail with the IIS 404 HTML page, as the docs warn.
	StrictDots bool
	// AddImpliesUpdateProperties makes addAccounts imply
	// updateAccountProperties on POST and PUT, a side effect reported by
	// pspete/psPAS#22.
	AddImpliesUpdateProperties bool

	// Faults are the injected latency, throttling and errors. They can be
	// changed at run time with SetFaults.
	Faults Faults
	// FaultSeed seeds the fault RNG (0 means Seed).
	FaultSeed uint64

	// TLS serves HTTPS with a fresh self-signed certificate
	// (Server.Certificate, Server.CACertPEM). NewServer only.
	TLS bool
	// Now is the clock used for token expiry and membership expiry
	// (default time.Now).
	Now func() time.Time
}

// Mix holds the fractions that shape the account Safes of the seeded vault.
// Each account Safe draws every attribute independently from a hash of
// (Seed, index), so the fractions hold on average, not exactly.
type Mix struct {
	// Weights of the state of the PSMAppUsers group on an account Safe.
	// They are normalised by their sum.
	//
	// Compliant: member with exactly listAccounts+unlockAccounts.
	Compliant float64 `json:"compliant"`
	// ListOnly: member with listAccounts only.
	ListOnly float64 `json:"listOnly"`
	// ListUseRetrieve: member with listAccounts+useAccounts+retrieveAccounts.
	ListUseRetrieve float64 `json:"listUseRetrieve"`
	// ManyFlagsExpiring: member with seven flags (no unlockAccounts) and a
	// membershipExpirationDate in the future (2035-2039).
	ManyFlagsExpiring float64 `json:"manyFlagsExpiring"`
	// Absent: not a member.
	Absent float64 `json:"absent"`

	// ReadOnly is the probability that the admin user is a member without
	// manageSafeMembers (listAccounts, viewAuditLog, viewSafeMembers).
	ReadOnly float64 `json:"readOnly"`
	// Hidden is the probability that the admin user is not a member at all
	// (the Safe is invisible to it). ReadOnly and Hidden exclude each other.
	Hidden float64 `json:"hidden"`
	// BigMembers is the probability that a Safe has BigMemberCount members.
	BigMembers float64 `json:"bigMembers"`

	// Weights of managingCPM, normalised by their sum: "PasswordManager",
	// "cyberark-connec", "" and "PasswordManager,cyberark-connec".
	CPMPasswordManager float64 `json:"cpmPasswordManager"`
	CPMConnector       float64 `json:"cpmConnector"`
	CPMNone            float64 `json:"cpmNone"`
	CPMBoth            float64 `json:"cpmBoth"`

	// QuotedCreationTime is the probability that creationTime is rendered
	// as a quoted string, as in one CyberArk doc example.
	QuotedCreationTime float64 `json:"quotedCreationTime"`
}

// DefaultMix returns the mix used when Options.Mix is zero: PSMAppUsers
// compliant 30%, listOnly 25%, listUseRetrieve 15%, manyFlagsExpiring 10%,
// absent 20%; admin read-only 3%, hidden 1%; big Safes 0.5%; managingCPM
// PasswordManager 50%, cyberark-connec 25%, none 15%, both 10%; quoted
// creationTime 0%.
func DefaultMix() Mix {
	return Mix{
		Compliant:          0.30,
		ListOnly:           0.25,
		ListUseRetrieve:    0.15,
		ManyFlagsExpiring:  0.10,
		Absent:             0.20,
		ReadOnly:           0.03,
		Hidden:             0.01,
		BigMembers:         0.005,
		CPMPasswordManager: 0.50,
		CPMConnector:       0.25,
		CPMNone:            0.15,
		CPMBoth:            0.10,
	}
}

// User is a vault user who can log on, besides the admin user.
type User struct {
	// Name and Password are the logon credentials (the client_id and
	// client_secret in Cloud mode). Names are matched case-insensitively.
	Name     string
	Password string
	// Rights decides the user's direct membership of each Safe of the
	// seeded vault. nil gives the user the admin user's rights (the mix's
	// full, read-only and hidden Safes).
	Rights Rights
}

// Rights returns the permissions of a user on the Safe described by info in
// the seeded vault, and whether the user is a member at all. It must be a
// pure, fast function: it is called for every Safe at start and whenever a
// Safe's seeded members are derived.
type Rights func(info SafeInfo) (perms pam.PermSet, member bool)

// AllSafes returns Rights that make the user a member of every Safe with
// perms.
func AllSafes(perms pam.PermSet) Rights {
	return func(SafeInfo) (pam.PermSet, bool) { return perms, true }
}

// NoSafes returns Rights that make the user a member of no Safe; tests then
// grant rights with SetMember.
func NoSafes() Rights {
	return func(SafeInfo) (pam.PermSet, bool) { return 0, false }
}

// Principal is a user or group known to the vault's directory.
type Principal struct {
	// Name is the member name (matched case-insensitively).
	Name string
	// Type is pam.MemberTypeUser, pam.MemberTypeGroup or pam.MemberTypeRole
	// (default User).
	Type string
}

// Faults are the injected delays and failures. The zero value injects
// nothing. The logon, token and admin endpoints are exempt unless
// IncludeAuth is set (admin endpoints are always exempt).
type Faults struct {
	// Latency is added to every API request; Jitter adds a uniformly
	// random extra delay in [0, Jitter).
	Latency time.Duration
	Jitter  time.Duration
	// MaxInFlight answers 429 at once to a request that arrives while that
	// many requests are in flight, being served or waiting for a slot
	// (0 = unlimited).
	MaxInFlight int
	// Slots serves at most that many API requests at once and queues the
	// others first come, first served, as IIS does: nothing is refused, the
	// latency grows with the queue (0 = no queue, every request is served
	// at once). Every request under /PasswordVault that the simulator
	// routes takes a slot, logon and logoff included (they hold it only for
	// their own processing, since Latency applies to them only with
	// IncludeAuth); the Identity token endpoint and the admin API do not.
	// Latency and Jitter are the service time, spent holding the slot;
	// Stats.Queue reports the time spent waiting for one.
	Slots int
	// RateLimit is the allowed requests per second over a token bucket of
	// RateBurst (default: max(1, RateLimit)); excess requests get 429 at
	// once. 0 = unlimited.
	RateLimit float64
	RateBurst int
	// P500 is the probability of an IIS-style HTML 500 page.
	P500 float64
	// P429 is the probability of a 429.
	P429 float64
	// P429RetryAfter is the fraction of 429s (injected, MaxInFlight and
	// RateLimit ones) that carry a Retry-After header of RetryAfter
	// (rounded down to whole seconds; default DefaultRetryAfter; a negative
	// RetryAfter sends "Retry-After: 0").
	P429RetryAfter float64
	RetryAfter     time.Duration
	// P403 is the probability of a 403 CAWS00001E with an empty message.
	P403 float64
	// PWriteApplied500 is the probability that a POST, PUT or DELETE of a
	// member is applied and then answered with the HTML 500 page.
	PWriteApplied500 float64
	// IncludeAuth applies the faults to the logon, logoff and token
	// endpoints too.
	IncludeAuth bool
}

// withDefaults returns o with every zero field replaced by its default.
func (o Options) withDefaults() Options {
	if o.Safes == 0 {
		o.Safes = DefaultSafes
	}
	if o.Mix == (Mix{}) {
		o.Mix = DefaultMix()
	}
	if o.BigMemberCount == 0 {
		o.BigMemberCount = DefaultBigMemberCount
	}
	if o.AdminUser == "" {
		o.AdminUser = DefaultAdminUser
	}
	if o.AdminPassword == "" {
		o.AdminPassword = DefaultAdminPassword
	}
	if o.NextLinkPrefix == "" {
		o.NextLinkPrefix = "api/safes"
		if o.Cloud {
			o.NextLinkPrefix = "API/Safes"
		}
	}
	if o.MemberNotFoundCode == "" {
		o.MemberNotFoundCode = DefaultMemberNotFoundCode
	}
	if o.FaultSeed == 0 {
		o.FaultSeed = o.Seed
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every invalid field of o at once (after defaults).
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("pamtest: Options.%s = %v: %s", field, value, why))
	}
	if o.Safes < 1 || o.Safes > MaxSafes {
		bad("Safes", o.Safes, fmt.Sprintf("want 1..%d", MaxSafes))
	}
	if o.Internal < InternalAuto || o.Internal > InternalOff {
		bad("Internal", o.Internal, "want InternalAuto, InternalOn or InternalOff")
	}
	if o.BigMemberCount < 1 || o.BigMemberCount > 10_000 {
		bad("BigMemberCount", o.BigMemberCount, "want 1..10000")
	}
	if o.TokenTTL < 0 {
		bad("TokenTTL", o.TokenTTL, "must not be negative")
	}
	if o.IdleTimeout < 0 {
		bad("IdleTimeout", o.IdleTimeout, "must not be negative")
	}
	m := o.Mix
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"Mix.Compliant", m.Compliant}, {"Mix.ListOnly", m.ListOnly}, {"Mix.ListUseRetrieve", m.ListUseRetrieve},
		{"Mix.ManyFlagsExpiring", m.ManyFlagsExpiring}, {"Mix.Absent", m.Absent},
		{"Mix.CPMPasswordManager", m.CPMPasswordManager}, {"Mix.CPMConnector", m.CPMConnector},
		{"Mix.CPMNone", m.CPMNone}, {"Mix.CPMBoth", m.CPMBoth},
	} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			bad(f.name, f.v, "weight must be a finite number >= 0")
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"Mix.ReadOnly", m.ReadOnly}, {"Mix.Hidden", m.Hidden}, {"Mix.BigMembers", m.BigMembers},
		{"Mix.QuotedCreationTime", m.QuotedCreationTime},
	} {
		if !(f.v >= 0 && f.v <= 1) {
			bad(f.name, f.v, "probability must be in [0,1]")
		}
	}
	if m.ReadOnly+m.Hidden > 1 {
		bad("Mix.ReadOnly+Mix.Hidden", m.ReadOnly+m.Hidden, "must not exceed 1")
	}
	if !(m.Compliant+m.ListOnly+m.ListUseRetrieve+m.ManyFlagsExpiring+m.Absent > 0) {
		bad("Mix", "PSMAppUsers weights", "at least one PSMAppUsers weight must be > 0")
	}
	if !(m.CPMPasswordManager+m.CPMConnector+m.CPMNone+m.CPMBoth > 0) {
		bad("Mix", "CPM weights", "at least one managingCPM weight must be > 0")
	}
	seen := map[string]string{}
	for _, n := range reservedNames() {
		seen[strings.ToLower(n)] = "the built-in member " + n
	}
	if prev, dup := seen[strings.ToLower(o.AdminUser)]; dup {
		bad("AdminUser", fmt.Sprintf("%q", o.AdminUser), "same name as "+prev)
	}
	seen[strings.ToLower(o.AdminUser)] = "AdminUser"
	for i, u := range o.Users {
		field := fmt.Sprintf("Users[%d].Name", i)
		if strings.TrimSpace(u.Name) == "" {
			bad(field, fmt.Sprintf("%q", u.Name), "must not be empty")
			continue
		}
		if prev, dup := seen[strings.ToLower(u.Name)]; dup {
			bad(field, fmt.Sprintf("%q", u.Name), "same name as "+prev)
		}
		seen[strings.ToLower(u.Name)] = field
		if strings.ContainsAny(u.Name, `\/:*<>"|?%&+`) {
			bad(field, fmt.Sprintf("%q", u.Name), `member names may not contain \ / : * < > " | ? % & +`)
		}
	}
	for i, p := range o.Principals {
		if strings.TrimSpace(p.Name) == "" || strings.ContainsAny(p.Name, `\/:*<>"|?%&+`) {
			bad(fmt.Sprintf("Principals[%d].Name", i), fmt.Sprintf("%q", p.Name), "empty or holds a character member names may not contain")
		}
		if _, ok := parseMemberType(p.Type); !ok && p.Type != "" {
			bad(fmt.Sprintf("Principals[%d].Type", i), fmt.Sprintf("%q", p.Type), "want User, Group or Role")
		}
	}
	if err := o.Faults.validate("Faults."); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reservedNames are the members of the seeded vault that users may not be
// named after.
func reservedNames() []string {
	return []string{"Master", "Batch", "Backup Users", "DR Users", "Notification Engines",
		VaultAdmins, Auditors, PSMAppUsers, CPMPasswordManager, CPMConnector}
}

// validate checks the fields of f; prefix names them in messages.
func (f Faults) validate(prefix string) error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, fmt.Errorf("pamtest: %s%s = %v: %s", prefix, field, value, why))
	}
	if f.Latency < 0 {
		bad("Latency", f.Latency, "must not be negative")
	}
	if f.Jitter < 0 {
		bad("Jitter", f.Jitter, "must not be negative")
	}
	if f.MaxInFlight < 0 {
		bad("MaxInFlight", f.MaxInFlight, "must not be negative")
	}
	if f.Slots < 0 {
		bad("Slots", f.Slots, "must not be negative")
	}
	if f.RateLimit < 0 || math.IsNaN(f.RateLimit) || math.IsInf(f.RateLimit, 0) {
		bad("RateLimit", f.RateLimit, "must be a finite number >= 0")
	}
	if f.RateBurst < 0 {
		bad("RateBurst", f.RateBurst, "must not be negative")
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"P500", f.P500}, {"P429", f.P429}, {"P429RetryAfter", f.P429RetryAfter}, {"P403", f.P403}, {"PWriteApplied500", f.PWriteApplied500}} {
		if !(p.v >= 0 && p.v <= 1) {
			bad(p.name, p.v, "probability must be in [0,1]")
		}
	}
	if f.P500+f.P429+f.P403 > 1 {
		bad("P500+P429+P403", f.P500+f.P429+f.P403, "must not exceed 1")
	}
	return errors.Join(errs...)
}
