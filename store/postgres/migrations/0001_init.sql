-- Credentials: one row per (realm, username); only HA1 values, never the
-- plain password.
CREATE TABLE {{schema}}.credentials (
    realm          text        NOT NULL,
    username       text        NOT NULL,
    ha1_md5        text        NOT NULL,
    ha1_sha256     text        NOT NULL,
    ha1_sha512_256 text        NOT NULL DEFAULT '',
    disabled       boolean     NOT NULL DEFAULT false,
    account        text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (realm, username)
);

-- Bindings: the location service. binding_key is the +sip.instance/reg-id
-- or the Contact URI (store.Binding.Key). version is numeric so that the
-- whole uint64 range compares correctly.
CREATE TABLE {{schema}}.bindings (
    aor         text          NOT NULL,
    binding_key text          NOT NULL,
    contact     text          NOT NULL,
    received    text          NOT NULL DEFAULT '',
    transport   text          NOT NULL DEFAULT '',
    local_addr  text          NOT NULL DEFAULT '',
    path        text[]        NOT NULL DEFAULT '{}',
    call_id     text          NOT NULL DEFAULT '',
    cseq        bigint        NOT NULL DEFAULT 0,
    expires     timestamptz   NOT NULL,
    q           smallint      NOT NULL,
    user_agent  text          NOT NULL DEFAULT '',
    instance    text          NOT NULL DEFAULT '',
    reg_id      bigint        NOT NULL DEFAULT 0,
    nat_type    text          NOT NULL DEFAULT '',
    node        text          NOT NULL DEFAULT '',
    version     numeric(20,0) NOT NULL DEFAULT 0,
    updated     timestamptz   NOT NULL,
    PRIMARY KEY (aor, binding_key)
);

-- Expiry sweeps and start-up loads filter on expires.
CREATE INDEX bindings_expires_idx ON {{schema}}.bindings (expires);
