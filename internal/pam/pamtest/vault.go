package pamtest

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/safeperm/safeperm/internal/pam"
)

// Class is the seeded state of the PSMAppUsers group on a Safe.
type Class string

// The classes of the seeded vault.
const (
	// ClassInternal marks a built-in Safe (system or CPM); PSMAppUsers holds
	// listAccounts+retrieveAccounts on the PSM ones and is absent elsewhere.
	ClassInternal Class = "internal"
	// ClassCompliant: PSMAppUsers holds exactly listAccounts+unlockAccounts.
	ClassCompliant Class = "compliant"
	// ClassListOnly: PSMAppUsers holds listAccounts only.
	ClassListOnly Class = "listOnly"
	// ClassListUseRetrieve: listAccounts+useAccounts+retrieveAccounts.
	ClassListUseRetrieve Class = "listUseRetrieve"
	// ClassManyFlagsExpiring: seven flags without unlockAccounts and a
	// future membershipExpirationDate.
	ClassManyFlagsExpiring Class = "manyFlagsExpiring"
	// ClassAbsent: PSMAppUsers is not a member.
	ClassAbsent Class = "absent"
)

// Access is the seeded membership of the admin user (and of users with nil
// Rights) in a Safe.
type Access string

// The admin user's access kinds.
const (
	// AccessFull: member with all 22 flags.
	AccessFull Access = "full"
	// AccessReadOnly: member with listAccounts, viewAuditLog and
	// viewSafeMembers, so it can read members but not change them.
	AccessReadOnly Access = "readOnly"
	// AccessHidden: not a member; the Safe is invisible to the user.
	AccessHidden Access = "hidden"
)

// Names of the members every seeded vault uses.
const (
	// PSMAppUsers is the group safeperm grants unlockAccounts to.
	PSMAppUsers = "PSMAppUsers"
	// VaultAdmins is a group member of every Safe with all 22 flags.
	VaultAdmins = "Vault Admins"
	// Auditors is a group member of every account Safe.
	Auditors = "Auditors"
	// CPMPasswordManager and CPMConnector are the two CPM users.
	CPMPasswordManager = "PasswordManager"
	CPMConnector       = "cyberark-connec"
)

// Member types as stored.
const (
	typeUser uint8 = iota
	typeGroup
	typeRole
)

func memberTypeName(t uint8) string {
	switch t {
	case typeGroup:
		return pam.MemberTypeGroup
	case typeRole:
		return pam.MemberTypeRole
	}
	return pam.MemberTypeUser
}

// parseMemberType reads a memberType value case-insensitively.
func parseMemberType(s string) (uint8, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "user":
		return typeUser, true
	case "group":
		return typeGroup, true
	case "role":
		return typeRole, true
	}
	return typeUser, false
}

// Permission sets of the seeded members.
const (
	permsAll        = pam.PermSet(1<<pam.NumPermissions - 1)
	permsReadOnly   = pam.PermSet(1<<pam.ListAccounts | 1<<pam.ViewAuditLog | 1<<pam.ViewSafeMembers)
	permsAuditors   = permsReadOnly
	permsCompliant  = pam.PermSet(1<<pam.ListAccounts | 1<<pam.UnlockAccounts)
	permsListOnly   = pam.PermSet(1 << pam.ListAccounts)
	permsListUseRet = pam.PermSet(1<<pam.ListAccounts | 1<<pam.UseAccounts | 1<<pam.RetrieveAccounts)
	permsManyFlags  = permsListUseRet | 1<<pam.ViewAuditLog | 1<<pam.ViewSafeMembers |
		1<<pam.AccessWithoutConfirmation | 1<<pam.CreateFolders
	permsPSMSafe = pam.PermSet(1<<pam.ListAccounts | 1<<pam.RetrieveAccounts)
	permsCPM     = pam.PermSet(1<<pam.UseAccounts | 1<<pam.RetrieveAccounts | 1<<pam.ListAccounts |
		1<<pam.AddAccounts | 1<<pam.UpdateAccountContent | 1<<pam.UpdateAccountProperties |
		1<<pam.InitiateCPMAccountManagementOperations | 1<<pam.SpecifyNextAccountContent |
		1<<pam.RenameAccounts | 1<<pam.DeleteAccounts | 1<<pam.UnlockAccounts | 1<<pam.ViewAuditLog |
		1<<pam.ViewSafeMembers | 1<<pam.CreateFolders | 1<<pam.DeleteFolders | 1<<pam.MoveAccountsAndFolders)
	permsBackup      = pam.PermSet(1<<pam.ListAccounts | 1<<pam.BackupSafe)
	permsBatch       = pam.PermSet(1<<pam.ListAccounts | 1<<pam.ViewAuditLog)
	permsNotifEngine = pam.PermSet(1<<pam.ListAccounts | 1<<pam.ViewAuditLog | 1<<pam.ViewSafeMembers)
	permsFillerUser  = pam.PermSet(1<<pam.ListAccounts | 1<<pam.UseAccounts)
	permsFillerGroup = pam.PermSet(1<<pam.ListAccounts | 1<<pam.UseAccounts | 1<<pam.RetrieveAccounts | 1<<pam.ViewSafeMembers)
)

// Time bases of the seeded vault (Unix seconds).
const (
	creationBase = 1546300800 // 2019-01-01T00:00:00Z
	creationSpan = 189216000  // six years: every Safe was created before 2025
	expiryBase   = 2051222400 // 2035-01-01T00:00:00Z
)

// Hash salts, one per independent attribute.
const (
	saltName uint64 = iota + 1
	saltClass
	saltAccess
	saltBig
	saltCPM
	saltQuoted
	saltMisc
	saltExpiry
	saltCreate
)

// systemSafeNames returns the built-in Safes of pam-api.md §5 in their
// order of creation.
func systemSafeNames() []string {
	return []string{
		"System", "VaultInternal", "Notification Engine", "SharedAuth_Internal", "PVWAUserPrefs",
		"PVWAConfig", "PVWAReports", "PVWATaskDefinitions", "PVWAPrivateUserPrefs", "PVWAPublicData",
		"PVWATicketingSystem", "AccountsFeed", "PSM", "xRay", "PIMSuRecordings", "xRay_Config",
		"AccountsFeedADAccounts", "AccountsFeedDiscoveryLogs", "PSMSessions", "PSMLiveSessions",
		"PSMUniversalConnectors", "PSMPConf", "PSMNotifications", "PSMUnmanagedSessionAccounts",
		"PSMRecordings", "PSMPADBridgeConf", "PSMPADBUserProfile", "PSMPADBridgeCustom",
		"AppProviderConf", "PasswordManagerTemp", "PasswordManager_Pending", "PasswordManagerShared",
		"TelemetryConfig",
	}
}

// cpmSafeSuffixes are the Safes created for each CPM user.
func cpmSafeSuffixes() []string {
	return []string{"", "_Accounts", "_ADInternal", "_Info", "_workspace", "_Pending"}
}

// psmSafe reports whether a built-in Safe is one where PSMAppUsers is a
// member (listAccounts+retrieveAccounts), a trap for a worker that does not
// exclude built-in Safes.
func psmSafe(name string) bool {
	switch name {
	case "PSM", "PSMSessions", "PSMLiveSessions", "PSMRecordings", "PSMUniversalConnectors",
		"PSMNotifications", "PSMUnmanagedSessionAccounts", "PSMPConf", "PIMSuRecordings":
		return true
	}
	return false
}

// namePattern builds account Safe names: prefix + number (zero-padded to
// width) + suffix. No lower-cased prefix+digits+suffix of one pattern can
// be read under another, so names are unique case-insensitively.
type namePattern struct {
	prefix, suffix   string
	lprefix, lsuffix string
	width            int
}

func namePatterns(policy bool) []namePattern {
	ps := []namePattern{
		{prefix: "Finance Team ", width: 3},
		{prefix: "db.prod.", width: 3},
		{prefix: "Zürich Ops "},
		{prefix: "Ünïcødé Safe "},
		{prefix: "APP_", width: 5, suffix: "_PRD"},
		{prefix: "HR-Payroll-"},
		{prefix: "Windows Servers "},
		{prefix: "Linux_Root_", width: 4},
		{prefix: "Ops (EU) "},
		{prefix: "Cloud.AWS.acct-"},
		{prefix: "SQL Admins ", width: 2},
		{prefix: "Servidores Año "},
		{prefix: "東京 Safe "},
		{prefix: "Help Desk ", suffix: " (Tier 2)"},
		{prefix: "Sales.EMEA "},
	}
	if policy {
		ps = append(ps, policyPatterns()...)
	}
	for i := range ps {
		ps[i].lprefix = strings.ToLower(ps[i].prefix)
		ps[i].lsuffix = strings.ToLower(ps[i].suffix)
	}
	return ps
}

// principal is a user or group of the vault's directory.
type principal struct {
	name       string
	typ        uint8
	id         string // memberId as text
	idNum      bool   // render memberId as a JSON number
	predefined bool
	readOnly   bool
}

// vaultUser is a user who can log on.
type vaultUser struct {
	principal
	password string
	rights   Rights // nil: the admin user's rights
	slot     int    // index in Vault.users, and in the visibility indexes
}

// internalSafe is one built-in Safe.
type internalSafe struct {
	name  string
	lower string
	cpm   string // the CPM user owning it, if any
	psm   bool
}

// Vault is the seeded initial state of a simulated PVWA: a pure function of
// Options. Safe i's name, attributes and members are derived on demand from
// (Seed, i), so a Vault costs a few kilobytes whatever its size. A Vault is
// immutable and safe for concurrent use; the Server keeps its changes apart.
type Vault struct {
	opts      Options
	n         int
	internal  []internalSafe
	byLower   map[string]int // built-in Safe names, lower-cased
	patterns  []namePattern
	psmCum    [5]float64
	cpmCum    [4]float64
	users     []*vaultUser // users[0] is the admin user
	userByKey map[string]*vaultUser
	directory map[string]*principal // lower-cased name
	fillers   []*principal
	preFixed  []*principal // predefined members of every Safe
	fixed     map[string]*principal
	// needNames is set when a user has Rights, which may look at names.
	needNames bool
}

// NewVault validates opts and returns the seeded vault they describe.
func NewVault(opts Options) (*Vault, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	v := &Vault{
		opts:      opts,
		n:         opts.Safes,
		byLower:   make(map[string]int),
		patterns:  namePatterns(opts.PolicyMembers),
		userByKey: make(map[string]*vaultUser),
		directory: make(map[string]*principal),
		fixed:     make(map[string]*principal),
	}
	if opts.Internal == InternalOn || (opts.Internal == InternalAuto && opts.Safes >= InternalThreshold) {
		for _, name := range systemSafeNames() {
			s := internalSafe{name: name, psm: psmSafe(name)}
			if strings.HasPrefix(name, "PasswordManager") {
				s.cpm = CPMPasswordManager
			}
			v.internal = append(v.internal, s)
		}
		for _, cpm := range []string{CPMPasswordManager, CPMConnector} {
			for _, suf := range cpmSafeSuffixes() {
				v.internal = append(v.internal, internalSafe{name: cpm + suf, cpm: cpm})
			}
		}
		// Keep the first of duplicate names (PasswordManager_Pending is
		// both a system Safe and a CPM Safe) and no more than n.
		out := v.internal[:0]
		for _, s := range v.internal {
			s.lower = strings.ToLower(s.name)
			if _, dup := v.byLower[s.lower]; dup || len(out) == v.n {
				continue
			}
			v.byLower[s.lower] = len(out)
			out = append(out, s)
		}
		v.internal = out
	}
	m := opts.Mix
	psm := [5]float64{m.Compliant, m.ListOnly, m.ListUseRetrieve, m.ManyFlagsExpiring, m.Absent}
	cumulate(v.psmCum[:], psm[:])
	cpm := [4]float64{m.CPMPasswordManager, m.CPMConnector, m.CPMNone, m.CPMBoth}
	cumulate(v.cpmCum[:], cpm[:])

	add := func(p *principal) *principal {
		v.directory[strings.ToLower(p.name)] = p
		return p
	}
	for _, p := range []*principal{
		{name: "Master", typ: typeUser, id: "1", idNum: true, predefined: true, readOnly: true},
		{name: "Batch", typ: typeUser, id: "3", idNum: true, predefined: true, readOnly: true},
		{name: "Backup Users", typ: typeGroup, id: "4", predefined: true, readOnly: true},
		{name: "DR Users", typ: typeGroup, id: "5", predefined: true, readOnly: true},
		{name: "Notification Engines", typ: typeGroup, id: "6", predefined: true, readOnly: true},
	} {
		v.preFixed = append(v.preFixed, add(p))
	}
	for _, p := range []*principal{
		{name: VaultAdmins, typ: typeGroup, id: "7"},
		{name: Auditors, typ: typeGroup, id: "8", idNum: true},
		{name: PSMAppUsers, typ: typeGroup, id: "65"},
		{name: CPMPasswordManager, typ: typeUser, id: guidOf(CPMPasswordManager)},
		{name: CPMConnector, typ: typeUser, id: guidOf(CPMConnector)},
	} {
		v.fixed[p.name] = add(p)
	}
	if opts.PolicyMembers {
		for _, p := range policyPrincipals() {
			v.fixed[p.name] = add(p)
		}
	}
	admin := &vaultUser{principal: principal{name: opts.AdminUser, typ: typeUser, id: "2", idNum: true}, password: opts.AdminPassword}
	v.users = append(v.users, admin)
	for i, u := range opts.Users {
		vu := &vaultUser{principal: principal{name: u.Name, typ: typeUser}, password: u.Password, rights: u.Rights, slot: i + 1}
		switch i % 3 {
		case 0:
			vu.id, vu.idNum = strconv.Itoa(100+i), true
		case 1:
			vu.id = strconv.Itoa(100 + i)
		default:
			vu.id = guidOf(u.Name)
		}
		v.users = append(v.users, vu)
	}
	for _, u := range v.users {
		if u.rights != nil {
			v.needNames = true
		}
		v.userByKey[strings.ToLower(u.name)] = u
		add(&u.principal)
	}
	for k := 1; k <= opts.BigMemberCount; k++ {
		p := &principal{}
		if k%2 == 1 {
			p.name, p.typ = fmt.Sprintf("ops.user.%02d", k), typeUser
		} else {
			p.name, p.typ = fmt.Sprintf("App Owners %02d", k), typeGroup
		}
		switch k % 3 {
		case 0:
			p.id, p.idNum = strconv.Itoa(1000+k), true
		case 1:
			p.id = strconv.Itoa(1000 + k)
		default:
			p.id = guidOf(p.name)
		}
		if old, ok := v.directory[strings.ToLower(p.name)]; ok {
			p = old // a configured user of the same name
		} else {
			add(p)
		}
		v.fillers = append(v.fillers, p)
	}
	for _, pr := range opts.Principals {
		key := strings.ToLower(pr.Name)
		if _, ok := v.directory[key]; ok {
			continue
		}
		t, _ := parseMemberType(pr.Type)
		add(&principal{name: pr.Name, typ: t, id: guidOf(pr.Name)})
	}
	return v, nil
}

// cumulate fills dst with the normalised running sum of w.
func cumulate(dst, w []float64) {
	var sum float64
	for _, x := range w {
		sum += x
	}
	var run float64
	for i, x := range w {
		run += x
		dst[i] = run / sum
	}
	dst[len(dst)-1] = 1
}

// pick returns the first i with u < cum[i].
func pick(cum []float64, u float64) int {
	for i, c := range cum {
		if u < c {
			return i
		}
	}
	return len(cum) - 1
}

// guidOf returns a GUID-shaped id derived from name.
func guidOf(name string) string {
	h := fnv.New128a()
	_, _ = h.Write([]byte(name))
	b := h.Sum(nil)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hash returns the attribute hash of Safe i for salt.
func (v *Vault) hash(i int, salt uint64) uint64 {
	return mix64(v.opts.Seed ^ mix64(uint64(i)<<8|salt))
}

// unit maps a hash to [0,1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// Len returns the number of Safes.
func (v *Vault) Len() int { return v.n }

// Internal returns the number of built-in Safes; they are indexes
// 0..Internal()-1.
func (v *Vault) Internal() int { return len(v.internal) }

// Options returns the options of the vault with defaults filled in.
func (v *Vault) Options() Options { return v.opts }

// pattern returns the name pattern of account Safe i.
func (v *Vault) pattern(i int) int { return int(v.hash(i, saltName) % uint64(len(v.patterns))) }

// appendName appends Safe i's name (lower-cased with lower) to dst.
func (v *Vault) appendName(dst []byte, i int, lower bool) []byte {
	if i < len(v.internal) {
		if lower {
			return append(dst, v.internal[i].lower...)
		}
		return append(dst, v.internal[i].name...)
	}
	p := &v.patterns[v.pattern(i)]
	n := i - len(v.internal) + 1
	if lower {
		dst = append(dst, p.lprefix...)
	} else {
		dst = append(dst, p.prefix...)
	}
	var num [20]byte
	digits := strconv.AppendInt(num[:0], int64(n), 10)
	for k := len(digits); k < p.width; k++ {
		dst = append(dst, '0')
	}
	dst = append(dst, digits...)
	if lower {
		return append(dst, p.lsuffix...)
	}
	return append(dst, p.suffix...)
}

// Name returns the name of Safe i.
func (v *Vault) Name(i int) string {
	if i < len(v.internal) {
		return v.internal[i].name
	}
	var buf [64]byte
	return string(v.appendName(buf[:0], i, false))
}

// Lookup returns the index of the Safe named name, matched
// case-insensitively, in O(1) without any table of names.
func (v *Vault) Lookup(name string) (int, bool) {
	lower := strings.ToLower(name)
	if i, ok := v.byLower[lower]; ok {
		return i, true
	}
	for pi := range v.patterns {
		p := &v.patterns[pi]
		if len(lower) <= len(p.lprefix)+len(p.lsuffix) || !strings.HasPrefix(lower, p.lprefix) || !strings.HasSuffix(lower, p.lsuffix) {
			continue
		}
		mid := lower[len(p.lprefix) : len(lower)-len(p.lsuffix)]
		if len(mid) > 9 || !allDigits(mid) {
			continue
		}
		n, err := strconv.Atoi(mid)
		if err != nil || n < 1 {
			continue
		}
		if want := fmt.Sprintf("%0*d", p.width, n); want != mid {
			continue
		}
		i := len(v.internal) + n - 1
		if i < v.n && v.pattern(i) == pi {
			return i, true
		}
	}
	return 0, false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// SafeInfo describes Safe i as seeded. Tests use it to compute what the
// vault held before any change.
type SafeInfo struct {
	// Index is the Safe's index, 0..Len()-1, also its place in listings.
	Index int
	// Number is safeNumber.
	Number int64
	// Name is safeName; URLID is safeUrlId.
	Name  string
	URLID string
	// Internal is true for the built-in (system and CPM) Safes.
	Internal bool
	// Class is the seeded state of PSMAppUsers.
	Class Class
	// Access is the admin user's membership.
	Access Access
	// ManagingCPM is managingCPM.
	ManagingCPM string
	// Big is true when the Safe has BigMemberCount members.
	Big bool
	// QuotedCreationTime is true when creationTime is rendered as a string.
	QuotedCreationTime bool
	// PSMMember, PSMPermissions and PSMExpiration are PSMAppUsers'
	// membership: whether it is a member, its flags, and its
	// membershipExpirationDate (0 for none).
	PSMMember      bool
	PSMPermissions pam.PermSet
	PSMExpiration  int64
	// CreationTime is creationTime in Unix seconds.
	CreationTime int64
}

// Info describes Safe i as seeded. It panics if i is out of range.
func (v *Vault) Info(i int) SafeInfo {
	info := v.info(i, true)
	return info
}

// info describes Safe i; the name and URL id are derived only with names.
func (v *Vault) info(i int, names bool) SafeInfo {
	if i < 0 || i >= v.n {
		panic(fmt.Sprintf("pamtest: Safe index %d out of range [0,%d)", i, v.n))
	}
	info := SafeInfo{Index: i, Number: int64(i) + 1, Access: AccessFull}
	step := max(1, min(86400, creationSpan/int64(v.n)))
	info.CreationTime = creationBase + int64(i)*step + int64(v.hash(i, saltCreate)%uint64(step))
	if names || v.needNames {
		info.Name = v.Name(i)
		info.URLID = escapeSafeName(info.Name)
	}
	if i < len(v.internal) {
		s := v.internal[i]
		info.Internal, info.Class = true, ClassInternal
		if s.psm {
			info.PSMMember, info.PSMPermissions = true, permsPSMSafe
		}
		return info
	}
	switch pick(v.psmCum[:], unit(v.hash(i, saltClass))) {
	case 0:
		info.Class, info.PSMMember, info.PSMPermissions = ClassCompliant, true, permsCompliant
	case 1:
		info.Class, info.PSMMember, info.PSMPermissions = ClassListOnly, true, permsListOnly
	case 2:
		info.Class, info.PSMMember, info.PSMPermissions = ClassListUseRetrieve, true, permsListUseRet
	case 3:
		info.Class, info.PSMMember, info.PSMPermissions = ClassManyFlagsExpiring, true, permsManyFlags
		info.PSMExpiration = expiryBase + int64(v.hash(i, saltExpiry)%1826)*86400
	default:
		info.Class = ClassAbsent
	}
	m := v.opts.Mix
	switch u := unit(v.hash(i, saltAccess)); {
	case u < m.Hidden:
		info.Access = AccessHidden
	case u < m.Hidden+m.ReadOnly:
		info.Access = AccessReadOnly
	}
	info.Big = unit(v.hash(i, saltBig)) < m.BigMembers
	switch pick(v.cpmCum[:], unit(v.hash(i, saltCPM))) {
	case 0:
		info.ManagingCPM = CPMPasswordManager
	case 1:
		info.ManagingCPM = CPMConnector
	case 2:
	default:
		info.ManagingCPM = CPMPasswordManager + "," + CPMConnector
	}
	if v.opts.PolicyMembers {
		info.ManagingCPM = v.policyCPM(i, info.ManagingCPM)
	}
	info.QuotedCreationTime = unit(v.hash(i, saltQuoted)) < m.QuotedCreationTime
	return info
}

// adminAccess returns the admin user's seeded access to Safe i, cheaply.
func (v *Vault) adminAccess(i int) Access {
	if i < len(v.internal) {
		return AccessFull
	}
	m := v.opts.Mix
	switch u := unit(v.hash(i, saltAccess)); {
	case u < m.Hidden:
		return AccessHidden
	case u < m.Hidden+m.ReadOnly:
		return AccessReadOnly
	}
	return AccessFull
}

// accessPerms returns the flags of an access kind and whether it is a
// membership.
func accessPerms(a Access) (pam.PermSet, bool) {
	switch a {
	case AccessFull:
		return permsAll, true
	case AccessReadOnly:
		return permsReadOnly, true
	}
	return 0, false
}

// userRights returns u's seeded membership of the Safe described by info.
func (v *Vault) userRights(u *vaultUser, info *SafeInfo) (pam.PermSet, bool) {
	if u.rights == nil {
		return accessPerms(info.Access)
	}
	return u.rights(*info)
}

// member is one member of a Safe.
type member struct {
	p         *principal // directory entry (name, type, id)
	perms     pam.PermSet
	expiry    int64 // Unix seconds; valid when hasExpiry
	hasExpiry bool
}

// baseMembers appends the seeded members of the Safe described by info to
// dst, in listing order: predefined users, the admin user, Vault Admins,
// Auditors, the CPM users, PSMAppUsers, the other users, then fillers.
func (v *Vault) baseMembers(info *SafeInfo, dst []member) []member {
	for _, p := range v.preFixed {
		perms := permsAll
		switch p.name {
		case "Batch":
			perms = permsBatch
		case "Backup Users", "DR Users":
			perms = permsBackup
		case "Notification Engines":
			perms = permsNotifEngine
		}
		dst = append(dst, member{p: p, perms: perms})
	}
	if perms, ok := v.userRights(v.users[0], info); ok {
		dst = append(dst, member{p: &v.users[0].principal, perms: perms})
	}
	dst = append(dst, member{p: v.fixed[VaultAdmins], perms: permsAll})
	if info.Internal {
		if cpm := v.internal[info.Index].cpm; cpm != "" {
			dst = append(dst, member{p: v.fixed[cpm], perms: permsCPM})
		}
	} else {
		dst = append(dst, member{p: v.fixed[Auditors], perms: permsAuditors})
		for cpm := range strings.SplitSeq(info.ManagingCPM, ",") {
			if p := v.fixed[cpm]; p != nil {
				dst = append(dst, member{p: p, perms: permsCPM})
			}
		}
	}
	if info.PSMMember {
		dst = append(dst, member{p: v.fixed[PSMAppUsers], perms: info.PSMPermissions,
			expiry: info.PSMExpiration, hasExpiry: info.PSMExpiration != 0})
	}
	if v.opts.PolicyMembers && !info.Internal {
		dst = v.policyMembers(info.Index, dst)
	}
	for _, u := range v.users[1:] {
		if perms, ok := v.userRights(u, info); ok {
			dst = append(dst, member{p: &u.principal, perms: perms})
		}
	}
	if info.Big {
		listed := 0
		for _, m := range dst {
			if !m.p.predefined {
				listed++
			}
		}
		for k := 0; listed < v.opts.BigMemberCount && k < len(v.fillers); k++ {
			p := v.fillers[k]
			if containsMember(dst, p.name) {
				continue
			}
			perms := permsFillerUser
			if p.typ == typeGroup {
				perms = permsFillerGroup
			}
			dst = append(dst, member{p: p, perms: perms})
			listed++
		}
	}
	return dst
}

func containsMember(ms []member, name string) bool {
	for _, m := range ms {
		if strings.EqualFold(m.p.name, name) {
			return true
		}
	}
	return false
}

// Members returns the seeded members of Safe i.
func (v *Vault) Members(i int) []MemberState {
	info := v.info(i, false)
	ms := v.baseMembers(&info, nil)
	out := make([]MemberState, len(ms))
	for k, m := range ms {
		out[k] = m.state()
	}
	return out
}

// Classify describes Safe i of the vault opts seed, as NewVault(opts).Info(i)
// would, for tests that compute expectations without a server.
func Classify(opts Options, i int) (SafeInfo, error) {
	v, err := NewVault(opts)
	if err != nil {
		return SafeInfo{}, err
	}
	if i < 0 || i >= v.n {
		return SafeInfo{}, fmt.Errorf("pamtest: Safe index %d out of range [0,%d)", i, v.n)
	}
	return v.Info(i), nil
}

// safeExtras are the rendering-only attributes of Safe i.
type safeExtras struct {
	description      string
	olac             bool
	versions, days   int // 0 renders null
	creatorID        string
	creatorName      string
	lastModification int64 // µs
}

func (v *Vault) extras(info *SafeInfo) safeExtras {
	h := v.hash(info.Index, saltMisc)
	e := safeExtras{creatorID: "2", creatorName: v.opts.AdminUser}
	if v.opts.Cloud {
		e.creatorID = guidOf(v.opts.AdminUser)
	}
	if info.Internal {
		e.versions = 5
	} else {
		switch h % 4 {
		case 0:
			e.description = "Accounts of " + info.Name
		case 1:
			e.description = "Owner: ops team; ticket CHG" + strconv.FormatUint(h%1_000_000, 10)
		}
		switch (h >> 8) % 4 {
		case 0:
			e.versions = 5
		case 1:
			e.days = 7
		case 2:
			e.days = 30
		default:
			e.versions = 10
		}
		e.olac = (h>>16)%20 == 0
		if (h>>24)%8 == 0 {
			e.creatorID, e.creatorName = guidOf("svc-provisioning"), "svc-provisioning"
		}
	}
	e.lastModification = (info.CreationTime+int64((h>>32)%(86400*30)))*1_000_000 + int64(h%1_000_000)
	return e
}
