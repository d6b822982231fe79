// Package pam is the client of the CyberArk PVWA REST API (self-hosted PVWA
// and Privilege Cloud) that safeperm needs: list Safes, read, add, update and
// delete Safe members.
//
// What the client guarantees:
//
//   - One *Client is safe for concurrent use and shares one session. It logs
//     on lazily (concurrentSession true, so workers logged on as the same
//     user do not end each other's sessions). When the PVWA refuses the
//     session (401, or ErrorCode PASWS006E, CASSM005E, CASTM006E), it logs
//     on again exactly once for all the calls that saw it, and replays each
//     of them once; a second refusal is returned as ErrUnauthorized.
//     Privilege Cloud Identity tokens are renewed at 80% of their lifetime.
//   - Apart from that replay it never retries. Every failure is classified
//     (see Classify and the Err* sentinels): *APIError for any non-2xx answer,
//     *TransportError (ErrTransient) when no whole answer came,
//     *ResponseError (ErrPermanent) for a 2xx answer it cannot use,
//     *LogonError for refused credentials, and an error wrapping ctx.Err()
//     when the caller's context ended.
//   - Config.Limiter is waited on before every HTTP request, logons
//     included, and Config.Observe sees every request.
//   - Paths go on the wire exactly as intended: safeUrlId verbatim (it is
//     already percent-encoded); member names escaped with %20 for a space
//     and with the plus sign, ampersand, percent, slash, question mark and
//     hash escaped too; item URLs ending with "/" (names may contain dots).
//   - Listings (Safes, Members) are iterators that hold one page at most and
//     follow the PVWA's nextLink in all its spellings, refusing loops.
//   - Decoding is tolerant of key casing and of numbers sent as strings;
//     unknown permission keys are kept so that an update sends them back.
//   - Passwords, client secrets and tokens never appear in logs or errors:
//     they are held as secret.Value and removed from server messages.
package pam
