package pam

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors that classify every failure of a PVWA call. Match them with
// errors.Is; get the details with errors.As into *APIError.
//
// The classes overlap on purpose: ErrSafeNotFound is also ErrPermanent, and
// ErrThrottled is also ErrTransient.
var (
	// ErrSafeNotFound: the Safe does not exist or was deleted (404 SFWS0007).
	ErrSafeNotFound = errors.New("safe not found")
	// ErrMemberNotFound: the name is not a member of the Safe (404 on a
	// member item URL, or SFWS0008): a GET answered so means "add it".
	ErrMemberNotFound = errors.New("member not found")
	// ErrUnknownPrincipal: AddMember named a user, group or role the vault
	// (or the directory in searchIn) does not know: a 404 on POST
	// /API/Safes/{id}/Members/ with an ErrorCode other than SFWS0007,
	// typically CAWS00001E "User or Group was not found.". It is
	// ErrPermanent and deliberately not ErrMemberNotFound, which would make
	// a caller add the member again.
	ErrUnknownPrincipal = errors.New("member name unknown to the vault")
	// ErrAlreadyMember: POST found the member there already (409 SFWS0012).
	ErrAlreadyMember = errors.New("already a member")
	// ErrForbidden: the caller lacks the Safe permission (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized: no valid session (401, PASWS006E, CASSM005E,
	// CASTM006E) or logon failed.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBadRequest: the server rejected the request as invalid (400).
	ErrBadRequest = errors.New("bad request")
	// ErrThrottled: the server asked to slow down (429). RetryAfter tells
	// for how long when the server said so.
	ErrThrottled = errors.New("throttled")
	// ErrTransient: retrying the same idempotent step later may succeed:
	// 5xx (including IIS HTML pages), 429, timeouts, connection resets.
	ErrTransient = errors.New("transient")
	// ErrPermanent: retrying will not help (400, 403, 404, 409 and other
	// 4xx except 401, 408 and 429).
	ErrPermanent = errors.New("permanent")
)

// Error codes of the PVWA that the client interprets.
const (
	CodeSafeNotFound      = "SFWS0007"
	CodeMemberNotInSafe   = "SFWS0008"
	CodeAlreadyMember     = "SFWS0012"
	CodeNoSessionToken    = "PASWS006E"
	CodeInvalidParameters = "PASWS167E"
)

// sessionExpiredCodes are answered when the token is gone or expired; the
// client logs on again once and replays (pam-api.md §1.3).
var sessionExpiredCodes = map[string]bool{
	"PASWS006E": true,
	"CASSM005E": true,
	"CASTM006E": true,
}

// IsSessionExpiredCode reports whether code means the session token is no
// longer valid.
func IsSessionExpiredCode(code string) bool { return sessionExpiredCodes[strings.ToUpper(code)] }

// ErrorDetail is one entry of the Details array of a validation error.
type ErrorDetail struct {
	Code    string `json:"ErrorCode"`
	Message string `json:"ErrorMessage"`
}

// APIError is a PVWA answer other than success. It never holds the token,
// a password or a request body.
type APIError struct {
	// Op says what was attempted, e.g. `update member "PSMAppUsers" on safe "Finance"`.
	Op string
	// Method and Path of the request (path without scheme, host or query).
	Method string
	Path   string
	// Status is the HTTP status code.
	Status int
	// Code and Message are the PVWA ErrorCode and ErrorMessage, when the
	// body had them (empty for an HTML error page).
	Code    string
	Message string
	// Details holds the Details array of validation errors.
	Details []ErrorDetail
	// RetryAfter is the Retry-After header value, 0 when absent.
	RetryAfter time.Duration
	// target is what the request's URL named; it decides what a 404
	// means.
	target target
}

// target is what a request's URL names, which decides what a 404 means
// (pam-api.md §4): SFWS0007 is always the Safe; otherwise a 404 is about
// the last thing the URL names.
type target uint8

const (
	// targetSafe: a Safe, the Safes list or a Safe's members list; a 404
	// means the Safe does not exist.
	targetSafe target = iota
	// targetMember: one member's item URL (GET, PUT, DELETE); a 404 means
	// the name is not a member of the Safe.
	targetMember
	// targetMemberAdd: POST to a Safe's members collection; a 404 with a
	// PVWA ErrorCode other than SFWS0007 means the vault does not know the
	// name (the Safe missing is SFWS0007).
	targetMemberAdd
)

// Error formats the error with everything useful and nothing secret.
func (e *APIError) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	for _, d := range e.Details {
		fmt.Fprintf(&b, " [%s: %s]", d.Code, d.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is matches the sentinel errors of this package.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrSafeNotFound:
		return e.Code == CodeSafeNotFound || (e.Status == 404 && e.target == targetSafe && e.Code != CodeMemberNotInSafe)
	case ErrMemberNotFound:
		return e.Code == CodeMemberNotInSafe || (e.Status == 404 && e.target == targetMember && e.Code != CodeSafeNotFound)
	case ErrUnknownPrincipal:
		return e.unknownPrincipal()
	case ErrAlreadyMember:
		return e.Code == CodeAlreadyMember || e.Status == 409
	case ErrForbidden:
		return e.Status == 403
	case ErrUnauthorized:
		return e.Status == 401 || IsSessionExpiredCode(e.Code)
	case ErrBadRequest:
		return e.Status == 400
	case ErrThrottled:
		return e.Status == 429
	case ErrTransient:
		return e.transient()
	case ErrPermanent:
		return !e.transient() && !(e.Status == 401 || IsSessionExpiredCode(e.Code))
	}
	return false
}

// unknownPrincipal reports whether the answer says AddMember named someone
// the vault does not know. A 404 without any ErrorCode (an IIS or proxy
// page) is counted only when its message says so: it may not come from the
// PVWA at all.
func (e *APIError) unknownPrincipal() bool {
	if e.Status != 404 || e.target != targetMemberAdd || e.Code == CodeSafeNotFound || e.Code == CodeMemberNotInSafe {
		return false
	}
	if e.Code != "" {
		return true
	}
	msg := strings.ToLower(e.Message)
	return strings.Contains(msg, "was not found") || strings.Contains(msg, "hasn't been defined")
}

func (e *APIError) transient() bool {
	return e.Status >= 500 || e.Status == 429 || e.Status == 408
}

// NewAPIError builds an APIError. memberURL says whether the request was
// about one member of a Safe, which decides what a bare 404 means: with
// memberURL, a POST (AddMember) 404 means an unknown principal and any
// other method's 404 means "not a member". It is exported for the
// simulator's tests and for wrappers; the client fills APIErrors itself.
func NewAPIError(op, method, path string, status int, code, msg string, memberURL bool) *APIError {
	t := targetSafe
	switch {
	case memberURL && strings.EqualFold(method, "POST"):
		t = targetMemberAdd
	case memberURL:
		t = targetMember
	}
	return &APIError{Op: op, Method: method, Path: path, Status: status, Code: code, Message: msg, target: t}
}

// TransportError is a failure to get a whole answer: connection refused or
// reset, TLS failure, a timeout of the single request (Config.Timeout), a body
// cut short. It is ErrTransient. When the caller's context ends, the client
// returns an error wrapping ctx.Err() instead, which is not transient.
type TransportError struct {
	Op     string
	Method string
	Path   string
	Err    error
}

// Error describes the failure without the URL's query or any header.
func (e *TransportError) Error() string {
	return fmt.Sprintf("%s: %s %s: %v", e.Op, e.Method, e.Path, e.Err)
}

// Unwrap returns the underlying network error.
func (e *TransportError) Unwrap() error { return e.Err }

// Is makes a TransportError match ErrTransient.
func (e *TransportError) Is(target error) bool { return target == ErrTransient }

// RetryAfter returns the server's Retry-After for err, if it said one.
func RetryAfter(err error) (time.Duration, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter, true
	}
	return 0, false
}

// ErrorCode returns the PVWA ErrorCode carried by err, or "" when there is
// none. For failures without a PVWA answer it returns "HTTP <status>" or "".
func ErrorCode(err error) string {
	var ae *APIError
	if !errors.As(err, &ae) {
		return ""
	}
	if ae.Code != "" {
		return ae.Code
	}
	return fmt.Sprintf("HTTP%d", ae.Status)
}

// ResponseError is a success status whose body could not be used: not JSON,
// the wrong shape, or a nextLink that loops or points at another host. It is
// ErrPermanent: the same request is expected to get the same answer.
type ResponseError struct {
	Op     string
	Method string
	Path   string
	Status int
	Err    error
}

// Error describes the problem; it never quotes the body.
func (e *ResponseError) Error() string {
	return fmt.Sprintf("%s: %s %s: HTTP %d: unusable answer: %v", e.Op, e.Method, e.Path, e.Status, e.Err)
}

// Unwrap returns the decoding problem.
func (e *ResponseError) Unwrap() error { return e.Err }

// Is makes a ResponseError match ErrPermanent.
func (e *ResponseError) Is(target error) bool { return target == ErrPermanent }

// LogonError is a failed logon (PVWA Logon or Identity platform token). Its
// Err is the *APIError, *TransportError or *ResponseError of the logon
// request. It matches ErrUnauthorized unless the cause is transient (5xx,
// 429, transport): then the logon may work later and it matches ErrTransient
// (through Err) instead.
type LogonError struct {
	Err error
}

// Error returns the cause's text; the cause already names the logon.
func (e *LogonError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *LogonError) Unwrap() error { return e.Err }

// Is makes a non-transient logon failure match ErrUnauthorized.
func (e *LogonError) Is(target error) bool {
	return target == ErrUnauthorized && !errors.Is(e.Err, ErrTransient)
}

// Class is the coarse class of a PVWA call's outcome. The worker maps it, in
// one place, to Ack, Nak with a delay, or Term.
type Class string

// The classes returned by Classify.
const (
	// ClassOK: no error.
	ClassOK Class = "ok"
	// ClassUnauthorized: the credentials or the session are refused even
	// after one fresh logon. Retrying the job will not help; the run should
	// stop and a human look at the credentials.
	ClassUnauthorized Class = "unauthorized"
	// ClassThrottled: HTTP 429; retry after RetryAfter(err) or a backoff.
	ClassThrottled Class = "throttled"
	// ClassTransient: 5xx, 408, transport failure; retry with a backoff.
	ClassTransient Class = "transient"
	// ClassPermanent: 4xx such as 400, 403, 404, 409, or an unusable
	// answer; retrying the same request will fail the same way.
	ClassPermanent Class = "permanent"
	// ClassCanceled: the caller's context was canceled or timed out.
	ClassCanceled Class = "canceled"
	// ClassUnknown: an error that did not come from this package's
	// classification (for example a rate limiter's own error).
	ClassUnknown Class = "unknown"
)

// Classify returns the class of err. The checks run in the order of the
// constants above, so a 429 is ClassThrottled although it is also
// ErrTransient.
func Classify(err error) Class {
	switch {
	case err == nil:
		return ClassOK
	case errors.Is(err, ErrUnauthorized):
		return ClassUnauthorized
	case errors.Is(err, ErrThrottled):
		return ClassThrottled
	case errors.Is(err, ErrTransient):
		return ClassTransient
	case errors.Is(err, ErrPermanent):
		return ClassPermanent
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ClassCanceled
	}
	return ClassUnknown
}
