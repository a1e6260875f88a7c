package fsm

import (
	"errors"
	"fmt"
)

// Code classifies why a command did not apply. The codes are stable: the API
// returns them to clients.
type Code string

const (
	CodePreconditionFailed Code = "precondition_failed"
	CodeStaleEpoch         Code = "stale_owner_epoch"
	CodeFenced             Code = "capture_fenced"
	CodeTableConflict      Code = "table_conflict"
	CodeForbidden          Code = "forbidden_key"
	CodeInvalid            Code = "invalid_command"
	CodeInternal           Code = "internal"
)

// Error is a command's deterministic refusal: every replica reaches the same
// one, and the state is left exactly as it was.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Key     string `json:"key,omitempty"`
}

func (e *Error) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("%s: %s (key %s)", e.Code, e.Message, e.Key)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is makes errors.Is match on the code alone, so callers can test against the
// sentinel values below.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code && t.Message == ""
	}
	return false
}

// Sentinels for errors.Is.
var (
	ErrPreconditionFailed = &Error{Code: CodePreconditionFailed}
	ErrStaleEpoch         = &Error{Code: CodeStaleEpoch}
	ErrFenced             = &Error{Code: CodeFenced}
	ErrTableConflict      = &Error{Code: CodeTableConflict}
	ErrForbidden          = &Error{Code: CodeForbidden}
	ErrInvalid            = &Error{Code: CodeInvalid}
)

// Errorf builds a refusal; the schema's Rules use it.
func Errorf(code Code, key, format string, args ...any) *Error {
	return &Error{Code: code, Key: key, Message: fmt.Sprintf(format, args...)}
}

func newErr(code Code, key, format string, args ...any) *Error {
	return Errorf(code, key, format, args...)
}

// Result is what Apply returns to the proposer.
type Result struct {
	Index uint64 `json:"index"`
	Err   *Error `json:"error,omitempty"`
}

// Error returns the refusal as an error, or nil.
func (r *Result) Error() error {
	if r == nil || r.Err == nil {
		return nil
	}
	return r.Err
}
