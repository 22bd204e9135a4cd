// Package storetest is the conformance suite every store backend must pass.
//
// A backend's test calls [Run] with a constructor that returns a fresh,
// empty backend for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend { return memory.New() })
//	}
//
// The suites check every method, the sentinel errors with errors.Is, the
// ordering and expiry rules documented on the store interfaces, and behaviour
// under concurrent writers. Each domain also has its own entry point
// ([RunCredentialsTests], [RunBindingsTests], [RunBillingTests]) for a backend that implements
// only part of package store.
package storetest

import (
	"testing"

	"github.com/talkpad/talkpad/store"
)

// Backend is what Run needs: every interface of package store that talkpad's
// own backends implement.
type Backend interface {
	store.Credentials
	store.Bindings
}

// Run runs every conformance suite against backends made by newBackend,
// which is called once per subtest and must return an empty backend. Any
// clean-up belongs in t.Cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Helper()
	t.Run("Credentials", func(t *testing.T) {
		RunCredentialsTests(t, func(t *testing.T) store.Credentials { return newBackend(t) })
	})
	t.Run("Bindings", func(t *testing.T) {
		RunBindingsTests(t, func(t *testing.T) store.Bindings { return newBackend(t) })
	})
	// Billing is optional: a backend without it still conforms.
	t.Run("Billing", func(t *testing.T) {
		RunBillingTests(t, func(t *testing.T) store.Billing {
			b, ok := newBackend(t).(store.Billing)
			if !ok {
				t.Skip("backend does not implement store.Billing")
			}
			return b
		})
	})
}
