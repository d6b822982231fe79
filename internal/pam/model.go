package pam

import "strings"

// Safe is one Safe as returned by GET /API/Safes.
type Safe struct {
	// URLID is safeUrlId: the percent-encoded Safe name, used verbatim as
	// the path segment of every call about this Safe.
	URLID string
	// Name is safeName, the Safe's display name.
	Name string
	// Number is safeNumber.
	Number int64
	// Description is the Safe's description.
	Description string
	// ManagingCPM is the raw managingCPM value: empty, one CPM user name or a
	// comma-separated list. CPMs splits it.
	ManagingCPM string
	// CreationTime is creationTime in Unix seconds (0 when absent).
	CreationTime int64
}

// CPMs returns the CPM user names in ManagingCPM, trimmed, without empties.
func (s Safe) CPMs() []string {
	var out []string
	for _, c := range strings.Split(s.ManagingCPM, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// Member types accepted by the PVWA.
const (
	MemberTypeUser  = "User"
	MemberTypeGroup = "Group"
	MemberTypeRole  = "Role"
)

// Member is one member of a Safe.
type Member struct {
	// SafeURLID and SafeName identify the Safe.
	SafeURLID string
	SafeName  string
	// ID is memberId as text, whatever JSON type the server used.
	ID string
	// Name is memberName.
	Name string
	// Type is memberType: User, Group or Role.
	Type string
	// Expiration is membershipExpirationDate in Unix seconds, nil for none.
	Expiration *int64
	// IsPredefined, IsReadOnly and IsExpired mirror isPredefinedUser,
	// isReadOnly and isExpiredMembershipEnable.
	IsPredefined bool
	IsReadOnly   bool
	IsExpired    bool
	// Permissions holds the flags that are true.
	Permissions PermSet
	// ExtraPermissions holds permission keys this client does not know, as
	// the server sent them, so that an update can send them back unchanged.
	ExtraPermissions map[string]bool
}

// NewMember describes a member to add with AddMember.
type NewMember struct {
	// Name is memberName (mandatory).
	Name string
	// Type is memberType; it is always sent (Privilege Cloud requires it).
	Type string
	// SearchIn is the directory: "Vault" (default) or a directory name.
	SearchIn string
	// Expiration is membershipExpirationDate in Unix seconds, nil for none.
	Expiration *int64
	// Permissions are the flags to grant; every other flag is sent false.
	Permissions PermSet
}

// MemberUpdate is the whole new state of a member for UpdateMember. PUT
// replaces every flag, so it carries the complete set, not a delta.
type MemberUpdate struct {
	// Permissions is the complete new set of flags.
	Permissions PermSet
	// ExtraPermissions are unknown keys to send back as they were read.
	ExtraPermissions map[string]bool
	// Expiration is the membership expiry to keep, nil for none. A negative
	// or out-of-range value is sent as null.
	Expiration *int64
}

// UpdateOf returns the update that keeps everything m has and adds perms.
func UpdateOf(m Member, perms PermSet) MemberUpdate {
	return MemberUpdate{
		Permissions:      m.Permissions.Union(perms),
		ExtraPermissions: m.ExtraPermissions,
		Expiration:       m.Expiration,
	}
}
