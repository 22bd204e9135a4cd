package postgres_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/postgres"
)

// Open a PostgreSQL store (applying migrations) and register a binding.
// Behind PgBouncer, point the DSN at PgBouncer; the default exec mode works
// in transaction pooling mode.
func Example() {
	ctx := context.Background()
	s, err := postgres.New(ctx, postgres.Config{
		DSN:    "postgres://talkpad@127.0.0.1:5432/talkpad?sslmode=disable",
		Schema: "talkpad",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.CreateCredential(ctx, store.NewCredential("alice", "example.com", "secret")); err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	err = s.UpsertBindings(ctx, []store.Binding{{
		AOR: "sip:alice@example.com", Contact: "sip:alice@192.0.2.10:5060",
		Expires: now.Add(time.Hour), Q: 1000, Version: 1, Updated: now,
	}})
	if err != nil {
		log.Fatal(err)
	}
	bs, _ := s.ListBindings(ctx, "sip:alice@example.com", now)
	fmt.Println(len(bs))
}
