-- The gateway's own store: consents and the audit trail. Idempotent; run at start-up.
-- Residents appear only as a keyed hash ("subject"), never as a plain RRN.

create schema if not exists gateway;

create table if not exists gateway.consents (
    id          uuid primary key,
    subject     text not null,
    purpose     text not null,
    agency      text not null,
    granted_at  timestamptz not null,
    expires_at  timestamptz not null,
    revoked_at  timestamptz
);
create index if not exists consents_subject_idx on gateway.consents (subject);

create table if not exists gateway.audit_log (
    seq        bigint primary key,
    at         timestamptz not null,
    request_id text not null,
    principal  text not null,
    roles      text not null,
    agency     text,
    purpose    text not null,
    subject    text not null,
    disclosed  text[] not null,
    denied     text[] not null,
    prev_hash  text not null,
    hash       text not null
);
create index if not exists audit_subject_idx on gateway.audit_log (subject, seq desc);
create index if not exists audit_at_idx on gateway.audit_log (at);

-- One row: the end of the chain, and where it starts after retention purged older rows.
create table if not exists gateway.audit_head (
    id          int primary key check (id = 1),
    last_seq    bigint not null,
    last_hash   text not null,
    anchor_seq  bigint not null,
    anchor_hash text not null
);
-- The head row is authenticated too (an HMAC over its four values), so rows cannot be cut
-- from the end or the start of the chain by rewriting it.
alter table gateway.audit_head add column if not exists mac text not null default '';
-- The head row itself is created by the gateway, sealed in the same statement
-- (gateway/audit_chain.py: ensure_head), so a head without a valid MAC is never "new".

-- Records the gateway writes about its own trail (a repair) carry a JSON note, covered by
-- the row's hash; access records have none (and hash as they did before the column existed).
alter table gateway.audit_log add column if not exists note text;

-- The rows the gateway writes about its own trail (retention purges, repairs) state the chain's
-- anchor; they are looked up newest first.
create index if not exists audit_admin_idx on gateway.audit_log (seq)
    where purpose in ('AUDIT_PURGE', 'AUDIT_REPAIR');

-- Certificates issued to citizens (gateway/certificates.py): metadata only. The signed token
-- (which holds the citizen's data) and the signing keys are never stored.
create table if not exists gateway.certificates (
    id          uuid primary key,
    kind        text not null,
    subject     text not null,
    kid         text not null,
    issued_at   timestamptz not null,
    expires_at  timestamptz not null,
    revoked_at  timestamptz
);
create index if not exists certificates_subject_idx on gateway.certificates (subject, issued_at desc);
create index if not exists certificates_revoked_idx on gateway.certificates (expires_at)
    where revoked_at is not null;
