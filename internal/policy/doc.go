// Package policy is safeperm's permission policy: the rules a run applies,
// read from a YAML policy file (or made from the --member/--permissions
// flags as a one-rule policy), checked before anything is written, matched
// against each Safe, and turned into the Directives a job carries.
//
// A rule names Safes by name patterns ('*' and '?', ignoring case; see
// scope.Pattern), optionally only those managed by given CPM users, one
// member, and exactly one action: grant, revoke, exactly, copyFrom (with
// removeSource) or absent. See Action for what each does on a Safe.
//
// Effects and Clash define when two rules conflict: they set the same flag
// of the same member to different values on the same Safe (removing a
// member and giving it flags count).
package policy
