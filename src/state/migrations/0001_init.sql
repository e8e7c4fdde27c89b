-- The hub's state. Portable SQL: the same migrations run on SQLite and
-- PostgreSQL. Times are Unix milliseconds; secrets are stored as SHA-256.

CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    enrolled_ms BIGINT NOT NULL,
    cert_not_after_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    version TEXT,
    last_seen_ms BIGINT,
    latency_ms DOUBLE PRECISION
);
CREATE INDEX agents_by_tenant ON agents (tenant);

CREATE TABLE enrolment_tokens (
    token_sha256 TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms BIGINT
);

CREATE TABLE api_keys (
    key_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);
