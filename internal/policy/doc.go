// Package policy is safeperm's permission policy: the rules a run applies,
// read from a YAML policy file (or made from the --member/--permissions
// flags as a one-rule policy), checked before anything is written, matched
// against each Safe, and turned into the Directives a job carries.
// docs/policy.md describes the file for its users; docs/policy.schema.json
// is its JSON Schema.
//
// # Rules
//
// A rule names Safes by name patterns ('*' and '?', ignoring case; see
// scope.Pattern) in safes and except, optionally only those managed by
// given CPM users (managedBy), one member (with the memberType and
// searchIn used to add it), and exactly one action: grant, revoke,
// exactly, copyFrom (with removeSource) or absent. See Action for what each
// does on a Safe.
//
// # Reading
//
// Load and Parse read a file with github.com/goccy/go-yaml's syntax tree
// rather than by decoding into structs, so that every problem is found in
// one pass and reported at its line and column (an Errors of *Error, one
// "FILE:LINE:COL: message" per line; errors.Is(err, ErrInvalid)). Only a
// YAML syntax error stops the reading. The file is strict: unknown and
// duplicate keys, wrong types, unknown or mis-cased permission names, rules
// with no or two actions, impossible patterns, duplicate rule names, and
// members that must never be changed (Options.APIUser, BuiltinUsers, CPM
// users) are refused, misspellings with a suggestion. Anchors, aliases,
// merge keys and top-level x- keys are supported. The messages are stable:
// tests pin each one.
//
// # Matching
//
// Policy.Applies returns the directives of the rules that apply to one Safe,
// in file order; it folds the name once and matches precompiled patterns,
// since the planner calls it for every Safe of the Vault. The planner's
// scope (internal Safes, the exclude file) applies before any rule.
//
// # Conflicts
//
// Effects and Clash define when two rules conflict: they set the same flag
// of the same member to different values on the same Safe (removing a
// member and giving it flags count). Policy.Conflicts finds the pairs that
// provably do, with an example Safe name computed by Witness, an exact
// search over the product of the patterns' automata; a copyFrom target's
// conflicts depend on the source's flags and are left to the worker.
//
// A Policy is not changed after it is made; its methods are safe for
// concurrent use.
package policy
