-- RFC 8707 resource indicators: the protected resource an authorization code and the refresh
-- tokens of its family are bound to; the access tokens they yield carry it as their audience.
-- NULL: the gateway's LLM API (the server's default audience).
ALTER TABLE oauth_codes ADD COLUMN resource TEXT;
ALTER TABLE oauth_refresh_tokens ADD COLUMN resource TEXT;
