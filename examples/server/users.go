package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/talkpad/talkpad/store"
)

// loadUsers reads "username,password" lines and stores each user's HA1
// values in realm, creating the user or changing its password. Blank lines
// and lines starting with # are skipped. The passwords are hashed and
// forgotten.
func loadUsers(ctx context.Context, st store.Credentials, path, realm string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("users: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	n := 0
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("users: %s: %w", path, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		line, _ := r.FieldPos(0)
		if len(rec) != 2 {
			return n, fmt.Errorf("users: %s:%d: want username,password", path, line)
		}
		user, pass := strings.TrimSpace(rec[0]), rec[1]
		err = st.CreateCredential(ctx, store.NewCredential(user, realm, pass))
		if errors.Is(err, store.ErrExists) {
			err = st.UpdateCredential(ctx, realm, user, store.SetPassword(pass))
		}
		if err != nil {
			return n, fmt.Errorf("users: %s:%d: %w", path, line, err)
		}
		n++
	}
}
