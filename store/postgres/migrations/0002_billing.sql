-- Prepaid billing. Money is bigint micro-units of the account currency.
-- accounts.balance always equals the sum of the account's ledger amounts,
-- and accounts.reserved the sum of its sessions' reserved: both change only
-- in the transactions that write those rows, under the account row's lock.
CREATE TABLE {{schema}}.accounts (
    id           text        PRIMARY KEY,
    currency     text        NOT NULL DEFAULT '',
    balance      bigint      NOT NULL DEFAULT 0,
    credit_limit bigint      NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    reserved     bigint      NOT NULL DEFAULT 0,
    disabled     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The ledger: append-only, idempotent per (account, key).
CREATE TABLE {{schema}}.ledger (
    seq     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account text        NOT NULL REFERENCES {{schema}}.accounts (id),
    key     text        NOT NULL,
    kind    text        NOT NULL,
    amount  bigint      NOT NULL,
    balance bigint      NOT NULL,
    call_id text        NOT NULL DEFAULT '',
    note    text        NOT NULL DEFAULT '',
    time    timestamptz NOT NULL,
    UNIQUE (account, key)
);
CREATE INDEX ledger_account_seq_idx ON {{schema}}.ledger (account, seq);

-- Tariffs, identified by (prefix, valid_from); valid_until NULL never ends.
CREATE TABLE {{schema}}.tariffs (
    prefix           text        NOT NULL,
    valid_from       timestamptz NOT NULL,
    valid_until      timestamptz,
    price_per_minute bigint      NOT NULL,
    connect_fee      bigint      NOT NULL DEFAULT 0,
    first_increment  integer     NOT NULL,
    next_increment   integer     NOT NULL,
    min_duration     integer     NOT NULL DEFAULT 0,
    description      text        NOT NULL DEFAULT '',
    PRIMARY KEY (prefix, valid_from)
);

-- Sessions: live calls with the money held for them and the tariff they
-- were answered under, owned by a node that renews their lease.
CREATE TABLE {{schema}}.sessions (
    id               text        PRIMARY KEY,
    account          text        NOT NULL REFERENCES {{schema}}.accounts (id),
    node             text        NOT NULL DEFAULT '',
    caller           text        NOT NULL DEFAULT '',
    callee           text        NOT NULL DEFAULT '',
    prefix           text        NOT NULL,
    valid_from       timestamptz NOT NULL,
    valid_until      timestamptz,
    price_per_minute bigint      NOT NULL,
    connect_fee      bigint      NOT NULL,
    first_increment  integer     NOT NULL,
    next_increment   integer     NOT NULL,
    min_duration     integer     NOT NULL,
    description      text        NOT NULL DEFAULT '',
    setup            timestamptz,
    answer           timestamptz NOT NULL,
    reserved         bigint      NOT NULL,
    reserved_until   timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    lease_until      timestamptz NOT NULL
);
CREATE INDEX sessions_account_idx ON {{schema}}.sessions (account);
CREATE INDEX sessions_node_idx ON {{schema}}.sessions (node);
CREATE INDEX sessions_lease_idx ON {{schema}}.sessions (lease_until);

-- CDRs of finished calls.
CREATE TABLE {{schema}}.cdrs (
    call_id        text        PRIMARY KEY,
    account        text        NOT NULL,
    caller         text        NOT NULL DEFAULT '',
    callee         text        NOT NULL DEFAULT '',
    prefix         text        NOT NULL DEFAULT '',
    setup          timestamptz,
    answer         timestamptz,
    end_time       timestamptz NOT NULL,
    billed_seconds bigint      NOT NULL,
    cost           bigint      NOT NULL,
    cause          text        NOT NULL DEFAULT '',
    node           text        NOT NULL DEFAULT ''
);
CREATE INDEX cdrs_end_idx ON {{schema}}.cdrs (end_time);
CREATE INDEX cdrs_account_end_idx ON {{schema}}.cdrs (account, end_time);
