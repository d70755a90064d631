-- The admin API lists and revokes a service account's OAuth clients; most clients (registered
-- by MCP clients and other apps) belong to none.
CREATE INDEX oauth_clients_service_account ON oauth_clients (service_account)
    WHERE service_account IS NOT NULL;
