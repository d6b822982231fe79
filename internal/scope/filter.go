package scope

// Reason says why a Safe is out of scope. The set is closed: the report,
// the watch view and the metrics may switch on it exhaustively.
type Reason uint8

// The reasons, in the order the rules apply.
const (
	// ReasonNone: the Safe is in scope.
	ReasonNone Reason = iota
	// ReasonInternal: a Vault or CPM Safe, never in scope.
	ReasonInternal
	// ReasonExcluded: the exclude list names the Safe.
	ReasonExcluded
	// ReasonNotIncluded: an include list was given and does not name the
	// Safe.
	ReasonNotIncluded
)

// String returns the reason in words, e.g. "internal Safe".
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "in scope"
	case ReasonInternal:
		return "internal Safe"
	case ReasonExcluded:
		return "excluded"
	case ReasonNotIncluded:
		return "not in the include list"
	}
	return "unknown reason"
}

// Decision is the verdict about one Safe.
type Decision struct {
	// In is true when safeperm should grant the permissions on the Safe.
	In bool
	// Reason is ReasonNone when In, otherwise why the Safe is skipped.
	Reason Reason
	// Detail adds to Reason for the report: for ReasonInternal what
	// Internal.IsInternal said (`CPM Safe of "PasswordManager"`), for
	// ReasonExcluded and ReasonNotIncluded the list's File. May be empty.
	Detail string
}

// Filter applies the scope rules to Safe names. Decide only reads the
// fields, and List and Internal are safe for concurrent use, so Decide is
// too.
type Filter struct {
	// Include, when not nil, names the only Safes that may be in scope. A
	// non-nil empty list puts no Safe in scope.
	Include *List
	// Exclude names Safes that are never in scope. Nil excludes nothing.
	Exclude *List
	// Internal recognizes Vault and CPM Safes. Nil means the built-in list
	// and DefaultCPM's Safes: internal Safes cannot be switched off.
	Internal *Internal
}

// defaultInternal serves Filters without Internal. Nothing adds CPMs to it.
var defaultInternal = NewInternal(nil, nil)

// Decide tells whether safeName is in scope. The first rule that applies
// wins:
//
//  1. an internal Safe is out (ReasonInternal), even when Include names it;
//  2. a Safe Exclude names is out (ReasonExcluded), even when Include names it;
//  3. with an Include list, a Safe it does not name is out (ReasonNotIncluded);
//  4. every other Safe is in.
//
// Decide marks the names of both lists that match safeName as seen, whatever
// the verdict, so that List.Unmatched later lists only names that matched no
// Safe at all.
func (f Filter) Decide(safeName string) Decision {
	included := f.Include.Seen(safeName)
	excluded := f.Exclude.Seen(safeName)
	internal := f.Internal
	if internal == nil {
		internal = defaultInternal
	}
	switch isInternal, why := internal.IsInternal(safeName); {
	case isInternal:
		return Decision{Reason: ReasonInternal, Detail: why}
	case excluded:
		return Decision{Reason: ReasonExcluded, Detail: f.Exclude.File()}
	case f.Include != nil && !included:
		return Decision{Reason: ReasonNotIncluded, Detail: f.Include.File()}
	}
	return Decision{In: true}
}
