// Package pamtest is a faithful simulator of the CyberArk PVWA REST API (the
// Gen2 Safes and Safe members endpoints, PVWA logon and the Privilege Cloud
// Identity token), for tests, benchmarks and demos, in the manner of
// net/http/httptest. The behaviour follows /work/shared/pam-api.md.
//
//	srv, err := pamtest.NewServer(pamtest.Options{Safes: 5000, Seed: 7})
//	...
//	defer srv.Close()
//	// srv.URL == "http://127.0.0.1:PORT/PasswordVault"
//
// NewHandler gives the same simulator as an http.Handler for a listener of
// one's own (cmd/pvwasim). Everything is safe for concurrent use.
//
// # API
//
// Paths are matched case-insensitively, with or without a trailing slash,
// and percent-decoded segment by segment ("%20" is a space; a literal "+"
// stays a "+"). Query parameter names are case-insensitive (psPAS sends
// "OffSet"). Request JSON keys are case-insensitive; answers are camelCase.
//
//   - POST /PasswordVault/API/Auth/{CyberArk|LDAP|RADIUS|Windows}/Logon
//     {"username","password","concurrentSession"}: 200 with the token as a
//     JSON string literal (180 base64 characters); wrong credentials: 403
//     ITATS004E "Authentication failure for User [x].". Without
//     concurrentSession=true every other session of the user ends. All four
//     types check the same users. Absent in Cloud mode.
//   - POST /PasswordVault/API/Auth/Logoff: ends the session, 200, empty body.
//   - POST /oauth2/platformtoken (Cloud mode only, at the server root):
//     form grant_type=client_credentials, client_id, client_secret (or HTTP
//     Basic): {"access_token":"<JWT-shaped>","token_type":"Bearer",
//     "expires_in":N}; bad credentials: 401 {"error":"access_denied",...}.
//   - Every other route needs "Authorization: <token>" (self-hosted) or
//     "Authorization: Bearer <token>" (Cloud); a missing, unknown, ended or
//     expired token gets 401 PASWS006E.
//   - GET /API/Safes?offset&limit&search: limit defaults to 25 and is
//     clamped to 1000; count is the total the caller can see (after search);
//     nextLink "api/safes?offset=N&limit=L&useCache=False" (plus
//     "&search=..." when searching; "API/Safes" in Cloud mode) is relative
//     to /PasswordVault/ and present only while more remain. Safes are listed
//     in index (creation) order. search is a case-insensitive "contains" on
//     the name. Other parameters are ignored.
//   - GET /API/Safes/{safeUrlId}: one Safe.
//   - GET /API/Safes/{id}/Members?offset&limit&search&filter: pages like
//     Safes (nextLink "api/safes/{id}/members?...", echoing filter and
//     search). filter understands "memberType eq User|Group",
//     "membershipExpired eq true|false" and "includePredefinedUsers eq
//     true|false" joined by " AND "; includePredefinedUsers is also read as
//     a plain parameter. Predefined users are excluded by default.
//   - GET /API/Safes/{id}/Members/{name}: one member; a non-member gets 404
//     with Options.MemberNotFoundCode (default CAWS00001E) "... User or
//     Group was not found.".
//   - POST /API/Safes/{id}/Members: 201 + member; 409 SFWS0012 "<m> is
//     already a member of safe <s>."; a name the directory does not know (or
//     a memberType that does not match it) 404 CAWS00001E "... User or Group
//     was not found."; permissions not an object, with an unknown key or a
//     non-boolean value: 400 CAWS00001E "... Input parameter for
//     [Permissions] value is invalid." (likewise for a negative or
//     non-numeric membershipExpirationDate); omitted flags are false.
//     Missing memberName, or memberType in Cloud mode: 400 PASWS167E "There
//     are some invalid parameters" with Details [PASWS179E "Property
//     [MemberType] not found", PASWS011E "Missing mandatory parameter
//     [MemberType]."] (the order of pspete/psPAS#443).
//   - PUT /API/Safes/{id}/Members/{name}: replaces every flag (flags not sent
//     become false); membershipExpirationDate is set from the body when the
//     key is present (null clears it) and kept when absent; 200 + member;
//     404 SFWS0008 for a non-member.
//   - DELETE /API/Safes/{id}/Members/{name}: 204; 404 SFWS0008 for a
//     non-member.
//
// A Safe that does not exist, was deleted or that the caller is not a
// member of gets 404 SFWS0007 on every Safe and member route: the vault does
// not reveal Safes to non-members (it is also what listing shows). Reading
// members needs viewSafeMembers and changing them manageSafeMembers, else
// 403 CAWS00001E with an empty message (pspete/psPAS#337). Validation that
// the .NET model binder does (PASWS167E) comes before the Safe lookup;
// permission and value checks come after it.
//
// Errors are JSON {"ErrorCode","ErrorMessage"} (plus "Details" for
// PASWS167E), except the injected IIS HTML 500 page and the StrictDots 404
// page. Unknown routes get 404 and unsupported methods 405, with an empty
// ErrorCode and the ASP.NET message. 429s carry an empty ErrorCode and
// "Too Many Requests".
//
// Member objects have safeUrlId, safeName, safeNumber, memberId (a JSON
// number, a numeric string or a GUID string depending on the member, always
// the same for a member), memberName, memberType, membershipExpirationDate
// (Unix seconds or null), isExpiredMembershipEnable (true once expired),
// isPredefinedUser, isReadOnly and all 22 permissions. Safe objects have
// safeUrlId (encodeURIComponent of the name: space as %20), safeName,
// safeNumber (index+1), description, location "\\", creator {id,name},
// olacEnabled, managingCPM, numberOfVersionsRetention and
// numberOfDaysRetention (one of them null), autoPurgeEnabled, creationTime
// (Unix seconds; a quoted string for Mix.QuotedCreationTime of Safes),
// lastModificationTime (µs) and isExpiredMember.
//
// # The seeded vault
//
// Safe i is a pure function of (Seed, i), derived on demand; only changes
// are stored (per Safe, in sharded maps), and the Safes each user can see
// are kept as a bitmap with per-block counts, so a vault of a million Safes
// starts in a fraction of a second, costs a few megabytes, and any page of
// the listing is found without scanning. Vault, Classify and Server.Vault
// give the seeded state; SafeState and WriteState the current one.
//
// Built-in Safes come first (InternalAuto: when the vault has at least 100
// Safes): the 33 system Safes of pam-api.md §5, then for the CPM users
// PasswordManager and cyberark-connec the Safes <CPM>, <CPM>_Accounts,
// <CPM>_ADInternal, <CPM>_Info, <CPM>_workspace and <CPM>_Pending (44 in
// all, PasswordManager_Pending being a system Safe too). PSMAppUsers is a
// member of the PSM Safes (PSM, PSMSessions, PSMLiveSessions,
// PSMRecordings, PSMUniversalConnectors, PSMNotifications,
// PSMUnmanagedSessionAccounts, PSMPConf, PIMSuRecordings) with
// listAccounts+retrieveAccounts, a trap for a worker that does not skip
// built-in Safes. The admin user is a full member of every built-in Safe.
//
// Account Safes follow: names such as "Finance Team 042", "db.prod.017",
// "Zürich Ops 3", "Ünïcødé Safe 12", "APP_00042_PRD", "Ops (EU) 7",
// "東京 Safe 9", "Help Desk 5 (Tier 2)" (15 patterns, at most 28 characters,
// unique case-insensitively; the number is the account Safe's ordinal).
// Each attribute is drawn independently from a hash of (Seed, i, attribute)
// with the fractions of Mix (DefaultMix):
//
//   - PSMAppUsers (Group, memberId "65"): compliant 30% (listAccounts+
//     unlockAccounts), listOnly 25%, listUseRetrieve 15%
//     (listAccounts+useAccounts+retrieveAccounts), manyFlagsExpiring 10%
//     (listAccounts, useAccounts, retrieveAccounts, viewAuditLog,
//     viewSafeMembers, accessWithoutConfirmation, createFolders and a
//     membershipExpirationDate in 2035-2039), absent 20%.
//   - the admin user: full member (all 22 flags) 96%, readOnly 3%
//     (listAccounts, viewAuditLog, viewSafeMembers: can read members, gets
//     403 on writes), hidden 1% (not a member: invisible).
//   - big 0.5%: filler members ("ops.user.NN" users and "App Owners NN"
//     groups) bring the non-predefined members to BigMemberCount (60).
//   - managingCPM: "PasswordManager" 50%, "cyberark-connec" 25%, "" 15%,
//     "PasswordManager,cyberark-connec" 10%; each named CPM user is a member.
//
// Every Safe's members, in listing order: the predefined Master, Batch,
// Backup Users, DR Users and Notification Engines (isPredefinedUser and
// isReadOnly true), the admin user (per its access), Vault Admins (Group,
// all flags), Auditors (Group, account Safes), the CPM users, PSMAppUsers,
// the Options.Users members (per their Rights), then fillers; members added
// later come last. The directory (names POST accepts) holds these names,
// the fillers, the users and Options.Principals.
//
// # Users
//
// The admin user (DefaultAdminUser "Administrator", password
// DefaultAdminPassword "Cyberark1") has the rights of the mix. Options.Users
// adds users with their own Rights (nil: the admin user's rights;
// AllSafes(perms); NoSafes()). Only direct membership counts: group
// membership of the caller is not resolved. In Cloud mode the same names and
// passwords are the client_id and client_secret.
//
// # Faults
//
// Options.Faults (changeable with SetFaults or PUT /_admin/faults) apply to
// the Safes and members routes (and, with IncludeAuth, to logon, logoff and
// token), in this order: MaxInFlight (429 at once), RateLimit (429 at once),
// a slot (Slots: at most that many requests served at once, the others wait
// first come, first served; every PVWA request takes one, logon and logoff
// included), Latency+Jitter while holding it (the service time), then one
// draw for P500 (IIS HTML 500), P429 and P403
// (403 CAWS00001E), then for writes a draw for PWriteApplied500 (the write
// is applied, then answered with the HTML 500). A fraction P429RetryAfter of
// all 429s carries Retry-After (RetryAfter, whole seconds). The draws come
// from a PCG seeded with FaultSeed, so a single client sees a reproducible
// sequence.
//
// # Admin API
//
// Under /_admin/ on the same listener (Server.AdminURL), never requiring a
// token and exempt from faults:
//
//	GET    /_admin/stats[?perSafe=1]   Stats as JSON (queue: time waited for a slot, median and p95)
//	POST   /_admin/reset-stats         ResetStats, 204
//	GET    /_admin/state               JSON Lines, one SafeState per Safe, streamed;
//	       ?safe=NAME one Safe, ?changed=1 only changed Safes, ?member=NAME only that member
//	GET    /_admin/vault               VaultInfo (options, census, visible counts)
//	GET    /_admin/faults              Faults as JSON (durations as "50ms")
//	PUT    /_admin/faults              partial update, e.g. {"p500":0.1}
//	DELETE /_admin/sessions            end every session, {"ended":N}
//	GET    /_admin/safes/{name}        SafeState
//	DELETE /_admin/safes/{name}        delete the Safe, 204
//	POST   /_admin/safes/{name}/members  SetMember with a MemberState body
//	DELETE /_admin/safes/{name}/members/{member}  RemoveMember, 204
//
// # Deviations from the real server
//
//   - Listing order is creation order; sort is ignored.
//   - Group membership of the caller is not resolved; the PVWA limit of 300
//     concurrent sessions is not enforced; predefined and read-only members
//     can be changed; updating one's own membership is allowed (the vault
//     answers SFWS0013).
//   - The status of SFWS0008 and of an unknown member name on POST (404)
//     is uncertain in pam-api.md, as is the memberId of each member.
//   - Safe search scans every visible Safe (O(n), about 50 ms per million).
//   - Safes cannot be created; Safe attributes never change.
package pamtest
