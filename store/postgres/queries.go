package postgres

// queries holds the statements with the schema name filled in once, at
// start, so that no statement depends on search_path (session state that a
// transaction-pooling PgBouncer does not keep).
type queries struct {
	createCred, getCred, getCredForUpdate, updateCred, deleteCred, listCreds, listAllCreds string

	upsertBinding, upsertBindingsBulk, deleteBindings, listBindings, listAllBindings, deleteExpired string
}

const credCols = `realm, username, ha1_md5, ha1_sha256, ha1_sha512_256, disabled, account, created_at, updated_at`

const bindingCols = `aor, contact, received, transport, local_addr, path, call_id, cseq, expires, q,
	user_agent, instance, reg_id, nat_type, node, version::text, updated`

// upsertConflict keeps the newer of two versions of a binding.
const upsertConflict = `
			ON CONFLICT (aor, binding_key) DO UPDATE SET
				contact = EXCLUDED.contact, received = EXCLUDED.received, transport = EXCLUDED.transport,
				local_addr = EXCLUDED.local_addr, path = EXCLUDED.path, call_id = EXCLUDED.call_id,
				cseq = EXCLUDED.cseq, expires = EXCLUDED.expires, q = EXCLUDED.q,
				user_agent = EXCLUDED.user_agent, instance = EXCLUDED.instance, reg_id = EXCLUDED.reg_id,
				nat_type = EXCLUDED.nat_type, node = EXCLUDED.node, version = EXCLUDED.version,
				updated = EXCLUDED.updated
			WHERE b.version <= EXCLUDED.version`

func newQueries(schema string) queries {
	creds := schema + `.credentials`
	bindings := schema + `.bindings`
	return queries{
		createCred: `INSERT INTO ` + creds + ` (realm, username, ha1_md5, ha1_sha256, ha1_sha512_256, disabled, account)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (realm, username) DO NOTHING`,
		getCred:          `SELECT ` + credCols + ` FROM ` + creds + ` WHERE realm = $1 AND username = $2`,
		getCredForUpdate: `SELECT ` + credCols + ` FROM ` + creds + ` WHERE realm = $1 AND username = $2 FOR UPDATE`,
		updateCred: `UPDATE ` + creds + ` SET ha1_md5 = $3, ha1_sha256 = $4, ha1_sha512_256 = $5, disabled = $6,
			account = $7, updated_at = greatest(clock_timestamp(), updated_at) WHERE realm = $1 AND username = $2`,
		deleteCred:   `DELETE FROM ` + creds + ` WHERE realm = $1 AND username = $2`,
		listCreds:    `SELECT ` + credCols + ` FROM ` + creds + ` WHERE realm = $1 ORDER BY username COLLATE "C"`,
		listAllCreds: `SELECT ` + credCols + ` FROM ` + creds + ` ORDER BY realm COLLATE "C", username COLLATE "C"`,

		// The WHERE on the update keeps the newer of two versions: a
		// delayed flush or a replica's stale write is skipped, not an
		// error.
		upsertBinding: `INSERT INTO ` + bindings + ` AS b (aor, binding_key, contact, received, transport, local_addr,
			path, call_id, cseq, expires, q, user_agent, instance, reg_id, nat_type, node, version, updated)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::numeric, $18)
			` + upsertConflict,
		// The bulk form sends one array per column and writes every row
		// in one statement: one round trip and one plan for thousands of
		// bindings. Path vectors travel as JSON arrays, since SQL arrays
		// cannot be jagged.
		upsertBindingsBulk: `INSERT INTO ` + bindings + ` AS b (aor, binding_key, contact, received, transport, local_addr,
			path, call_id, cseq, expires, q, user_agent, instance, reg_id, nat_type, node, version, updated)
			SELECT u.aor, u.k, u.contact, u.received, u.transport, u.local_addr,
				ARRAY(SELECT jsonb_array_elements_text(u.path::jsonb)), u.call_id, u.cseq, u.expires, u.q,
				u.user_agent, u.instance, u.reg_id, u.nat_type, u.node, u.version::numeric, u.updated
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::int8[], $10::timestamptz[], $11::int2[], $12::text[], $13::text[], $14::int8[], $15::text[],
				$16::text[], $17::text[], $18::timestamptz[])
				AS u(aor, k, contact, received, transport, local_addr, path, call_id, cseq, expires, q,
					user_agent, instance, reg_id, nat_type, node, version, updated)
			` + upsertConflict,
		deleteBindings: `DELETE FROM ` + bindings + ` AS b USING unnest($1::text[], $2::text[]) AS d(aor, binding_key)
			WHERE b.aor = d.aor AND b.binding_key = d.binding_key`,
		listBindings: `SELECT ` + bindingCols + ` FROM ` + bindings + ` WHERE aor = $1 AND expires > $2
			ORDER BY q DESC, updated DESC, binding_key COLLATE "C"`,
		listAllBindings: `SELECT ` + bindingCols + ` FROM ` + bindings + ` WHERE expires > $1
			ORDER BY aor COLLATE "C", q DESC, updated DESC, binding_key COLLATE "C"`,
		deleteExpired: `DELETE FROM ` + bindings + ` WHERE expires <= $1`,
	}
}
