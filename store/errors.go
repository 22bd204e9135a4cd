package store

import "errors"

// Sentinel errors shared by every backend. Backends wrap them with context;
// callers test them with errors.Is.
var (
	// ErrNotFound reports that the requested record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists reports that a record with the same key already exists.
	ErrExists = errors.New("store: already exists")
	// ErrInvalid reports a record that fails validation (an empty key, an
	// out-of-range value). Nothing is written when it is returned.
	ErrInvalid = errors.New("store: invalid record")
)
