-- Client authentication settings made through the provisioning API. A NULL
-- column means "not set here": hub.toml's setting for the tenant applies.
CREATE TABLE tenant_auth (
    tenant TEXT PRIMARY KEY REFERENCES tenants (name) ON DELETE CASCADE,
    identity_json TEXT,
    roles_json TEXT,
    grants_json TEXT,
    updated_ms BIGINT NOT NULL
);
