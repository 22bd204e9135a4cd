package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/talkpad/talkpad/store"
)

// CreateCredential implements store.Credentials.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("postgres: create credential: %w", err)
	}
	tag, err := s.pool.Exec(ctx, s.q.createCred, c.Realm, c.Username, c.HA1MD5, c.HA1SHA256, c.HA1SHA512256, c.Disabled, c.Account)
	if err != nil {
		return fmt.Errorf("postgres: create credential %q@%q: %w", c.Username, c.Realm, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create credential %q@%q: %w", c.Username, c.Realm, store.ErrExists)
	}
	return nil
}

func scanCredential(row pgx.Row) (store.Credential, error) {
	var c store.Credential
	err := row.Scan(&c.Realm, &c.Username, &c.HA1MD5, &c.HA1SHA256, &c.HA1SHA512256, &c.Disabled, &c.Account, &c.CreatedAt, &c.UpdatedAt)
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, err
}

// GetCredential implements store.Credentials.
func (s *Store) GetCredential(ctx context.Context, realm, username string) (store.Credential, error) {
	c, err := scanCredential(s.pool.QueryRow(ctx, s.q.getCred, realm, username))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Credential{}, fmt.Errorf("postgres: get credential %q@%q: %w", username, realm, store.ErrNotFound)
	}
	if err != nil {
		return store.Credential{}, fmt.Errorf("postgres: get credential %q@%q: %w", username, realm, err)
	}
	return c, nil
}

// UpdateCredential implements store.Credentials. The row is locked for the
// transaction, so concurrent updates of one credential apply one after the
// other and none is lost.
func (s *Store) UpdateCredential(ctx context.Context, realm, username string, update func(store.Credential) (store.Credential, error)) error {
	var updaterErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := scanCredential(tx.QueryRow(ctx, s.q.getCredForUpdate, realm, username))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		c, err := update(old)
		if err != nil {
			updaterErr = err
			return err
		}
		c.Realm, c.Username = old.Realm, old.Username
		if err := c.Validate(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.q.updateCred, realm, username, c.HA1MD5, c.HA1SHA256, c.HA1SHA512256, c.Disabled, c.Account)
		return err
	})
	if updaterErr != nil {
		// The caller's own error comes back unwrapped, as documented.
		return updaterErr
	}
	if err != nil {
		return fmt.Errorf("postgres: update credential %q@%q: %w", username, realm, err)
	}
	return nil
}

// DeleteCredential implements store.Credentials.
func (s *Store) DeleteCredential(ctx context.Context, realm, username string) error {
	tag, err := s.pool.Exec(ctx, s.q.deleteCred, realm, username)
	if err != nil {
		return fmt.Errorf("postgres: delete credential %q@%q: %w", username, realm, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete credential %q@%q: %w", username, realm, store.ErrNotFound)
	}
	return nil
}

// ListCredentials implements store.Credentials.
func (s *Store) ListCredentials(ctx context.Context, realm string) ([]store.Credential, error) {
	var rows pgx.Rows
	var err error
	if realm == "" {
		rows, err = s.pool.Query(ctx, s.q.listAllCreds)
	} else {
		rows, err = s.pool.Query(ctx, s.q.listCreds, realm)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list credentials: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Credential, error) { return scanCredential(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list credentials: %w", err)
	}
	return out, nil
}
