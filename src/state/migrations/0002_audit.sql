-- The hub's audit trail: one row per query a client ran.
CREATE TABLE audit (
    query_id TEXT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    source TEXT NOT NULL,
    agent TEXT,
    mode TEXT NOT NULL,
    sql_text TEXT,
    sql_sha256 TEXT,
    rows_sent BIGINT NOT NULL,
    bytes_sent BIGINT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    error TEXT
);
CREATE INDEX audit_by_tenant_time ON audit (tenant, time_ms);
