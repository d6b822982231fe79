// Package scope decides which Safes safeperm works on, and says why it skips
// the others.
//
// # Rules
//
// The planner lists every Safe the API user can see and asks Filter.Decide
// about each one. The rules apply in this order; the first that applies
// decides:
//
//  1. Internal Safes are never in scope, even when the include file names
//     them (reason "internal Safe"). They are the Vault's own Safes, by
//     their exact names: System, VaultInternal, Notification Engine,
//     SharedAuth_Internal, PVWAUserPrefs, PVWAConfig, PVWAReports,
//     PVWATaskDefinitions, PVWAPrivateUserPrefs, PVWAPublicData,
//     PVWATicketingSystem, AccountsFeed, PSM, xRay, PIMSuRecordings,
//     xRay_Config, AccountsFeedADAccounts, AccountsFeedDiscoveryLogs,
//     PSMSessions, PSMLiveSessions, PSMUniversalConnectors, PSMPConf,
//     PSMNotifications, PSMUnmanagedSessionAccounts, PSMRecordings,
//     PSMPADBridgeConf, PSMPADBUserProfile, PSMPADBridgeCustom,
//     AppProviderConf, PasswordManagerTemp, PasswordManager_Pending,
//     PasswordManagerShared, TelemetryConfig (the list of CyberArk's
//     Safe-Management.ps1); SCIM Config, Pictures, PSMPLiveSessions (CyberArk's
//     report and migration scripts); Reports, AppProviderCacheSafe. And, for
//     every CPM user <CPM>: <CPM>, <CPM>_Accounts, <CPM>_ADInternal,
//     <CPM>_Info, <CPM>_workspace and <CPM>_Pending. The CPM users are
//     PasswordManager (always), those given with --cpm, and every name in any
//     Safe's managingCPM (a comma-separated list). So Finance_Accounts is
//     internal only if a CPM user is called Finance, and PSMFinance is not
//     internal at all. Because any Safe may reveal a CPM, the planner reads
//     the managingCPM of every Safe (Internal.AddCPMsFrom) before it decides
//     about any.
//  2. A Safe the exclude file names is skipped, even when the include file
//     names it too (reason "excluded").
//  3. When an include file is given, a Safe it does not name is skipped
//     (reason "not in the include list"). Without an include file every Safe
//     that is neither internal nor excluded is in scope; with an include
//     file that names no Safe, none is.
//
// Safe names are compared ignoring case with Unicode simple case folding,
// the rule of strings.EqualFold: "ÜNÏCØDÉ" and "ünïcødé" are the same name.
// Nothing else is forgiven: there is no Unicode normalization, so a "ü"
// typed as "u" plus a combining diaeresis does not match the precomposed "ü"
// (editors write the precomposed form), and the Turkish dotted "İ" and
// dotless "ı" do not fold to "i" and "I".
//
// After the planner has decided about every Safe, List.Unmatched gives the
// include file's names and patterns that matched no Safe (misspelt,
// deleted, or not visible to the API user), and the exclude file's names and
// patterns that protected nothing, which deserve a look because a misspelt
// exclusion does not exclude.
//
// # Patterns
//
// A Pattern is a Safe name that may hold '*' (any run of characters, none
// included) and '?' (exactly one character); it is compared ignoring case
// like a name. Neither character can occur in a Safe name, so a plain name
// is a pattern that matches only itself. Policy rules (package policy) name
// their Safes with patterns, and so may include and exclude files.
//
// # Include and exclude files
//
// One Safe name or pattern per line:
//
//	# Safes the PSM must not unlock
//	Finance Ops
//	Zürich Ops
//	Test-*
//	Lab??
//
//	    # indented comment; the blanks around the next name are ignored
//	    HR.Payroll
//
// A line holding '*' or '?' is a pattern: "Test-*" excludes every Safe
// whose name starts with "test-" in any case, "Lab??" every five-character
// name starting with "lab". Plain names are looked up in a map, so a file
// may list a million of them; patterns are tried one after another for
// every Safe, so keep them few (dozens, not thousands). A pattern made only
// of '*' matches every Safe and is accepted with a warning.
//
// The file is UTF-8, with or without a byte order mark; Notepad's "UTF-8"
// and "UTF-8 with BOM" both work. Lines end with LF, CRLF or a lone CR.
// Blanks (any Unicode space) around a name are trimmed. Empty lines and
// lines whose first non-blank character is # are ignored. There are no
// end-of-line comments: a # after the name is part of the name, and
// "Finance # old" is read as the Safe "Finance # old" (with a warning).
// A name listed twice, in any case, is a warning, not an error.
//
// The file is rejected, with its name and the line number, when it:
//
//   - is UTF-16 (starts with a UTF-16 byte order mark): save it as UTF-8;
//   - holds a NUL byte (a binary file, or UTF-16 without a byte order mark);
//   - holds bytes that are not UTF-8 (saved as ANSI / Windows-1252);
//   - names a Safe longer than 256 characters;
//   - names a Safe with a character no Safe name can contain:
//     \ / : " < > |, a tab, a control character, or a byte order mark
//     after the start of the file ('*' and '?' make a pattern);
//   - is larger than 50 MiB or names more than 1,000,000 Safes.
//
// Dots, spaces, # and other punctuation inside a name are accepted; the
// list does not enforce the Vault's own length limit (28 characters in old
// versions), so a name the Vault cannot have simply matches no Safe.
package scope
