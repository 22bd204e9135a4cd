package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/talkpad/talkpad/store"
)

// RunCredentialsTests runs the store.Credentials conformance suite.
func RunCredentialsTests(t *testing.T, newStore func(t *testing.T) store.Credentials) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Credentials)
	}{
		{"CreateGet", testCredentialCreateGet},
		{"CreateDuplicate", testCredentialCreateDuplicate},
		{"GetMissing", testCredentialGetMissing},
		{"CreateInvalid", testCredentialCreateInvalid},
		{"UpdatePassword", testCredentialUpdatePassword},
		{"Disable", testCredentialDisable},
		{"UpdateMissing", testCredentialUpdateMissing},
		{"UpdaterError", testCredentialUpdaterError},
		{"UpdateKeepsKey", testCredentialUpdateKeepsKey},
		{"UpdateInvalid", testCredentialUpdateInvalid},
		{"Delete", testCredentialDelete},
		{"Unicode", testCredentialUnicode},
		{"RealmsAreSeparate", testCredentialRealms},
		{"List", testCredentialList},
		{"ConcurrentUpdate", testCredentialConcurrentUpdate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newStore(t))
		})
	}
}

func testCredentialCreateGet(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	c := store.NewCredential("alice", "example.com", "secret")
	c.Account = "+15551230001"
	mustNil(t, s.CreateCredential(ctx, c))
	got, err := s.GetCredential(ctx, "example.com", "alice")
	mustNil(t, err)
	if got.Username != "alice" || got.Realm != "example.com" || got.Account != c.Account || got.Disabled {
		t.Fatalf("got %+v, want %+v", got, c)
	}
	if got.HA1MD5 != store.HA1("MD5", "alice", "example.com", "secret") ||
		got.HA1SHA256 != store.HA1("SHA-256", "alice", "example.com", "secret") ||
		got.HA1SHA512256 != store.HA1("SHA-512-256", "alice", "example.com", "secret") {
		t.Fatalf("HA1 values changed on the way through the store: %+v", got)
	}
	if got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() {
		t.Fatalf("CreatedAt/UpdatedAt not set: %+v", got)
	}
}

func testCredentialCreateDuplicate(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("bob", "example.com", "one")))
	err := s.CreateCredential(ctx, store.NewCredential("bob", "example.com", "two"))
	mustIs(t, err, store.ErrExists)
	got, err := s.GetCredential(ctx, "example.com", "bob")
	mustNil(t, err)
	if got.HA1MD5 != store.HA1("MD5", "bob", "example.com", "one") {
		t.Fatal("a refused duplicate create changed the stored credential")
	}
}

func testCredentialGetMissing(t *testing.T, s store.Credentials) {
	_, err := s.GetCredential(context.Background(), "example.com", "nobody")
	mustIs(t, err, store.ErrNotFound)
}

func testCredentialCreateInvalid(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	good := store.NewCredential("carol", "example.com", "pw")
	bad := []store.Credential{
		{},
		store.NewCredential("", "example.com", "pw"),
		store.NewCredential("carol", "", "pw"),
		func() store.Credential { c := good; c.HA1MD5 = "xyz"; return c }(),
		func() store.Credential { c := good; c.HA1SHA256 = ""; return c }(),
		func() store.Credential { c := good; c.HA1MD5 = strings.ToUpper(c.HA1MD5); return c }(),
		func() store.Credential { c := good; c.Username = "bad\xff"; return c }(),
		func() store.Credential { c := good; c.Username = "nul\x00"; return c }(),
	}
	for _, c := range bad {
		mustIs(t, s.CreateCredential(ctx, c), store.ErrInvalid)
	}
	if _, err := s.GetCredential(ctx, "example.com", "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("invalid credential was stored: %v", err)
	}
}

func testCredentialUpdatePassword(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("dave", "example.com", "old")))
	before, err := s.GetCredential(ctx, "example.com", "dave")
	mustNil(t, err)
	mustNil(t, s.UpdateCredential(ctx, "example.com", "dave", store.SetPassword("new")))
	got, err := s.GetCredential(ctx, "example.com", "dave")
	mustNil(t, err)
	if got.HA1MD5 != store.HA1("MD5", "dave", "example.com", "new") ||
		got.HA1SHA256 != store.HA1("SHA-256", "dave", "example.com", "new") {
		t.Fatal("password update not stored")
	}
	if !got.CreatedAt.Equal(before.CreatedAt) {
		t.Fatalf("CreatedAt changed on update: %v → %v", before.CreatedAt, got.CreatedAt)
	}
	if got.UpdatedAt.Before(before.UpdatedAt) {
		t.Fatalf("UpdatedAt went backwards: %v → %v", before.UpdatedAt, got.UpdatedAt)
	}
}

func testCredentialDisable(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("erin", "example.com", "pw")))
	mustNil(t, s.UpdateCredential(ctx, "example.com", "erin", store.SetDisabled(true)))
	got, err := s.GetCredential(ctx, "example.com", "erin")
	mustNil(t, err)
	if !got.Disabled {
		t.Fatal("credential not disabled")
	}
	mustNil(t, s.UpdateCredential(ctx, "example.com", "erin", store.SetDisabled(false)))
	got, err = s.GetCredential(ctx, "example.com", "erin")
	mustNil(t, err)
	if got.Disabled {
		t.Fatal("credential not re-enabled")
	}
}

func testCredentialUpdateMissing(t *testing.T, s store.Credentials) {
	called := false
	err := s.UpdateCredential(context.Background(), "example.com", "nobody", func(c store.Credential) (store.Credential, error) {
		called = true
		return c, nil
	})
	mustIs(t, err, store.ErrNotFound)
	if called {
		t.Fatal("updater called for a missing credential")
	}
}

func testCredentialUpdaterError(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("frank", "example.com", "pw")))
	boom := errors.New("boom")
	err := s.UpdateCredential(ctx, "example.com", "frank", func(c store.Credential) (store.Credential, error) {
		c.Disabled = true
		return c, boom
	})
	mustIs(t, err, boom)
	got, err := s.GetCredential(ctx, "example.com", "frank")
	mustNil(t, err)
	if got.Disabled {
		t.Fatal("a failed update was written")
	}
}

func testCredentialUpdateKeepsKey(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("gina", "example.com", "pw")))
	mustNil(t, s.UpdateCredential(ctx, "example.com", "gina", func(c store.Credential) (store.Credential, error) {
		c.Username, c.Realm, c.Account = "mallory", "evil.example", "acct-7"
		return c, nil
	}))
	got, err := s.GetCredential(ctx, "example.com", "gina")
	mustNil(t, err)
	if got.Account != "acct-7" {
		t.Fatalf("update lost: %+v", got)
	}
	if _, err := s.GetCredential(ctx, "evil.example", "mallory"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update renamed the credential: %v", err)
	}
}

func testCredentialUpdateInvalid(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("hank", "example.com", "pw")))
	err := s.UpdateCredential(ctx, "example.com", "hank", func(c store.Credential) (store.Credential, error) {
		c.HA1MD5 = "not hex"
		return c, nil
	})
	mustIs(t, err, store.ErrInvalid)
	got, err := s.GetCredential(ctx, "example.com", "hank")
	mustNil(t, err)
	if got.HA1MD5 != store.HA1("MD5", "hank", "example.com", "pw") {
		t.Fatal("an invalid update was written")
	}
}

func testCredentialDelete(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("ivy", "example.com", "pw")))
	mustNil(t, s.DeleteCredential(ctx, "example.com", "ivy"))
	_, err := s.GetCredential(ctx, "example.com", "ivy")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteCredential(ctx, "example.com", "ivy"), store.ErrNotFound)
	// The name is free again.
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("ivy", "example.com", "pw2")))
}

func testCredentialUnicode(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	names := []string{"zoë", "Zoë", "用户", "пользователь", "🙂phone", "a b", "o'brien", `quote"d`, "back\\slash"}
	for _, n := range names {
		mustNil(t, s.CreateCredential(ctx, store.NewCredential(n, "例え.jp", "pässwörd")))
	}
	for _, n := range names {
		got, err := s.GetCredential(ctx, "例え.jp", n)
		mustNil(t, err)
		if got.Username != n || got.HA1MD5 != store.HA1("MD5", n, "例え.jp", "pässwörd") {
			t.Fatalf("unicode user %q came back as %+v", n, got)
		}
	}
	list, err := s.ListCredentials(ctx, "例え.jp")
	mustNil(t, err)
	if len(list) != len(names) {
		t.Fatalf("listed %d credentials, want %d", len(list), len(names))
	}
}

func testCredentialRealms(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("jo", "a.example", "one")))
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("jo", "b.example", "two")))
	mustNil(t, s.DeleteCredential(ctx, "a.example", "jo"))
	got, err := s.GetCredential(ctx, "b.example", "jo")
	mustNil(t, err)
	if got.HA1MD5 != store.HA1("MD5", "jo", "b.example", "two") {
		t.Fatal("realms are not separate")
	}
}

func testCredentialList(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	list, err := s.ListCredentials(ctx, "")
	mustNil(t, err)
	if len(list) != 0 {
		t.Fatalf("empty store lists %d credentials", len(list))
	}
	for _, u := range []string{"mike", "kate", "luke"} {
		mustNil(t, s.CreateCredential(ctx, store.NewCredential(u, "x.example", "pw")))
	}
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("adam", "y.example", "pw")))
	list, err = s.ListCredentials(ctx, "x.example")
	mustNil(t, err)
	var names []string
	for _, c := range list {
		names = append(names, c.Username)
	}
	if got := strings.Join(names, ","); got != "kate,luke,mike" {
		t.Fatalf("ListCredentials(x.example) = %s, want kate,luke,mike", got)
	}
	all, err := s.ListCredentials(ctx, "")
	mustNil(t, err)
	if len(all) != 4 || all[0].Realm != "x.example" || all[3].Realm != "y.example" {
		t.Fatalf("ListCredentials(\"\") = %d entries, want 4 ordered by realm then name", len(all))
	}
}

func testCredentialConcurrentUpdate(t *testing.T, s store.Credentials) {
	ctx := context.Background()
	mustNil(t, s.CreateCredential(ctx, store.NewCredential("nina", "example.com", "pw")))
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.UpdateCredential(ctx, "example.com", "nina", func(c store.Credential) (store.Credential, error) {
				c.Account += fmt.Sprintf("%x", i%16)
				return c, nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		mustNil(t, err)
	}
	got, err := s.GetCredential(ctx, "example.com", "nina")
	mustNil(t, err)
	if len(got.Account) != n {
		t.Fatalf("after %d concurrent read-modify-writes the record shows %d (%q): updates were lost", n, len(got.Account), got.Account)
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func mustIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one that is %v", err, target)
	}
}
